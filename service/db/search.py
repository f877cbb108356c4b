"""The parsed ``filter`` and ``sort`` of ``GET /v1/experiments`` (``service.sweeps.filters``) as
SQLAlchemy expressions: every key and value a bound parameter, never SQL text.

- a metric clause is an EXISTS on ``metric_latest`` (index ``(key)``), or, when the list
  is sorted by that metric and every match must meet the clause, a comparison on the sort's join,
- a ``params.`` clause an EXISTS on ``experiment_params`` (indexes ``(path, num_value)`` and
  ``(path, str_value)``),
- a ``tags.`` clause compares the JSON ``tags`` column's text at that key,
- a field clause the experiment's column.

``sort_keys`` gives the ordered columns of a sort for keyset paging (``service.db.paging``):
missing metric values last, ties by newest then id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, exists, false, or_, true
from sqlalchemy.orm import aliased

from service.db.models import Experiment, ExperimentParam, MetricLatest
from service.db.paging import SortKey
from service.sweeps.filters import And, Clause, Node, Or, Sort

_COMPARE: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
    "in": lambda c, v: c.in_(list(v)),
}
_FIELDS = {
    "status": Experiment.status,
    "name": Experiment.name,
    "queue": Experiment.queue,
    "sweep_id": Experiment.sweep_id,
}


def where(node: Node | None, sort: Sort | None = None) -> list[ColumnElement[bool]]:
    """The filter's conditions. With a metric ``sort``, a clause on that metric that every match
    must meet (at the top level, or in the top-level ``and``) compares the sort's join
    (``with_sort``) instead of an EXISTS of its own: one join of ``metric_latest`` fewer."""
    if node is None:
        return []
    key = sort.key if sort is not None and sort.kind == "metric" else None
    if key is None:
        return [condition(node)]
    items = node.items if isinstance(node, And) else (node,)
    return [_clause(n, sorted_by=key) if isinstance(n, Clause) else condition(n) for n in items]


def condition(node: Node) -> ColumnElement[bool]:
    if isinstance(node, And):
        return and_(true(), *(condition(n) for n in node.items))
    if isinstance(node, Or):
        return or_(false(), *(condition(n) for n in node.items))
    return _clause(node)


def _numeric(value: Any) -> bool:
    first = value[0] if isinstance(value, tuple) else value
    return isinstance(first, float)


def _clause(c: Clause, sorted_by: str | None = None) -> ColumnElement[bool]:
    compare = _COMPARE[c.op]  # the parser admits only these operators
    if c.kind == "field":
        return compare(_FIELDS[c.key], c.value)
    if c.kind == "tag":
        return compare(Experiment.tags[c.key].as_string(), c.value)
    if c.kind == "param":
        column = ExperimentParam.num_value if _numeric(c.value) else ExperimentParam.str_value
        return exists().where(
            ExperimentParam.experiment_id == Experiment.id,
            ExperimentParam.path == c.key,
            compare(column, c.value),
        )
    if c.key == sorted_by:  # NULL (no such metric) compares as no match, as the EXISTS would
        return compare(_SORTED_BY.value, c.value)
    return exists().where(
        MetricLatest.experiment_id == Experiment.id,
        MetricLatest.key == c.key,
        compare(MetricLatest.value, c.value),
    )


#: the metric a list is sorted by, outer-joined once (a correlated subquery would be evaluated
#: for each use: the "missing" flag, the value, the ORDER BY and the cursor's columns)
_SORTED_BY = aliased(MetricLatest, name="sorted_by")


def with_sort(stmt: Select, sort: Sort | None) -> Select:
    """``stmt`` with the join that ``sort_keys(sort)`` needs (none unless sorted by a metric)."""
    if sort is None or sort.kind != "metric":
        return stmt
    return stmt.outerjoin(
        _SORTED_BY,
        and_(_SORTED_BY.experiment_id == Experiment.id, _SORTED_BY.key == sort.key),
    )


def sort_keys(sort: Sort | None) -> list[SortKey]:
    """The ordered columns of ``sort`` (newest first when None), ending with created_at and id
    so the order is total. A metric sort reads the join of ``with_sort``."""
    tail = [SortKey(Experiment.created_at, True, "t"), SortKey(Experiment.id, True, "s")]
    if sort is None:
        return tail
    if sort.kind == "field":
        if sort.key == "created_at":
            return [
                SortKey(Experiment.created_at, sort.descending, "t"),
                SortKey(Experiment.id, sort.descending, "s"),
            ]
        column = {"name": Experiment.name, "status": Experiment.status}[sort.key]
        return [SortKey(column, sort.descending, "s"), *tail]
    value = _SORTED_BY.value
    missing = case((value.is_(None), 1), else_=0)
    return [
        SortKey(missing, False, "i"),
        SortKey(value, sort.descending, "f", nullable=True),
        *tail,
    ]
