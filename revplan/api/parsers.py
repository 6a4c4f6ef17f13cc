"""The API's JSON parser: DRF's, with a bound on nesting.

DRF's JSONParser turns a ValueError into a 400 but not the RecursionError Python's json raises on a
document nested a few thousand levels deep (a 2 KB body), which surfaced as a 500 on every JSON
endpoint, login included. No request body of this API nests anywhere near MAX_REQUEST_DEPTH levels.
"""
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from plans.schemas import nests_deeper_than

MAX_REQUEST_DEPTH = 32


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - the body nests deeper than {MAX_REQUEST_DEPTH} levels.") from None
        if nests_deeper_than(data, MAX_REQUEST_DEPTH):
            raise ParseError(f"JSON parse error - the body nests deeper than {MAX_REQUEST_DEPTH} levels.")
        return data
