"""Only safetensors is ever read: a pickled ``.pt`` that would run code is refused everywhere
(the API's download, regcore's ``load_checkpoint``, the worker's resume path), and a header that
claims a huge length is refused at once."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import struct
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from regcore.safetensors_check import InvalidSafetensors, validate_safetensors
from service.db.models import Checkpoint
from tests.security.conftest import bearer, safetensors_bytes, spec

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


class _WritesMarker:
    """Unpickling this calls ``exec``, which writes the marker file: the classic pickle RCE."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps({"weight": _WritesMarker(marker)})


def torch_payload(marker: Path, tmp_path: Path) -> bytes:
    import torch

    path = tmp_path / "evil.pt"
    torch.save({"weight": _WritesMarker(marker)}, path)
    return path.read_bytes()


def test_the_payloads_are_armed(tmp_path):
    """Control: unpickling the payload really writes the marker (so its absence means refusal)."""
    marker = tmp_path / "control-marker"
    pickle.loads(pickle_payload(marker))
    assert marker.read_text() == "pwned"


def huge_header() -> bytes:
    return (
        struct.pack("<Q", 2**62) + b'{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}'
    )


def _store_checkpoint(client, sessions, token: str, name: str, payload: bytes) -> str:
    eid = client.post("/v1/experiments", json=spec(), headers=bearer(token)).json()["id"]
    key = f"{eid}/checkpoints/{name}"
    path = Path(client.app.state.settings.artifacts) / key
    path.parent.mkdir(parents=True)
    path.write_bytes(payload)
    with sessions.begin() as s:
        s.add(
            Checkpoint(
                id="c" * 32, experiment_id=eid, kind="last", epoch=1, uri=key,
                size=len(payload), sha256=hashlib.sha256(payload).hexdigest(),
            )
        )  # fmt: skip
    return eid


@pytest.mark.parametrize("name", ["last.pt", "last.safetensors", "last.bin", "last.pkl"])
@pytest.mark.parametrize("kind", ["pickle", "torch"])
def test_a_pickled_checkpoint_in_the_store_is_refused_by_the_api(
    client, keys, sessions, tmp_path, name, kind
):
    marker = tmp_path / "marker"
    payload = pickle_payload(marker) if kind == "pickle" else torch_payload(marker, tmp_path)
    eid = _store_checkpoint(client, sessions, keys["ada"], name, payload)
    r = client.get(
        f"/v1/experiments/{eid}/checkpoints/{'c' * 32}/file", headers=bearer(keys["ada"])
    )
    assert r.status_code == 409, r.text
    assert r.json()["title"] == "invalid checkpoint"
    assert payload not in r.content
    assert not marker.exists()


def test_a_safetensors_header_claiming_a_huge_length_is_refused_quickly(client, keys, sessions):
    eid = _store_checkpoint(client, sessions, keys["ada"], "last.safetensors", huge_header())
    start = time.perf_counter()
    r = client.get(
        f"/v1/experiments/{eid}/checkpoints/{'c' * 32}/file", headers=bearer(keys["ada"])
    )
    assert r.status_code == 409
    assert time.perf_counter() - start < 1.0


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "x.safetensors"
    path.write_bytes(data)
    return path


def _st(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"\x05\x00\x00", "too short"),
        (huge_header(), "more than"),
        (struct.pack("<Q", 1000) + b"{}", "the file has"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (struct.pack("<Q", 4) + b"\xff\xfe{}", "not a JSON object"),
        (_st({"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 8]}}, b"x" * 8), "disagree"),
        (_st({"w": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}}, b"x" * 4), "outside"),
        (_st({"w": {"dtype": "XX", "shape": [1], "data_offsets": [0, 1]}}, b"x"), "dtype"),
        (_st({"w": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 1]}}, b"x"), "shape"),
        (
            _st(
                {
                    "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                    "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]},
                },
                b"x" * 6,
            ),
            "overlap",
        ),
        (_st({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}, b"xy"), "after"),
        (_st({"__metadata__": {"a": 1}}, b""), "metadata"),
    ],
)
def test_validate_safetensors_refuses_malformed_files(tmp_path, data, message):
    with pytest.raises(InvalidSafetensors, match=message):
        validate_safetensors(_write(tmp_path, data))


