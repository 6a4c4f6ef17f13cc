"""revplan.api.renderers.JSONRenderer writes DRF's JSON byte for byte, floats aside (the same values), and is
what the API answers with."""
import datetime
import decimal
import json
import uuid
from collections import OrderedDict

import pytest
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy
from rest_framework import renderers
from rest_framework.exceptions import ErrorDetail
from rest_framework.utils import encoders
from rest_framework.utils.serializer_helpers import ReturnDict, ReturnList

from plans.models import PlanStatus
from revplan.api.renderers import JSONRenderer

UTC = datetime.UTC
TRICKY_TEXT = "".join(chr(code) for code in range(0x20)) + '"\\/ é 日本 \u2028 \u2029 \x7f 😀'

PAYLOADS = [
    {"results": [{"id": uuid.uuid4(), "status": PlanStatus.ACTIVE, "n": 3, "ok": True, "none": None}]},
    {"at": datetime.datetime(2026, 12, 2, 5, 6, 7, 891234, tzinfo=UTC), "no_micro": datetime.datetime(2026, 1, 1),
     "offset": datetime.datetime(2026, 1, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
     "day": datetime.date(2026, 12, 2), "time": datetime.time(5, 6, 7, 123456), "gap": datetime.timedelta(hours=3)},
    {"text": TRICKY_TEXT, "error": ErrorDetail("Not found.", code="not_found"), "lazy": gettext_lazy("Required")},
    {"amount": decimal.Decimal("12.50"), "float": 0.1, "big": 1.5e300, "neg": -0.0, "whole": 3.0},
    OrderedDict(b=[1, (2, 3)], a={"nested": [[[]]], "empty": {}}),
    {"safe": mark_safe("<b>x</b>"), "bytes": b"raw", "set": {"only"}, "frozen": frozenset({7})},
    ReturnDict({"a": ReturnList([1, {"b": 2}], serializer=None)}, serializer=None),
    [],
    "plain",
    # What orjson refuses, DRF writes: past 64 bits, keys that are not strings.
    {"huge": 2 ** 70, "minus_huge": -(2 ** 70)},
    {2: "int key", None: "none key", True: "bool key"},
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_same_bytes_as_drfs_renderer(payload):
    assert JSONRenderer().render(payload) == renderers.JSONRenderer().render(payload)


def test_floats_are_the_same_numbers_in_orjsons_notation():
    payload = {"small": 1e-05, "smaller": 1e-07, "tiny": 5e-324, "ratio": 0.9, "large": 1e21}
    rendered = JSONRenderer().render(payload)
    assert json.loads(rendered) == payload
    assert b'"small":0.00001' in rendered  # DRF: 1e-05


def test_a_nan_or_an_infinity_is_null_where_drf_would_fail():
    payload = {"nan": float("nan"), "inf": float("inf"), "ok": 1.5}
    assert JSONRenderer().render(payload) == b'{"nan":null,"inf":null,"ok":1.5}'
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        renderers.JSONRenderer().render(payload)


def test_a_renderer_with_another_encoder_is_drfs():
    class Encoder(encoders.JSONEncoder):
        def default(self, obj):
            return "custom" if isinstance(obj, complex) else super().default(obj)

    class Custom(JSONRenderer):
        encoder_class = Encoder

    assert Custom().render({"z": 1j}) == b'{"z":"custom"}'


def test_an_indented_response_is_drfs():
    payload = {"a": [1, {"b": None}]}
    media_type = "application/json; indent=4"
    rendered = JSONRenderer().render(payload, media_type, {})
    assert rendered == renderers.JSONRenderer().render(payload, media_type, {})
    assert b"\n    " in rendered


def test_nothing_to_render_is_an_empty_body():
    assert JSONRenderer().render(None) == b""


def test_what_neither_can_write_is_drfs_error():
    with pytest.raises(TypeError):
        JSONRenderer().render({"thing": object()})


def test_the_api_answers_with_it(client, world):
    client.force_login(world.approver)
    response = client.get("/api/v1/plans/")
    assert response.status_code == 200
    assert isinstance(response.accepted_renderer, JSONRenderer)
    assert response["Content-Type"] == "application/json"
