"""The writable artifact store and the reconciler (on SQLite and the filesystem broker)."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from service.artifacts import ArtifactKeyError
from service.db import jobs
from service.db.migrate import upgrade_to_head
from service.db.models import Experiment, utcnow
from service.db.session import make_engine, make_sessionmaker
from service.queue import make_celery
from service.settings import Settings
from tests.worker.helpers import add_experiment
from worker.artifacts import LocalStore, S3Store, open_store
from worker.reconciler import reconcile_once


def test_local_store_round_trips_a_file_and_leaves_no_temporary_names(tmp_path):
    store = LocalStore(tmp_path / "store")
    src = tmp_path / "w.bin"
    src.write_bytes(b"weights")
    store.put(src, "abc/checkpoints/last-0001.safetensors")
    assert store.exists("abc/checkpoints/last-0001.safetensors")
    store.get("abc/checkpoints/last-0001.safetensors", tmp_path / "out" / "w.bin")
    assert (tmp_path / "out" / "w.bin").read_bytes() == b"weights"
    files = [p.name for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert files == ["last-0001.safetensors"]
    store.delete("abc/checkpoints/last-0001.safetensors")
    assert not store.exists("abc/checkpoints/last-0001.safetensors")


@pytest.mark.parametrize("key", ["../escape", "/abs/path", "a/../../b", ""])
def test_keys_that_could_escape_the_store_are_refused(tmp_path, key):
    store = LocalStore(tmp_path)
    src = tmp_path / "f"
    src.write_bytes(b"x")
    with pytest.raises(ArtifactKeyError):
        store.put(src, key)


class FakeS3:
    def __init__(self):
        self.objects: dict[tuple[str, str], bytes] = {}

    def upload_file(self, filename, bucket, key):
        self.objects[bucket, key] = open(filename, "rb").read()

    def download_file(self, bucket, key, filename):
        open(filename, "wb").write(self.objects[bucket, key])

    def get_object(self, Bucket, Key):  # noqa: N803 - boto3's names
        return {"Body": io.BytesIO(self.objects[Bucket, Key])}

    def head_object(self, Bucket, Key):  # noqa: N803
        if (Bucket, Key) not in self.objects:
            err = Exception("not found")
            err.response = {"Error": {"Code": "404"}}
            raise err

    def delete_object(self, Bucket, Key):  # noqa: N803
        self.objects.pop((Bucket, Key), None)


def test_s3_store_puts_objects_under_its_prefix(tmp_path):
    fake = FakeS3()
    store = S3Store("bucket", "runs/prod/", client=fake)
    src = tmp_path / "w"
    src.write_bytes(b"abc")
    store.put(src, "e1/checkpoints/last-0002.safetensors")
    assert ("bucket", "runs/prod/e1/checkpoints/last-0002.safetensors") in fake.objects
    assert store.exists("e1/checkpoints/last-0002.safetensors")
    assert not store.exists("e1/missing")
    store.get("e1/checkpoints/last-0002.safetensors", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"abc"
    assert store.open("e1/checkpoints/last-0002.safetensors").read() == b"abc"
    with pytest.raises(ArtifactKeyError):
        store.put(src, "../x")


def test_open_store_picks_s3_for_s3_urls_and_a_folder_otherwise(tmp_path):
    s3 = open_store("s3://bucket/some/prefix")
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    with pytest.raises(ValueError, match="names no bucket"):
        open_store("s3:///prefix")


@pytest.fixture
def env(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade_to_head(url)
    engine = make_engine(url)
    settings = Settings(database_url=url, broker_dir=tmp_path / "broker")
    yield make_sessionmaker(engine), make_celery(settings), tmp_path / "broker" / "queue"
    engine.dispose()


def test_the_reconciler_requeues_dead_runs_and_sends_unsent_rows_once(env):
    sessions, celery, queue_dir = env
    dead = add_experiment(sessions)
    unsent = add_experiment(sessions)
    sent = add_experiment(sessions, enqueued_at=utcnow())
    with sessions.begin() as s:
        jobs.claim(s, dead, "w1", 30)
        s.get(Experiment, dead).lease_expires_at = utcnow() - timedelta(seconds=1)

    report = reconcile_once(sessions, celery)
    assert report.requeued == [dead]
    assert set(report.enqueued) == {dead, unsent}
    assert len(list(queue_dir.iterdir())) == 2, "one message per row, on the filesystem broker"
    with sessions() as s:
        assert s.get(Experiment, dead).status == "queued"
        assert s.get(Experiment, unsent).enqueued_at is not None
        assert s.get(Experiment, sent).enqueued_at is not None

    again = reconcile_once(sessions, celery)
    assert again.requeued == [] and again.enqueued == []
    assert len(list(queue_dir.iterdir())) == 2
