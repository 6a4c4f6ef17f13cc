"""The API's JSON renderer: DRF's JSON, byte for byte but for floats, written by orjson.

json.dumps with DRF's encoder was ~4 ms of a page of 50 plans' ~50 ms of CPU; orjson writes the same bytes in
~0.4. What orjson would write differently goes through DRF's own code instead: datetimes, dates and times
(DRF's format: milliseconds, "Z") and every type orjson does not know (Decimal, lazy strings, timedelta)
through DRF's encoder; what orjson refuses — an integer past 64 bits, a key that is not a string, nesting
past its limit — makes the whole response DRF's, as does an indented response (`Accept: application/json;
indent=4`) or a renderer given another encoder class. U+2028 and U+2029 are escaped as DRF escapes them.
Where the two differ, on purpose: a float is the same number in orjson's shortest notation, which differs from
Python's repr for some exponents (1e-05 is written 0.00001, 1e-07 1e-7); a NaN or an infinity, which DRF's strict
JSON refuses (a 500), is written null. tests/api/test_renderers.py compares the two.
"""
import orjson
from rest_framework import renderers
from rest_framework.utils import encoders

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_DRF_DEFAULT = encoders.JSONEncoder().default


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        if (self.ensure_ascii or not self.compact or self.encoder_class is not encoders.JSONEncoder
                or self.get_indent(accepted_media_type, renderer_context or {}) is not None):
            return super().render(data, accepted_media_type, renderer_context)
        try:
            rendered = orjson.dumps(data, default=_DRF_DEFAULT, option=_OPTIONS)
        except orjson.JSONEncodeError:
            return super().render(data, accepted_media_type, renderer_context)
        # As DRF does: JSON that is also a strict JavaScript subset.
        return rendered.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
