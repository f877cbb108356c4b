"""Packing a sweep's launched trials: the service's grouping (``service.sweeps.packing``), the
worker's regrouping by regcore's ``pack_key`` (``worker.packs.regroup``), and the messages
``POST /v1/sweeps`` sends."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from regcore.spec import parse_spec
from service.db.models import Experiment
from service.queue import PACK_TASK_NAME, TASK_NAME
from service.settings import Settings
from service.sweeps.packing import CPU_PACK_SIZE, GPU_PACK_SIZE, group, group_key, size_for
from tests.sweeps.test_api import grid


@dataclass
class Row:
    id: str
    queue: str
    spec: dict[str, Any]
    sweep_id: str | None = "s1"


def spec(seed: int = 0, strength: float = 1e-3, **train: Any) -> dict[str, Any]:
    return {
        "seed": seed,
        "data": {"name": "mnist1d", "n_train": 200, "n_val": 50, "n_test": 50},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 2, "batch_size": 50, "lr": 0.05, "device": "cpu", **train},
        "regularizers": [{"name": "l2", "strength": strength}],
    }


def test_trials_that_share_seed_data_model_and_epochs_go_out_together_in_launch_order():
    rows = [Row(f"e{i}", "cpu", spec(seed=i % 2, strength=10.0**-i)) for i in range(6)]
    assert group(rows, None) == [(["e0", "e2", "e4"], "cpu"), (["e1", "e3", "e5"], "cpu")]


def test_packs_are_at_most_pack_size_and_1_turns_packing_off():
    rows = [Row(f"e{i}", "cpu", spec(strength=10.0**-i)) for i in range(5)]
    assert group(rows, 2) == [(["e0", "e1"], "cpu"), (["e2", "e3"], "cpu"), (["e4"], "cpu")]
    assert group(rows, 1) == [([f"e{i}"], "cpu") for i in range(5)]


def test_the_default_size_depends_on_the_queue():
    assert size_for("cpu", None) == CPU_PACK_SIZE and size_for("gpu", None) == GPU_PACK_SIZE
    assert size_for("gpu", 3) == 3
    rows = [Row(f"e{i}", "gpu", spec(strength=i / 100)) for i in range(GPU_PACK_SIZE + 1)]
    sizes = [len(ids) for ids, _ in group(rows, None)]
    assert sizes == [GPU_PACK_SIZE, 1]


def test_what_differs_in_sweep_data_model_epochs_or_queue_or_is_an_ensemble_is_not_grouped():
    base = spec()
    other_data = {**base, "data": {**base["data"], "n_train": 300}}
    other_model = {**base, "model": {"name": "mlp", "hidden": [32]}}
    other_epochs = spec(epochs=3)
    ensemble = {**base, "ensemble": {"size": 3}}
    assert group_key("cpu", ensemble, "s1") is None and group_key("cpu", base, None) is None
    keys = {group_key("cpu", s, "s1") for s in (base, other_data, other_model, other_epochs)}
    assert len(keys) == 4 and group_key("gpu", base, "s1") != group_key("cpu", base, "s1")
    assert group_key("cpu", base, "s1") != group_key("cpu", base, "s2")
    rows = [Row("a", "cpu", base), Row("b", "cpu", ensemble), Row("c", "cpu", base)]
    rows += [Row("d", "cpu", base, sweep_id=None), Row("e", "cpu", base, sweep_id="s2")]
    assert group(rows, None) == [
        (["a", "c"], "cpu"),
        (["b"], "cpu"),
        (["d"], "cpu"),
        (["e"], "cpu"),
    ]


def test_the_worker_splits_a_message_by_regcores_pack_key():
    from worker.packs import regroup

    specs = [
        ("a", "cpu", parse_spec(spec(strength=1e-3))),
        ("b", "cpu", parse_spec(spec(strength=1e-2, lr=0.1))),  # lr may differ per member
        ("c", "cpu", parse_spec(spec(optimizer="adam"))),  # the optimizer may not
        ("d", "cpu", parse_spec({**spec(), "regularizers": [{"name": "sam", "rho": 0.05}]})),
        ("e", "cpu", None),  # a stored spec that no longer parses: the single path fails it
        ("f", "cpu", parse_spec(spec(optimizer="adam", strength=0.1))),
        # the same pack_key as a, but regcore refuses the two orders in one pack
        ("g", "cpu", parse_spec({**spec(), "regularizers": [{"name": "dropout", "p": 0.1},
                                                            {"name": "l2", "strength": 1e-3}]})),
        ("h", "cpu", parse_spec({**spec(), "regularizers": [{"name": "dropout", "p": 0.2}]})),
    ]  # fmt: skip
    assert regroup(specs) == [
        (["a", "b", "h"], "cpu"),
        (["g"], "cpu"),
        (["c", "f"], "cpu"),
        (["d"], "cpu"),
        (["e"], "cpu"),
    ]


def _messages(settings: Settings) -> list[tuple[str, Any]]:
    """(task name, positional args) of every message in the filesystem broker's queue."""
    out = []
    for path in sorted((settings.broker_dir / "queue").iterdir()):
        msg = json.loads(path.read_text())
        body = msg["body"]
        if msg.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        out.append((msg["headers"]["task"], json.loads(body)[0]))
    return out


