"""The audit the fault tests rely on catches what it claims to: a worker writing to a run after
another worker claimed it, or while not holding the lease."""

from __future__ import annotations

from tests.faults.conftest import Audit


def _row(seq, tbl, writer, before=None, after=None, step=None):
    return {"seq": seq, "tbl": tbl, "experiment_id": "e", "writer": writer,
            "owner_before": before, "owner_after": after, "step": step}  # fmt: skip


def test_a_clean_takeover_has_no_violations():
    rows = [
        _row(1, "experiments", "A", None, "A"),  # claim by A
        _row(2, "metrics", "A", after="A", step=1),
        _row(3, "experiments", "", "A", None),  # the reconciler requeues (lease expired)
        _row(4, "experiments", "B", None, "B"),  # claim by B
        _row(5, "metrics", "B", after="B", step=1),
        _row(6, "experiments", "B", "B", None),  # B finishes
    ]
    audit = Audit(rows)
    assert audit.violations() == []
    assert audit.writers("e") == ["A", "B"] and len(audit.claims("e")) == 2


def test_a_write_by_the_replaced_worker_is_a_violation():
    rows = [
        _row(1, "experiments", "A", None, "A"),
        _row(2, "experiments", "B", "A", "B"),  # B takes over an expired lease
        _row(3, "metrics", "A", after="B", step=2),  # A was not stopped by the guard
    ]
    problems = Audit(rows).violations()
    assert len(problems) == 2 and all("A wrote metrics" in p for p in problems)


def test_an_experiment_update_by_a_worker_not_holding_the_lease_is_a_violation():
    rows = [
        _row(1, "experiments", "A", None, "A"),
        _row(2, "experiments", "B", "A", "A", step=3),  # B bumps A's row without owning it
    ]
    assert len(Audit(rows).violations()) == 2
