"""Rows written by a statement of our own rather than Model.save (an INSERT … SELECT that writes only where a
condition holds, in the same round trip; a step's or a plan's move, a few columns by primary key): the model's
columns, and an instance's values prepared as Django's own save prepares them."""
import functools
import uuid
from datetime import datetime

from django.db import DatabaseError, connection, models


@functools.cache
def insert_columns(model, *, with_pk: bool = False) -> tuple[list, str, str]:
    """(fields, "col, …", "%s::type, …") of `model`'s concrete fields but its primary key (`with_pk`: one the
    caller sets, a UUID). Each value is cast to its column's type: a SELECT list does not take the types of
    the columns it is inserted into."""
    fields = [field for field in model._meta.concrete_fields if with_pk or not field.primary_key]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    values = ", ".join(f"%s::{_cast_type(field)}" for field in fields)
    return fields, columns, values


def _cast_type(field) -> str:
    """The column's type without a length: an explicit cast to varchar(n) cuts a longer value short without a
    word, where the insert into the column refuses it, as Django's own insert would."""
    cast = field.cast_db_type(connection)
    return "varchar" if cast.startswith("varchar(") else cast


def inserted(instance, pk=None) -> None:
    """Mark `instance` saved, as Model.save does, after our own statement inserted it (`pk`: the id it returned)."""
    if pk is not None:
        instance.pk = pk
    instance._state.adding, instance._state.db = False, connection.alias


def insert_values(fields: list, instance) -> list:
    return [_prepare(field, instance, add=True) for field in fields]


def update_row(instance, names: list[str], *, condition: tuple[str, list] | None = None) -> bool:
    """instance.save(update_fields=names) as one statement of our own: the hot moves (a step's, a plan's) save a
    few columns each, and Model.save's Python was most of their cost. The same values (auto_now stamped), the
    same refusal of a row that is not there. `condition`: SQL and its parameters the row must also meet, else
    nothing is written and the answer is False."""
    fields = _fields(type(instance), tuple(names))
    sql = update_sql(type(instance), tuple(names), where=(type(instance)._meta.pk.name,))
    params = [*(_prepare(field, instance, add=False) for field in fields), instance.pk]
    if condition is not None:
        sql, params = f"{sql} AND {condition[0]}", [*params, *condition[1]]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount:
            return True
    if condition is None:
        raise DatabaseError("Save with update_fields did not affect any rows.")
    return False


@functools.cache
def update_sql(model, names: tuple[str, ...], *, where: tuple[str, ...]) -> str:
    """"UPDATE table SET col = %s, … WHERE col = %s AND …" for the fields `names` (names or attnames, each
    once) and the equalities `where`: the parameters are the values in that order (update_values)."""
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in _fields(model, names))
    conditions = " AND ".join(f"{quote(field.column)} = %s" for field in _fields(model, where))
    return f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {conditions}"


def update_values(model, values: dict) -> list:
    """`values` (by field name or attname) as a statement's parameters, prepared as a queryset's update() would."""
    fields = _fields(model, tuple(values))
    return [_prepared(field, value) for field, value in zip(fields, values.values(), strict=True)]


@functools.cache
def _fields(model, names: tuple[str, ...]) -> tuple:
    """The fields `names` (names or attnames), each once, in order."""
    fields = {}
    for name in names:
        field = model._meta.get_field(name)
        fields[field.attname] = field
    return tuple(fields.values())


def _prepare(field, instance, *, add: bool):
    """What field.get_db_prep_save(field.pre_save(instance, add), connection) returns. For a plain value of a
    plain field (a str for a CharField, a UUID for a UUIDField or a key to one, an aware datetime …) that is
    the value itself, returned without Django's calls: a step inserts a few rows of some twenty columns."""
    kind = _kind(field)
    if kind and _plain(kind, getattr(instance, field.attname)):
        return getattr(instance, field.attname)
    return field.get_db_prep_save(field.pre_save(instance, add), connection)


def _prepared(field, value):
    """field.get_db_prep_save(value): _prepare's, for a value of no instance (nothing stamped)."""
    kind = _kind(field)
    return value if kind and _plain(kind, value) else field.get_db_prep_save(value, connection)


def _plain(kind: str, value) -> bool:
    return value is None or (type(value) is _PLAIN_TYPES[kind] and (kind != "datetime" or value.tzinfo is not None))


@functools.cache
def _kind(field) -> str:
    """The field's value kind when Django's save hands a plain value on unchanged, else "" (auto_now fields,
    JSON, decimals, any other field: prepared by Django)."""
    stamped = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    # Any other pre_save of its own may change the value (a date field's only stamps).
    if stamped or (type(field).pre_save is not models.Field.pre_save and not isinstance(field, models.DateField)):
        return ""
    target = field.target_field if isinstance(field, models.ForeignKey) else field
    for kind, classes in _PLAIN_FIELDS:
        if type(target) in classes:
            return kind
    return ""


_PLAIN_FIELDS = (
    ("str", (models.CharField, models.TextField)),
    ("int", (models.IntegerField, models.PositiveIntegerField, models.BigIntegerField, models.SmallIntegerField,
             models.PositiveSmallIntegerField, models.BigAutoField, models.AutoField)),
    ("bool", (models.BooleanField,)),
    ("uuid", (models.UUIDField,)),
    ("datetime", (models.DateTimeField,)),
)
_PLAIN_TYPES = {"str": str, "int": int, "bool": bool, "uuid": uuid.UUID, "datetime": datetime}
