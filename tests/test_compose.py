"""docker-compose.yml describes a working production stack (no Docker engine here: we read it)."""

from __future__ import annotations

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


def test_the_worker_healthcheck_pings_the_node_name_the_worker_runs_under(services):
    worker = services["worker"]
    command = worker["command"]
    node = command[command.index("--name") + 1]
    assert node.endswith("@%h")
    assert f"{node.split('@')[0]}@$$HOSTNAME" in worker["healthcheck"]["test"][1]


def test_the_api_runs_the_reconciler_and_its_healthcheck_needs_no_key(services):
    """Off loopback auth is on, and only /healthz answers without a key; the reconciler lives in
    `reglab serve`, so a plain uvicorn would leave dead workers' runs stuck."""
    api = services["api"]
    assert api["command"][:2] == ["reglab", "serve"] and "--no-worker" in api["command"]
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    assert not any(v.endswith(":ro") for v in api["volumes"]), "the reconciler cleans the store"
