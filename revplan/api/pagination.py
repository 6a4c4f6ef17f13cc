"""The API's page-number pagination, with a bounded count (plans.pagination) and strict query parameters.

Every list answers {"count", "next", "previous", "results"} as before. `count` is exact up to COUNT_LIMIT
matching items; COUNT_LIMIT means that many or more, and the pages then reach the first COUNT_LIMIT items in
the order asked (a filter, or the reverse order, reaches the others): so a page costs the same in a tenant of
1,000 plans as in one of 100,000. `page` must be a positive integer (or
`last`), `page_size` a positive integer (more than the maximum is the maximum): anything else is a 400.
"""
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination

from plans.pagination import COUNT_LIMIT, BoundedCountPaginator

MAX_PAGE_SIZE = 200
# Digits a page number or size may have: a longer one is a 400 before Python turns it into a number.
_MAX_DIGITS = 18


def _positive_int(raw: str, name: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_DIGITS:
        raise ValidationError({name: ["A positive integer."]})
    return int(raw)


class ApiPagination(PageNumberPagination):
    django_paginator_class = BoundedCountPaginator
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        size = _positive_int(raw, self.page_size_query_param)
        if size < 1:
            raise ValidationError({self.page_size_query_param: ["A positive integer."]})
        return min(size, self.max_page_size)

    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param, "1")
        if raw in self.last_page_strings:
            return paginator.num_pages
        # A number past the last page (0 included) is a 404, as before; a page that is no number is a 400.
        return _positive_int(raw, self.page_query_param)

    def requested_window(self, request) -> tuple[int, int] | None:
        """(offset, limit) of the page `request` asks for, for a list that reads a page with its count; None
        when it names none (`last`, or a value the paging refuses: paginate_queryset answers that)."""
        try:
            number = _positive_int(request.query_params.get(self.page_query_param, "1"), self.page_query_param)
            size = self.get_page_size(request)
        except ValidationError:
            return None
        return ((number - 1) * size, size) if number >= 1 else None

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound:
            paginator = self.django_paginator_class(queryset, self.get_page_size(request))
            if not paginator.count_exact:
                raise NotFound(f"Invalid page: pages reach the first {paginator.count_limit} items in this order; a "
                               "filter, or the reverse order, reaches the others.") from None
            raise

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        # The page's rows are written: let them go now. The view and its request refer to each other, so rows
        # kept on the page would wait for the garbage collector's full pass (~10 ms a pass, each tenth request).
        self.page.object_list = ()
        return response

    def get_paginated_response_schema(self, schema):
        response = super().get_paginated_response_schema(schema)
        response["properties"]["count"]["description"] = (
            f"How many items match, exactly up to {COUNT_LIMIT}; {COUNT_LIMIT} means {COUNT_LIMIT} or more, and the "
            f"pages then reach the first {COUNT_LIMIT} in the order asked (a filter or the reverse order reaches "
            "the others). Counting stops there, so a page costs the same however many items match.")
        return response

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["description"] = (
                    f"A page number (1, 2, …) or `last`; pages reach the first {COUNT_LIMIT} items in the order "
                    "asked. A page past the last is a 404, a value that is no number a 400.")
            elif parameter["name"] == self.page_size_query_param:
                parameter["description"] = (
                    f"Items per page, 1 to {MAX_PAGE_SIZE} (more is {MAX_PAGE_SIZE}); a value that is no positive "
                    "integer is a 400.")
                parameter["schema"] = {"type": "integer", "minimum": 1}
        return parameters
