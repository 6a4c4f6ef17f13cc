"""Querysets compiled to SQL once per process, then run with each call's values.

On a governed step's hot path Django's query compiler, not PostgreSQL, is most of a read's cost:
building and compiling a select_related or subquery read is 1-3 ms of Python, its round trip 0.1 ms.
A CompiledQuery keeps the queryset readable as any other (a function that builds it from its values),
builds and compiles it once with placeholder values, and on each call runs that SQL with the caller's
values through the queryset's own iterable: the same model instances, select_related objects,
annotations or values_list tuples Django would make. Only a queryset whose shape does not depend on its
values fits (no `__in` over a list of varying length: InArray makes the list one parameter; no branch on a
value): the values must end up as parameters, and compiling refuses a placeholder that does not.
"""
import copy
import threading
from collections.abc import Callable
from uuid import UUID

from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import BooleanField, F, Field, Func, QuerySet, Value
from django.db.transaction import TransactionManagementError


class CompiledQuery:
    """`build(**values) -> QuerySet`, compiled on first use with `placeholders` (a value per name, of the
    type the caller passes; each distinct from every other value in the query), then run with new values:
    `query.all(**values)` -> list, `query.first(**values)` -> the first row or None (build includes the
    slice, e.g. `[:1]`, when one row is wanted)."""

    def __init__(self, build: Callable[..., QuerySet], **placeholders):
        self._build = build
        self._placeholders = placeholders
        self._compiled: tuple | None = None
        self._converters: dict | None = None
        self._lock = threading.Lock()

    def all(self, **values) -> list:
        template, compiler, sql, params, slots = self._compiled or self._compile()
        bound = tuple(param if slot is None else _bind(values[slot], like=param)
                      for slot, param in zip(slots, params, strict=True))
        # A shallow copy that shares the query, which nothing below changes (not copy.copy: a QuerySet's
        # __getstate__ would run it).
        queryset = object.__new__(type(template))
        queryset.__dict__.update(template.__dict__)
        run = copy.copy(compiler)
        run.connection = connections[template.db]  # this thread's connection, not the compiling one's
        if template.query.select_for_update and run.connection.get_autocommit():
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        run.as_sql = lambda *args, **kwargs: (sql, bound)
        run.get_converters = self._converters_for
        queryset._query = _Compiled(template.query, run)  # not .query: its setter changes the iterable
        queryset._result_cache = None
        return list(queryset._iterable_class(queryset))

    def first(self, **values):
        rows = self.all(**values)
        return rows[0] if rows else None

    def _converters_for(self, expressions) -> dict:
        """The compiler's get_converters, worked out once: every run selects the compiled expressions, and the
        converters of an expression (a field's from_db_value …) take the connection as an argument."""
        if self._converters is None:
            _, compiler, _, _, _ = self._compiled
            self._converters = type(compiler).get_converters(compiler, expressions)
        return self._converters

    def _compile(self) -> tuple:
        with self._lock:
            if self._compiled is None:
                template = self._build(**self._placeholders)
                if template._prefetch_related_lookups:
                    raise ValueError("a CompiledQuery does not prefetch")
                compiler = template.query.get_compiler(using=template.db)
                try:
                    sql, params = compiler.as_sql()
                except EmptyResultSet:
                    # E.g. a placeholder out of its field's range: compiled, the query would never match.
                    raise ValueError("the placeholders compile to a query that matches nothing") from None
                slots = [self._slot_of(param) for param in params]
                missing = set(self._placeholders) - set(slots)
                if missing:
                    raise ValueError(f"placeholders not compiled to parameters: {sorted(missing)}")
                self._compiled = (template, compiler, sql, tuple(params), slots)
            return self._compiled

    def _slot_of(self, param) -> str | None:
        for name, placeholder in self._placeholders.items():
            # isinstance: the backend passes an int as psycopg's Int4 or Int8; a bool is never a placeholder.
            if isinstance(param, type(placeholder)) and not isinstance(param, bool) and param == placeholder:
                return name
        return None


class _Compiled:
    """The template's query, except that its compiler is the compiled one (for the queryset's iterable)."""

    def __init__(self, query, compiler):
        self._query = query
        self._compiler = compiler

    def get_compiler(self, using=None, connection=None, elide_empty=True):
        return self._compiler

    def __getattr__(self, name):
        return getattr(self._query, name)


class InArray(Func):
    """`field = ANY(%s)`, the list one array parameter, as a filter (where `__in` makes a placeholder of each value):
    `filter(InArray("pk", ids, UUIDField()))` compiles once for lists of any length (placeholder: a list of one)."""

    conditional = True
    output_field = BooleanField()

    def __init__(self, field: str, values: list, base_field: Field):
        super().__init__(F(field), Value(values, output_field=ArrayField(base_field)))

    def as_sql(self, compiler, connection, **extra_context):
        (field_sql, field_params), (values_sql, values_params) = (
            compiler.compile(expression) for expression in self.get_source_expressions())
        return f"{field_sql} = ANY({values_sql})", (*field_params, *values_params)


def _bind(value, *, like):
    """The value as the field prepared the placeholder `like` (a str id as a UUID, an int as Int4 or Int8)."""
    if type(value) is type(like):
        return value
    if isinstance(like, UUID):
        return UUID(str(value))
    if isinstance(like, int) and isinstance(value, int) and not isinstance(value, bool):
        return type(like)(value)
    if isinstance(value, type(like)):
        return value
    raise TypeError(f"expected {type(like).__name__}, got {type(value).__name__}")
