"""Rows written by a statement of our own rather than Model.save (an INSERT … SELECT that writes only where a
condition holds, in the same round trip): the model's columns, and an instance's values prepared as Django's
own insert prepares them."""
import functools

from django.db import connection


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
    return [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
