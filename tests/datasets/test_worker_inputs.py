"""worker.datasets.prepare_inputs: the owner is checked again, files are verified and cached."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from regcore.data import build_dataset
from regcore.data.references import cached_checkpoint, reference_file
from regcore.data.upload import cached_path
from regcore.spec import parse_spec
from service.datasets.ingest import ingest
from service.db.migrate import upgrade_to_head
from service.db.models import Checkpoint, Experiment
from service.db.session import make_engine, make_sessionmaker
from tests.datasets import files as F
from worker.artifacts import LocalStore
from worker.datasets import prepare_inputs

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def ctx(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade_to_head(url)
    engine = make_engine(url)
    yield SimpleNamespace(
        settings=SimpleNamespace(cache_dir=tmp_path / "cache"),
        sessions=make_sessionmaker(engine),
        store=LocalStore(tmp_path / "store"),
    )
    engine.dispose()


def experiment(ctx, owner: str, spec: dict) -> str:
    with ctx.sessions.begin() as s:
        row = Experiment(name="e", owner=owner, spec=spec, spec_hash="0" * 64)
        s.add(row)
        s.flush()
        return row.id


def test_an_upload_is_fetched_verified_and_cached_for_its_owner_only(ctx):
    x, y = F.table(n=200)
    with ctx.sessions() as s:
        ds = ingest(s, ctx.store, "ada", F.npz(x=x, y=y), filename="t.npz", name=None,
                    task="classification", target=None, kind=None, max_bytes=10**7)  # fmt: skip
        ds_id, sha = ds.id, ds.sha256
    raw = {"data": {"name": "upload", "id": ds_id}, "model": {"name": "mlp"}}
    spec = parse_spec(raw)
    mallory = experiment(ctx, "mallory", raw)
    reason = prepare_inputs(ctx, mallory, spec)
    assert reason is not None and reason.startswith("data.id: no dataset")
    assert not cached_path(ctx.settings.cache_dir, ds_id).exists()

    assert prepare_inputs(ctx, experiment(ctx, "ada", raw), spec) is None
    cached = cached_path(ctx.settings.cache_dir, ds_id)
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    data = build_dataset(spec.data, seed=0, cache_dir=ctx.settings.cache_dir)
    assert (len(data.train), len(data.val), len(data.test)) == (128, 32, 40)
    assert data.extras["sha256"] == sha

    # a stored file that no longer matches its recorded hash is refused (and not cached)
    cached.unlink()
    ctx.store.path(f"datasets/{ds_id}.npz").write_bytes(b"tampered")
    reason = prepare_inputs(ctx, experiment(ctx, "ada", raw), spec)
    assert reason == "data.id: the stored file does not match its recorded SHA-256"
    assert not cached.exists()


def test_a_tie_reference_is_the_owners_checkpoint_fetched_by_id(ctx, tmp_path):
    weights = tmp_path / "w.safetensors"
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"out.weight": np.ones((2, 2), dtype=np.float32)}, str(weights))
    ctx.store.put(weights, "e/checkpoints/best.safetensors")
    owner_exp = experiment(ctx, "ada", {})
    with ctx.sessions.begin() as s:
        ck = Checkpoint(experiment_id=owner_exp, kind="best", epoch=1,
                        uri="e/checkpoints/best.safetensors", size=weights.stat().st_size,
                        sha256=hashlib.sha256(weights.read_bytes()).hexdigest())  # fmt: skip
        s.add(ck)
        s.flush()
        ck_id = ck.id
    raw = {"data": {"name": "mnist1d"}, "model": {"name": "linear"},
           "regularizers": [{"name": "tie", "reference": ck_id}]}  # fmt: skip
    spec = parse_spec(raw)
    reason = prepare_inputs(ctx, experiment(ctx, "bob", raw), spec)
    assert reason is not None and "no checkpoint" in reason and "regularizers[0]" in reason
    with pytest.raises(FileNotFoundError) as err:
        reference_file(ck_id, ctx.settings.cache_dir)
    assert str(tmp_path) not in str(err.value)
    assert prepare_inputs(ctx, experiment(ctx, "ada", raw), spec) is None
    assert reference_file(ck_id, ctx.settings.cache_dir) == cached_checkpoint(
        ctx.settings.cache_dir, ck_id
    )
