"""Scenario 8 (issue 16): a memory bomb and a job killed by the OOM killer, beside normal jobs on
one worker. Only those two fail, at once (one attempt, not retried), each with its reason; the
worker process is never replaced and runs every other job.

Admission would refuse the bomb at submit (tests/reliability/test_admission.py): here the API
is told workers hold a petabyte, and the worker caps each job's address space at 3 GB
(``REGLAB_JOB_MEMORY_LIMIT_BYTES``, as ``prlimit --as`` did in the report), so the bomb runs
and meets the limit. The OOM killer is played by a hook that SIGKILLs one job's process."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.conftest import PrivateRedis, tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]


def bomb_spec() -> dict:
    spec = tiny_spec(name="bomb", epochs=2)
    spec["model"] = {"name": "mlp", "hidden": [7000, 7000]}
    spec["train"] = {**spec["train"], "optimizer": "adam", "batch_size": 1_000_000}
    spec["ensemble"] = {"members": 64}
    return spec


def test_a_memory_bomb_and_an_oom_kill_fail_alone_and_the_worker_runs_everything_else(
    stack_factory, new_postgres_database, private_redis: PrivateRedis, tmp_path: Path,
    figures: dict,
):  # fmt: skip
    stack = stack_factory(
        new_postgres_database(), private_redis.url,
        worker_memory_bytes=str(10**15), job_memory_limit_bytes=str(3 * 10**9),
    )  # fmt: skip
    api = stack.start_api()
    oom_file = tmp_path / "oom"
    oom_file.write_text("")
    worker = stack.start_worker(hooks={"REGLAB_FAULT_OOM_FILE": str(oom_file)})
    pid = worker.popen.pid
    normal = [api.submit(tiny_spec(seed=0, epochs=2, name="before"))["id"]]
    bomb = api.submit(bomb_spec())["id"]
    normal.append(api.submit(tiny_spec(seed=1, epochs=2, name="between"))["id"])
    killed = api.submit(tiny_spec(seed=2, epochs=6, name="oom-killed"))["id"]
    oom_file.write_text(killed)
    normal += [api.submit(tiny_spec(seed=s, epochs=2, name=f"after-{s}"))["id"] for s in (3, 4)]
    rows = stack.wait_terminal([*normal, bomb, killed], timeout=240)

    collateral = [i for i in normal if rows[i]["status"] != "succeeded"]
    figures.update(
        experiments=len(normal) + 2,
        normal=len(normal),
        normal_succeeded=len(normal) - len(collateral),
        collateral_failures=len(collateral),
        bomb_status=rows[bomb]["status"],
        bomb_attempts=rows[bomb]["attempts"],
        bomb_error=rows[bomb]["error"],
        oom_killed_status=rows[killed]["status"],
        oom_killed_attempts=rows[killed]["attempts"],
        oom_killed_error=rows[killed]["error"],
        worker_replaced=worker.popen.poll() is not None,
        lease_violations=len(stack.audit().violations()),
        lost=0,
    )
    assert not collateral, {i: rows[i]["error"] for i in collateral}
    assert rows[bomb]["status"] == "failed" and rows[bomb]["attempts"] == 1
    assert "memory" in rows[bomb]["error"].lower()
    assert rows[killed]["status"] == "failed" and rows[killed]["attempts"] == 1
    assert "killed by SIGKILL" in rows[killed]["error"]
    assert worker.popen.poll() is None and worker.popen.pid == pid
    assert "fault injection: SIGKILL of the job's process" in worker.output()
    assert figures["lease_violations"] == 0