@pytest.mark.parametrize("pack_size", [None, 1])
def test_a_sweep_submit_sends_one_message_per_pack(pack_size, settings, db_url, tmp_path):
    from fastapi.testclient import TestClient

    from service.main import create_app

    settings = settings.model_copy(update={"pack_size": pack_size})
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        sweep = client.post("/v1/sweeps", json=grid(max_concurrent=6)).json()
    ids = [e["experiment_id"] for e in sweep["experiments"][:6]]
    messages = _messages(settings)
    if pack_size == 1:
        assert sorted(messages) == sorted((TASK_NAME, [i]) for i in ids)
    else:  # configuration-major, seeds inner: the seeds' data differ, so one pack per seed
        assert sorted(messages) == sorted(
            [
                (PACK_TASK_NAME, [[ids[0], ids[2], ids[4]]]),
                (PACK_TASK_NAME, [[ids[1], ids[3], ids[5]]]),
            ]
        )
    from service.db.session import make_engine, make_sessionmaker

    engine = make_engine(db_url)
    with make_sessionmaker(engine)() as s:
        stamped = s.scalars(select(Experiment.enqueued_at).where(Experiment.id.in_(ids))).all()
    engine.dispose()
    assert len(stamped) == 6 and all(t is not None for t in stamped)


def test_a_killed_workers_pack_members_are_sent_again_as_one_pack(client, sessions, settings):
    from datetime import timedelta

    from service.db import jobs
    from service.db.models import utcnow
    from service.queue import make_celery
    from worker.reconciler import reconcile_once

    sweep = client.post("/v1/sweeps", json=grid(max_concurrent=4, seeds=1)).json()
    ids = [e["experiment_id"] for e in sweep["experiments"]]
    for path in (settings.broker_dir / "queue").iterdir():
        path.unlink()  # the first pack's message was taken by a worker, which then died
    with sessions.begin() as s:
        for eid in ids:
            assert jobs.claim(s, eid, "dead", 30)
            s.get(Experiment, eid).lease_expires_at = utcnow() - timedelta(seconds=1)
    report = reconcile_once(sessions, make_celery(settings), grace_s=0, pack_size=None)
    assert sorted(report.requeued) == sorted(ids) and sorted(report.enqueued) == sorted(ids)
    [(task, [members])] = _messages(settings)  # one message, in whatever order
    assert task == PACK_TASK_NAME and sorted(members) == sorted(ids)


# --- the worker's pack task (worker.packs.run_pack_job), in process on a real database --------


def _pack_ctx(db_url: str, tmp_path, cache_dir, monkeypatch):
    from service.queue import make_celery
    from tests.worker.helpers import make_ctx
    from worker import packs

    ctx = make_ctx(db_url, tmp_path, cache_dir, "w1", broker_dir=tmp_path / "broker")
    monkeypatch.setattr(packs, "app", make_celery(ctx.settings))  # its own broker folder
    return ctx


def _row(ctx, eid: str) -> Experiment:
    with ctx.sessions() as s:
        row = s.get(Experiment, eid)
        assert row is not None
        return row


def _steps(ctx, eid: str, key: str = "val_loss") -> list[int]:
    from service.db.models import Metric

    with ctx.sessions() as s:
        q = select(Metric.step).where(Metric.experiment_id == eid, Metric.key == key)
        return sorted(s.scalars(q))


def test_the_pack_task_trains_the_members_that_pack_and_sends_the_others_on(
    db_url, tmp_path, cache_dir, monkeypatch
):
    from tests.worker.helpers import add_experiment, tiny_spec
    from worker.packs import run_pack_job

    ctx = _pack_ctx(db_url, tmp_path, cache_dir, monkeypatch)
    sessions = ctx.sessions
    a = add_experiment(sessions, tiny_spec())
    b = add_experiment(sessions, {**tiny_spec(lr=0.05), "regularizers": []})
    sam = {**tiny_spec(), "regularizers": [{"name": "sam", "rho": 0.05}]}
    alone = add_experiment(sessions, parse_spec(sam).model_dump(mode="json"))
    gone = add_experiment(sessions, tiny_spec(), cancel_requested=True)
    said = run_pack_job([a, b, alone, gone], ctx)
    assert said == "succeeded, succeeded", said
    for eid in (a, b):
        row = _row(ctx, eid)
        assert row.status == "succeeded" and row.attempts == 1, row.error
        assert row.summary is not None and row.summary["epochs_run"] == 3
        assert _steps(ctx, eid) == [1, 2, 3]
    # the spec regcore cannot batch was sent on as a single run, untouched
    assert _row(ctx, alone).status == "queued" and _row(ctx, alone).enqueued_at is not None
    assert _messages(ctx.settings) == [(TASK_NAME, [alone])]
    # a member that could not be claimed (its cancel came first) was dropped from the pack
    assert _row(ctx, gone).status == "cancelled" and _steps(ctx, gone) == []


