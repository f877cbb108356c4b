"""The writable artifact store and the reconciler (on SQLite and the filesystem broker)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

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
from worker.reconciler import PartFileSweeper, part_file_sweeper, reconcile_once


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


# --- leftover .part files ----------------------------------------------------------------------

_KILLED_UPLOAD = """
import os, sys
from pathlib import Path
from worker.artifacts import LocalStore
os.replace = lambda *a: os._exit(9)  # killed between the copy and the rename
LocalStore(sys.argv[1]).put(Path(sys.argv[2]), sys.argv[3])
"""


def _killed_upload(store_root, src, key) -> Path:
    """The ``.part`` file a real ``LocalStore.put`` leaves when its process dies mid-upload."""
    done = subprocess.run([sys.executable, "-c", _KILLED_UPLOAD, str(store_root), str(src), key])
    assert done.returncode == 9
    (part,) = (store_root / key).parent.glob("*.part")
    return part


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_the_reconciler_removes_part_files_of_killed_uploads_once_an_hour_old(env, tmp_path):
    sessions, celery, _ = env
    root = tmp_path / "store"
    src = tmp_path / "w.safetensors"
    src.write_bytes(b"weights")
    LocalStore(root).put(src, "e1/checkpoints/last-0001.safetensors")
    stale = _killed_upload(root, src, "e1/checkpoints/last-0002.safetensors")
    fresh = _killed_upload(root, src, "e2/checkpoints/last-0001.safetensors")
    _age(stale, 2 * 3600)
    _age(fresh, 10 * 60)  # an upload that may still be running: left alone
    others = [root / "e1" / "notes.part", root / "e1" / "checkpoints" / "last-0001.safetensors"]
    others[0].write_text("not ours")
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"keep")
    link = root / "e1" / f".x.{'a' * 32}.part"
    link.symlink_to(outside)
    for path in (*others, link, outside):
        _age(path, 2 * 3600)

    report = reconcile_once(sessions, celery, parts=PartFileSweeper(root, max_age_s=3600))

    assert report.removed_parts == [stale.relative_to(root).as_posix()]
    assert not stale.exists() and fresh.exists() and link.is_symlink() and outside.exists()
    assert all(p.exists() for p in others)
    _age(fresh, 2 * 3600)
    assert reconcile_once(sessions, celery, parts=PartFileSweeper(root, 3600)).removed_parts == [
        fresh.relative_to(root).as_posix()
    ]


def test_each_tick_looks_at_a_bounded_number_of_entries_and_the_walk_resumes(tmp_path):
    root = tmp_path / "store"
    parts = set()
    for i in range(30):
        folder = root / f"e{i:02d}" / "checkpoints"
        folder.mkdir(parents=True)
        (folder / f"last-{i:04d}.safetensors").write_bytes(b"w")
        part = folder / f".last-{i:04d}.safetensors.{i:032x}.part"
        part.write_bytes(b"half")
        _age(part, 7200)
        parts.add(part.relative_to(root).as_posix())
    entries = 30 * 4  # e<i>, checkpoints, the file and the part file
    sweeper = PartFileSweeper(root, max_age_s=3600, max_entries=25)
    seen: list[str] = []
    ticks = 0
    while set(seen) != parts:
        removed = sweeper.tick()
        assert len(removed) <= 25
        seen += removed
        ticks += 1
        assert ticks <= entries // 25 + 2, (
            "the walk must cover the store in a bounded number of ticks"
        )
    assert ticks >= entries // 25, "no tick may look at more than max_entries entries"
    assert len(seen) == len(parts)
    assert sweeper.tick() == [] and sweeper.tick() == []  # starts over; nothing left to remove


def test_a_store_without_a_folder_yet_or_on_s3_has_nothing_to_sweep(tmp_path, monkeypatch):
    assert PartFileSweeper(tmp_path / "missing").tick() == []
    assert part_file_sweeper("s3://bucket/prefix", 3600) is None
    monkeypatch.setenv("REGLAB_PARTIAL_FILE_SECONDS", "120")
    sweeper = part_file_sweeper(str(tmp_path), Settings().partial_file_seconds)
    assert sweeper is not None and sweeper.max_age_s == 120 and sweeper.root == tmp_path
    monkeypatch.delenv("REGLAB_PARTIAL_FILE_SECONDS")
    assert Settings().partial_file_seconds == 3600
