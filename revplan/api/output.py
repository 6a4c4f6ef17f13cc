"""Output serializers compiled once into plain functions: DRF's JSON for a page at a fraction of its cost.

A page of 50 plans is ~6,000 fields. DRF's generic pass spends most of its time around the fields, not in
them: the _readable_fields generator, get_attribute's Mapping isinstance and callable checks, a PKOnlyObject
check, for every field of every object (~9 ms of the page's ~36 ms of CPU). `compiled_many(SerializerClass)` walks
the declared fields once and keeps, per field, a reader and DRF's own to_representation; only where DRF's code
is a bare str() or int() (CharField, UUIDField, IntegerField) is that called directly, and an aware datetime
is put in the current timezone read once a call, not once a field. Anything it does not
know stays DRF's: a field with its own get_attribute, a dotted or "*" source, a serializer with its own
to_representation or list class. So the output is the serializer's, declared fields only, in their order
(tests/api/test_output.py and test_plan_output.py compare it with DRF's byte for byte).

The serializers are compiled without context: for output that depends on the instance alone.
"""
import datetime
import functools
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db.models.manager import BaseManager
from django.utils import timezone
from rest_framework import ISO_8601, fields, serializers
from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject
from rest_framework.settings import api_settings

Represent = Callable[[Any], Any]
_SKIPPED = object()


def _plain(field: fields.Field) -> Represent | None:
    """str or int when that is all the field's to_representation does (exact classes: a subclass may differ)."""
    if type(field) is fields.CharField or (type(field) is fields.UUIDField and field.uuid_format == "hex_verbose"):
        return str
    return int if type(field) is fields.IntegerField else None


def compiled_many(serializer_class: type[serializers.Serializer]) -> Callable[[Any], list]:
    """instances -> what serializer_class(instances, many=True).data would be (as a plain list)."""
    def represent_many(instances) -> list:
        represent = _compiled(serializer_class, _output_timezone(), api_settings.DATETIME_FORMAT)
        return [represent(instance) for instance in instances]

    return represent_many


def _output_timezone():
    """DRF's DateTimeField.default_timezone, read once a call rather than once a datetime (~400 a page)."""
    return timezone.get_current_timezone() if settings.USE_TZ else None


@functools.cache
def _compiled(serializer_class: type[serializers.Serializer], output_timezone, datetime_format) -> Represent:
    return _serializer(serializer_class(), output_timezone, datetime_format)


def _serializer(serializer: serializers.BaseSerializer, output_timezone, datetime_format) -> Represent:
    if type(serializer) is serializers.ListSerializer:
        child = _serializer(serializer.child, output_timezone, datetime_format)
        return lambda data: [child(item) for item in (data.all() if isinstance(data, BaseManager) else data)]
    if type(serializer).to_representation is not serializers.Serializer.to_representation:
        return serializer.to_representation
    steps = [(field.field_name, *_field_parts(field, output_timezone, datetime_format))
             for field in serializer._readable_fields]

    def represent(instance) -> dict:
        out = {}
        # DRF's test is isinstance(Mapping), once a field; here once an object, a dict told by its type first.
        is_mapping = type(instance) is dict or isinstance(instance, Mapping)
        for name, attr, convert, drf_step in steps:
            if attr is not None:
                try:
                    value = instance[attr] if is_mapping else getattr(instance, attr)
                except ObjectDoesNotExist:  # before AttributeError: a missing related object is both; null to DRF
                    out[name] = None
                    continue
                except (KeyError, AttributeError):
                    value = _SKIPPED  # DRF's read decides: a default, null, skipped, or its error
                if value is not _SKIPPED and not callable(value):  # a callable: DRF may call it
                    out[name] = None if value is None else convert(value)
                    continue
            value = drf_step(instance)
            if value is not _SKIPPED:
                out[name] = value
        return out

    return represent


def _field_parts(field: fields.Field, output_timezone, datetime_format) -> tuple[str | None, Represent, Represent]:
    """(attr, convert, drf_step) for one field: the source attribute a plain read may take (None: DRF's read
    always), the conversion of its value, and DRF's Serializer.to_representation for the field (or _SKIPPED)."""
    if isinstance(field, serializers.BaseSerializer):
        convert = _serializer(field, output_timezone, datetime_format)
    elif (type(field) is fields.DateTimeField and not hasattr(field, "format") and not hasattr(field, "timezone")
          and output_timezone is not None and datetime_format.lower() == ISO_8601):
        convert = _iso_datetime(field, output_timezone)
    else:
        convert = _plain(field) or field.to_representation
    plain_read = type(field).get_attribute is fields.Field.get_attribute and len(field.source_attrs) == 1
    return (field.source_attrs[0] if plain_read else None), convert, functools.partial(
        _drf_step, field.get_attribute, convert)


def _drf_step(read: Represent, convert: Represent, instance):
    try:
        value = read(instance)
    except SkipField:
        return _SKIPPED
    check_for_none = value.pk if isinstance(value, PKOnlyObject) else value
    return None if check_for_none is None else convert(value)


def _iso_datetime(field: fields.DateTimeField, output_timezone) -> Represent:
    """DRF's DateTimeField.to_representation for an aware datetime, in the timezone read for this call;
    anything else (a string, a naive datetime, an overflow) goes to DRF's own."""
    def convert(value):
        if type(value) is not datetime.datetime or value.utcoffset() is None:
            return field.to_representation(value)
        try:
            text = value.astimezone(output_timezone).isoformat()
        except OverflowError:
            return field.to_representation(value)
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return convert