def test_a_member_that_diverges_fails_alone(db_url, tmp_path, cache_dir, monkeypatch):
    from tests.worker.helpers import add_experiment, diverging_spec
    from worker.packs import run_pack_job

    ctx = _pack_ctx(db_url, tmp_path, cache_dir, monkeypatch)
    bad = diverging_spec()
    good = {**bad, "name": "calm", "train": {**bad["train"], "lr": 0.01}}
    ids = [add_experiment(ctx.sessions, bad), add_experiment(ctx.sessions, good)]
    run_pack_job(ids, ctx)
    failed, ok = _row(ctx, ids[0]), _row(ctx, ids[1])
    assert failed.status == "failed" and failed.error, failed.error
    assert ok.status == "succeeded" and ok.summary is not None and ok.summary["epochs_run"] == 5
    assert _steps(ctx, ids[1]) == [1, 2, 3, 4, 5]
    assert len(_steps(ctx, ids[0])) < 5  # no epoch of NaNs recorded


# --- the memory cap (REGLAB_WORKER_MEMORY_BYTES): a pack's summed estimate must fit ----------


def wide(strength: float) -> dict[str, Any]:
    """A trial of ~17M parameters under adam: ~340 MB of weights, gradients and state each."""
    model = {"name": "mlp", "hidden": [4096, 4096]}
    return {**spec(strength=strength, optimizer="adam"), "model": model}


def test_a_packs_estimate_counts_the_base_and_the_data_once_and_each_members_own_parts():
    from regcore.memory_estimate import BASE_BYTES, estimate
    from service.sweeps.packing import pack_estimate

    one = estimate(parse_spec(wide(0.0)))
    own = one.parts["parameters"].bytes + one.parts["activations"].bytes
    assert pack_estimate([wide(0.0)]) == one.total
    assert pack_estimate([wide(i / 10) for i in range(4)]) == BASE_BYTES + (
        one.parts["data"].bytes + 4 * own
    )
    assert pack_estimate([wide(0.0), {"data": {"name": "nope"}}]) is None  # not estimable


def test_a_small_worker_memory_splits_a_sweep_into_smaller_packs_in_launch_order():
    from service.sweeps.packing import pack_estimate

    rows = [Row(f"e{i}", "cpu", wide(i / 100)) for i in range(10)]
    assert group(rows, None, memory_bytes=None) == [([r.id for r in rows], "cpu")]
    three = pack_estimate([r.spec for r in rows[:3]])
    assert three is not None and three < 2 * 10**9
    # room for three, not four: every pack holds three but the last (what did not fit)
    packs = group(rows, None, memory_bytes=three)
    assert packs == [(["e0", "e1", "e2"], "cpu"), (["e3", "e4", "e5"], "cpu"),
                     (["e6", "e7", "e8"], "cpu"), (["e9"], "cpu")]  # fmt: skip
    for ids, _ in packs:
        total = pack_estimate([wide(int(i[1:]) / 100) for i in ids])
        assert total is not None and total <= three
    # the size cap still applies beneath the memory cap
    assert [len(ids) for ids, _ in group(rows, 2, memory_bytes=three)] == [2, 2, 2, 2, 2]
    # a trial that does not fit even alone goes alone (admission refuses those at submit)
    assert group(rows[:3], None, memory_bytes=10**6) == [([f"e{i}"], "cpu") for i in range(3)]
    # small trials under the same cap stay one pack
    small = [Row(f"s{i}", "cpu", spec(strength=i / 100)) for i in range(16)]
    assert [len(ids) for ids, _ in group(small, None, memory_bytes=three)] == [16]


def test_the_cap_is_the_settings_worker_memory_by_default(monkeypatch):
    import service.settings
    from service.sweeps.packing import pack_estimate

    rows = [Row(f"e{i}", "cpu", wide(i / 100)) for i in range(4)]
    two = pack_estimate([r.spec for r in rows[:2]])
    capped = Settings(worker_memory_bytes=two)
    monkeypatch.setattr(service.settings, "get_settings", lambda: capped)
    assert group(rows, None) == [(["e0", "e1"], "cpu"), (["e2", "e3"], "cpu")]
    monkeypatch.setattr(service.settings, "get_settings", lambda: Settings())
    assert group(rows, None) == [(["e0", "e1", "e2", "e3"], "cpu")]


def test_the_worker_splits_a_message_whose_pack_would_not_fit_its_memory():
    from service.sweeps.packing import pack_estimate
    from worker.packs import regroup

    specs = [(f"e{i}", "cpu", parse_spec(wide(i / 100))) for i in range(5)]
    two = pack_estimate([s for _, _, s in specs[:2]])
    assert regroup(specs) == [([f"e{i}" for i in range(5)], "cpu")]
    assert regroup(specs, two) == [(["e0", "e1"], "cpu"), (["e2", "e3"], "cpu"), (["e4"], "cpu")]
