"""revplan.api.output: a compiled serializer renders what DRF renders, field kind by field kind, for dicts and
objects, including DRF's own paths (missing keys, defaults, dotted and "*" sources, method fields, naive and
string datetimes, a serializer with its own to_representation)."""
import datetime
import uuid
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer

from revplan.api.output import compiled_many

AT = datetime.datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=datetime.UTC)


class InnerSerializer(serializers.Serializer):
    code = serializers.CharField()
    count = serializers.IntegerField(required=False)  # missing: skipped


class LoudSerializer(serializers.Serializer):
    code = serializers.CharField()

    def to_representation(self, instance):
        return {"code": str(instance["code"]).upper()}


class KitchenSinkSerializer(serializers.Serializer):
    ident = serializers.UUIDField(source="id")
    hex_id = serializers.UUIDField(source="id", format="hex")
    name = serializers.CharField()
    number = serializers.IntegerField()
    flag = serializers.BooleanField()
    text_flag = serializers.BooleanField(source="text")
    status = serializers.ChoiceField(choices=[("A", "a"), ("B", "b")])
    at = serializers.DateTimeField(allow_null=True)
    at_formatted = serializers.DateTimeField(source="at", format="%Y-%m-%d")
    naive = serializers.DateTimeField()
    text = serializers.DateTimeField()
    tags = serializers.ListField(child=serializers.UUIDField())
    mapping = serializers.DictField()
    blob = serializers.JSONField(allow_null=True)
    inner = InnerSerializer(allow_null=True)
    inners = InnerSerializer(many=True)
    loud = LoudSerializer()
    deep = serializers.CharField(source="inner.code", default="none")
    whole = serializers.CharField(source="*")
    optional = serializers.CharField(required=False)
    defaulted = serializers.CharField(default="fallback")
    nullable = serializers.IntegerField(allow_null=True)
    method = serializers.SerializerMethodField()
    secret = serializers.CharField(write_only=True)

    def get_method(self, instance) -> str:
        return f"method of {instance['name'] if isinstance(instance, dict) else instance.name}"


def sample(**changes) -> dict:
    values = {
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"), "name": "first", "number": 7, "flag": True,
        "text": "2026-01-01T00:00:00Z", "status": "A", "at": AT, "naive": datetime.datetime(2026, 1, 2, 3, 4, 5),
        "tags": [uuid.uuid4(), None], "mapping": {"a": 1, "b": None}, "blob": {"nested": [1, {"x": None}]},
        "inner": {"code": "i", "count": 2}, "inners": [{"code": "j"}, {"code": "k", "count": 0}], "loud": {"code": "q"},
        "nullable": None, "secret": "never", "undeclared": "dropped",
    }
    values.update(changes)
    return values


def as_object(values: dict):
    return SimpleNamespace(**values)


INSTANCES = [
    sample(),
    sample(inner=None, at=None, status="B", flag=False, number="8", optional="given", defaulted="set"),
    sample(name="", tags=[], mapping={}, blob=None, inners=[], at=AT.astimezone(ZoneInfo("Europe/Paris"))),
]


def rendered(data) -> bytes:
    return JSONRenderer().render(data)


def test_dicts_render_as_drf_renders_them():
    assert rendered(compiled_many(KitchenSinkSerializer)(INSTANCES)) == rendered(
        KitchenSinkSerializer(INSTANCES, many=True).data)


def test_objects_render_as_drf_renders_them():
    objects = [as_object({key: value for key, value in values.items() if key not in ("inner", "loud")})
               for values in INSTANCES]
    for instance in objects:
        instance.inner = as_object({"code": "o"})
        instance.loud = {"code": "l"}
    assert rendered(compiled_many(KitchenSinkSerializer)(objects)) == rendered(
        KitchenSinkSerializer(objects, many=True).data)


def test_only_declared_readable_fields_come_out_in_their_order():
    (out,) = compiled_many(KitchenSinkSerializer)([sample()])
    assert list(out) == [name for name, field in KitchenSinkSerializer().fields.items()
                         if not field.write_only and name != "optional"]


def test_another_current_timezone_is_drf_s_too():
    with timezone.override(ZoneInfo("America/New_York")):
        assert rendered(compiled_many(KitchenSinkSerializer)(INSTANCES)) == rendered(
            KitchenSinkSerializer(INSTANCES, many=True).data)


def test_a_missing_required_key_fails_as_in_drf():
    broken = sample()
    del broken["name"]
    with pytest.raises(KeyError):
        KitchenSinkSerializer([broken], many=True).data  # noqa: B018  (DRF's own failure, for comparison)
    with pytest.raises(KeyError):
        compiled_many(KitchenSinkSerializer)([broken])
