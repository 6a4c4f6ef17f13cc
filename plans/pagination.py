"""Paging whose cost does not grow with a tenant's size: the count is exact up to COUNT_LIMIT, then bounded.

Django's Paginator counts every matching row (SELECT COUNT(*) over the whole filter) on each page: at 100,000
plans that count is most of a list page's time. Here the count stops at COUNT_LIMIT + 1 rows (an index scan
of at most that many entries); beyond it the count is reported as COUNT_LIMIT and `count_exact` is False.
The pages reach the first COUNT_LIMIT rows in the order asked: deeper offsets would cost as much as a count
(a filter or the reverse order reaches the others). The API (revplan.api.pagination) and the admin
changelists and console pages (plans.admin) page through this.
"""
from functools import cached_property

from django.core.paginator import Paginator
from django.db.models import QuerySet

# The rows a list reaches and counts exactly: 200 pages of 50.
COUNT_LIMIT = 10_000


class BoundedCountPaginator(Paginator):
    count_limit = COUNT_LIMIT

    @cached_property
    def counted(self) -> int:
        """The matching rows, counted up to count_limit + 1."""
        if not isinstance(self.object_list, QuerySet):
            return len(self.object_list)
        # Unordered: the planner may count through whichever index is smallest, and stops at the limit.
        return self.object_list.order_by()[: self.count_limit + 1].count()

    @cached_property
    def count(self) -> int:
        """Exact up to count_limit; count_limit when there are more (and then count_exact is False)."""
        return min(self.counted, self.count_limit)

    @property
    def count_exact(self) -> bool:
        return self.counted <= self.count_limit
