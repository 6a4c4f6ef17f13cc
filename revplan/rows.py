"""Rows written by a statement of our own rather than Model.save (an INSERT … SELECT that writes only where a
condition holds, in the same round trip): the model's columns, and an instance's values prepared as Django's
own insert prepares them."""
import functools
import uuid
from datetime import datetime

from django.db import connection, models


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


def insert_values(fields: list, instance) -> list:
    return [_prepare(field, instance) for field in fields]


def _prepare(field, instance):
    """What field.get_db_prep_save(field.pre_save(instance, True), connection) returns. For a plain value of a
    plain field (a str for a CharField, a UUID for a UUIDField or a key to one, an aware datetime …) that is
    the value itself, returned without Django's calls: a step inserts a few rows of some twenty columns."""
    kind = _kind(field)
    if kind:
        value = getattr(instance, field.attname)
        if value is None or (type(value) is _PLAIN_TYPES[kind] and (kind != "datetime" or value.tzinfo is not None)):
            return value
    return field.get_db_prep_save(field.pre_save(instance, True), connection)


@functools.cache
def _kind(field) -> str:
    """The field's value kind when Django's save hands a plain value on unchanged, else "" (auto_now fields,
    JSON, decimals, any other field: prepared by Django)."""
    if type(field).pre_save is not models.Field.pre_save and not (
            isinstance(field, models.DateTimeField) and not (field.auto_now or field.auto_now_add)):
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
