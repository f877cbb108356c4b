"""docker-compose.yml describes a working production stack (no Docker engine here: we read it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def test_the_stack_has_postgres_redis_migrate_api_and_worker(services):
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(services)


def test_every_long_running_service_has_a_healthcheck(services):
    for name in ("postgres", "redis", "api", "worker"):
        check = services[name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
        assert check.get("interval") and check.get("retries")


def test_api_and_worker_start_after_healthy_databases_and_a_finished_migration(services):
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_migrate_is_a_one_shot_alembic_upgrade(services):
    migrate = services["migrate"]
    assert migrate["command"][:3] == ["alembic", "upgrade", "head"]
    assert migrate.get("restart", "no") == "no"


def test_api_and_worker_point_at_postgres_redis_and_the_shared_artifacts(services):
    for name in ("migrate", "api", "worker"):
        env = services[name]["environment"]
        assert env["REGLAB_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in env["REGLAB_DATABASE_URL"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["REGLAB_BROKER_URL"].startswith("redis://redis:6379")
        assert env["REGLAB_ARTIFACTS"]


def test_the_worker_reserves_an_nvidia_gpu(services):
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "gpu" in " ".join(services["worker"]["command"])


def test_checkpoints_live_on_a_named_volume_shared_by_worker_and_api(compose, services):
    def artifact_mount(name: str) -> str:
        mounts = [m for m in services[name]["volumes"] if ":/data/artifacts" in m]
        assert mounts, f"{name} does not mount the artifacts volume"
        return mounts[0]

    worker_mount, api_mount = artifact_mount("worker"), artifact_mount("api")
    volume = worker_mount.split(":")[0]
    assert volume in compose["volumes"]
    assert api_mount.split(":")[0] == volume
    pg_volume = services["postgres"]["volumes"][0].split(":")[0]
    assert pg_volume in compose["volumes"], "the database outlives its container"


def test_dockerfiles_and_env_example_exist_and_name_the_settings():
    for name in ("Dockerfile.api", "Dockerfile.worker"):
        text = (ROOT / name).read_text()
        assert text.startswith("#") and "FROM " in text
        assert "pip install" in text
    assert 'CMD ["reglab", "serve"' in (ROOT / "Dockerfile.api").read_text()
    assert "reglab" in (ROOT / "Dockerfile.worker").read_text()
    env = (ROOT / ".env.example").read_text()
    for key in ("REGLAB_DATABASE_URL", "REGLAB_BROKER_URL", "REGLAB_ARTIFACTS", "REGLAB_API_URL"):
        assert key in env


def test_compose_builds_use_files_that_exist(services):
    for name, svc in services.items():
        if "build" in svc:
            assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).exists(), name


def _healthcheck_code(service: dict) -> str:
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    return test[3]


def test_the_worker_healthcheck_reads_the_age_of_the_liveness_file_the_worker_touches(
    services, tmp_path
):
    """A solo-pool worker busy with a run cannot answer `celery inspect ping`; the worker's lease
    thread and idle timer touch REGLAB_WORKER_HEARTBEAT_FILE instead (tests/worker/test_lease)."""
    from service.settings import Settings

    worker = services["worker"]
    path = worker["environment"]["REGLAB_WORKER_HEARTBEAT_FILE"]
    assert Settings(worker_heartbeat_file=path).worker_heartbeat_file.as_posix() == path
    code = _healthcheck_code(worker)
    alive = tmp_path / "alive"
    env = {**os.environ, "REGLAB_WORKER_HEARTBEAT_FILE": str(alive)}

    def healthy() -> bool:
        return subprocess.run([sys.executable, "-c", code], env=env, timeout=30).returncode == 0

    assert not healthy(), "no file yet: the worker never started"
    alive.touch()
    assert healthy()
    old = time.time() - 61
    os.utime(alive, (old, old))
    assert not healthy(), "a file untouched for a minute means a hung worker"
    assert "inspect ping" not in " ".join(worker["healthcheck"]["test"])


def test_api_and_worker_leave_schema_upgrades_to_the_migrate_service(services):
    assert "--no-migrate" in services["api"]["command"]
    assert "--no-migrate" in services["worker"]["command"]
    cmd = next(
        line for line in (ROOT / "Dockerfile.worker").read_text().splitlines()
        if line.startswith("CMD ")
    )  # fmt: skip
    assert "--no-migrate" in cmd


def _resolved(value: str) -> str:
    """``${VAR:-default}`` as compose resolves it with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def _writable_dirs(dockerfile: str) -> set[str]:
    """Folders the image both creates (mkdir -p) and hands to its runtime USER (chown -R)."""
    text = (ROOT / dockerfile).read_text().replace("\\\n", " ")
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users, f"{dockerfile} runs as root"
    made: set[str] = set()
    owned: set[str] = set()
    for command in re.split(r"&&|;|\n", text):
        words = command.split()
        if words[:2] == ["mkdir", "-p"]:
            made.update(w for w in words[2:] if w.startswith("/"))
        if "chown" in words:
            rest = words[words.index("chown") + 1 :]
            flags = [w for w in rest if w.startswith("-")]
            owner, *paths = [w for w in rest if not w.startswith("-")]
            if "-R" in flags and owner.split(":")[0] == users[-1]:
                owned.update(paths)

    def under(path: str, roots: set[str]) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    return {d for d in made if under(d, owned)}


def test_every_path_the_services_write_is_created_and_owned_by_the_runtime_user(services):
    """The containers run as an unprivileged user: a folder setting outside what the image
    creates for it (e.g. the default ./var/scratch under root-owned /app) cannot be written."""
    # /tmp is world-writable (sticky) in every base image; only the liveness file lives there.
    world_writable = {"/tmp"}
    for name in ("migrate", "api", "worker"):
        svc = services[name]
        dirs = _writable_dirs(svc["build"]["dockerfile"])
        env = {k: _resolved(v) for k, v in svc["environment"].items() if k.startswith("REGLAB_")}
        paths = {k: v for k, v in env.items() if v.startswith("/")}
        assert {"REGLAB_CACHE_DIR", "REGLAB_SCRATCH_DIR", "REGLAB_ARTIFACTS"} <= set(paths)
        for key, path in paths.items():
            ok = any(path == d or path.startswith(d + "/") for d in dirs | world_writable)
            assert ok, f"{name}: {key}={path} is not under a folder the image gives its user"
        for volume in svc.get("volumes", []):
            target = volume.split(":")[1]
            assert any(target == d or target.startswith(d + "/") for d in dirs), (name, volume)


def test_the_api_runs_the_reconciler_and_its_healthcheck_needs_no_key(services):
    """Off loopback auth is on, and only /healthz answers without a key; the reconciler lives in
    `reglab serve`, so a plain uvicorn would leave dead workers' runs stuck."""
    api = services["api"]
    assert api["command"][:2] == ["reglab", "serve"] and "--no-worker" in api["command"]
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    assert not any(v.endswith(":ro") for v in api["volumes"]), "the reconciler cleans the store"


def test_the_api_image_installs_the_api_extra_and_no_torch():
    api = (ROOT / "Dockerfile.api").read_text()
    assert "'.[api" in api and "download.pytorch.org" not in api and "worker]" not in api
    assert "'.[worker" in (ROOT / "Dockerfile.worker").read_text()