def test_validate_safetensors_refuses_pickles_and_non_files(tmp_path):
    marker = tmp_path / "marker"
    for payload in (pickle_payload(marker), torch_payload(marker, tmp_path)):
        with pytest.raises(InvalidSafetensors):
            validate_safetensors(_write(tmp_path, payload))
    with pytest.raises(InvalidSafetensors, match="regular file"):
        validate_safetensors("/dev/zero")
    with pytest.raises(InvalidSafetensors):
        validate_safetensors(tmp_path / "missing.safetensors")
    assert not marker.exists()


def test_validate_safetensors_accepts_what_safetensors_writes(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "real.safetensors"
    save_file({"a": torch.ones(3, 5), "b": torch.arange(7), "c": torch.zeros(0)}, str(path))
    header = validate_safetensors(path)
    assert set(header) == {"a", "b", "c"}
    validate_safetensors(_write(tmp_path, safetensors_bytes(1000)))


def _saved_checkpoint(directory: Path):
    import torch

    from regcore.training.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(directory, "last", 3, {"w": torch.ones(2, 2)}, {"step": 7}, {"loss": 0.5}, "h")
    assert load_checkpoint(directory, "last") is not None  # the untampered one loads
    return load_checkpoint


def _tamper(directory: Path, file: str, payload: bytes) -> None:
    """Replace a checkpoint file and fix up the sidecar's digest, as an attacker with write
    access to the store would (the digest alone proves integrity, not safety)."""
    (directory / file).write_bytes(payload)
    sidecar = directory / "last.json"
    side = json.loads(sidecar.read_text())
    field = "weights_sha256" if file == "last.safetensors" else "state_sha256"
    side[field] = hashlib.sha256(payload).hexdigest()
    sidecar.write_text(json.dumps(side))


@pytest.mark.parametrize("file", ["last.safetensors", "last.state.safetensors"])
@pytest.mark.parametrize("kind", ["pickle", "torch", "huge-header"])
def test_regcore_load_checkpoint_refuses_a_pickle_or_huge_header(tmp_path, file, kind):
    directory = tmp_path / "checkpoints"
    load_checkpoint = _saved_checkpoint(directory)
    marker = tmp_path / "marker"
    payload = {
        "pickle": lambda: pickle_payload(marker),
        "torch": lambda: torch_payload(marker, tmp_path),
        "huge-header": huge_header,
    }[kind]()
    _tamper(directory, file, payload)
    start = time.perf_counter()
    assert load_checkpoint(directory, "last") is None
    assert time.perf_counter() - start < 1.0
    assert not marker.exists()


def test_the_worker_resume_path_refuses_a_pickled_checkpoint(tmp_path):
    """What ``worker.tasks.run_job`` does on a retry: fetch the recorded ``last`` checkpoint from
    the store into the scratch folder, then regcore resumes from it."""
    from worker.artifacts import LocalStore
    from worker.tasks import _fetch_last_checkpoint

    source = tmp_path / "made"
    load_checkpoint = _saved_checkpoint(source)
    marker = tmp_path / "marker"
    _tamper(source, "last.safetensors", torch_payload(marker, tmp_path))
    store = LocalStore(tmp_path / "store")
    keys = []
    for name in ("last.safetensors", "last.state.safetensors", "last.json"):
        key = f"e1/checkpoints/{name.replace('last', 'last-0003')}"
        store.put(source / name, key)
        keys.append(key)
    scratch = tmp_path / "scratch" / "checkpoints"
    _fetch_last_checkpoint(SimpleNamespace(store=store), scratch, tuple(keys))
    assert (scratch / "last.safetensors").read_bytes() == (source / "last.safetensors").read_bytes()
    assert load_checkpoint(scratch, "last") is None
    assert not marker.exists()


UNSAFE_LOADERS = re.compile(
    r"torch\.load\(|torch\.jit\.load|pickle\.loads?\(|weights_only\s*=\s*False|import dill|"
    r"joblib\.load|numpy\.load\(.*allow_pickle\s*=\s*True|np\.load\(.*allow_pickle\s*=\s*True"
)


def test_no_code_path_falls_back_to_unsafe_loading():
    hits = []
    for package in ("regcore", "service", "worker", "reglab"):
        for path in (ROOT / package).rglob("*.py"):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if UNSAFE_LOADERS.search(line):
                    hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert hits == []
