"""reglab ls, show, cancel, metrics, checkpoints, download and compare against the real app."""

from __future__ import annotations

import json
import uuid

import pytest

from reglab import __version__
from tests.cli.conftest import safetensors_bytes, tiny_spec

pytestmark = pytest.mark.timeout(120)


def _tsv(output: str) -> list[list[str]]:
    return [line.split("\t") for line in output.splitlines() if "\t" in line]


def test_version(reglab):
    result = reglab("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"reglab {__version__}"


def test_ls_lists_full_ids_names_and_headline_metrics(reglab, lab, finish):
    a = lab.submit(tiny_spec(name="alpha"))["id"]
    b = lab.submit(tiny_spec(name="beta"))["id"]
    finish(a, {"test_acc": 0.8125, "test_loss": 0.5})
    result = reglab("ls")
    assert result.exit_code == 0, result.output
    header, *rows = _tsv(result.stdout)
    assert header[:4] == ["id", "name", "status", "created"] and "test_acc" in header
    by_id = {r[0]: r for r in rows}
    assert set(by_id) == {a, b}  # full 32-character ids, nothing cut
    assert by_id[a][1:3] == ["alpha", "succeeded"]
    assert by_id[a][header.index("test_acc")] == "0.8125"
    assert by_id[b][header.index("test_acc")] == "—"


def test_ls_filter_sort_and_json(reglab, lab, finish):
    ids = [lab.submit(tiny_spec(name=f"run{i}"))["id"] for i in range(3)]
    finish(ids[0])
    finish(ids[2])
    result = reglab("ls", "-f", "status=succeeded", "-s", "-name", "-o", "json")
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    assert [e["id"] for e in items] == [ids[2], ids[0]]
    newest = json.loads(reglab("ls", "--limit", "1", "-o", "json").stdout)["items"]
    assert [e["id"] for e in newest] == [ids[2]]
    bad = reglab("ls", "-f", "test_acc>>1")
    assert bad.exit_code == 2 and "filter" in bad.output


def test_show_and_cancel_take_a_unique_prefix(reglab, lab):
    eid = lab.submit(tiny_spec(name="prefixed"))["id"]
    shown = reglab("show", eid[:6])
    assert shown.exit_code == 0, shown.output
    fields = dict(r[:2] for r in _tsv(shown.stdout))
    assert fields["id"] == eid and fields["name"] == "prefixed" and fields["status"] == "queued"
    assert json.loads(fields["spec"])["model"]["hidden"] == [16]
    assert json.loads(reglab("show", eid, "-o", "json").stdout)["id"] == eid
    cancelled = reglab("cancel", eid[:5])
    assert cancelled.exit_code == 0 and cancelled.stdout.strip() == "cancelled"
    assert lab.get(eid)["status"] == "cancelled"


def test_an_ambiguous_or_unknown_prefix_is_a_clear_error(reglab, lab, monkeypatch):
    real = uuid.uuid4
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID("abcd" + real().hex[4:]))
    a, b = (lab.submit(tiny_spec())["id"] for _ in range(2))
    monkeypatch.setattr(uuid, "uuid4", real)
    assert a.startswith("abcd") and b.startswith("abcd")
    result = reglab("show", "abc")
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "ambiguous" in message and a in message and b in message
    longer = reglab("show", a[:8])
    assert longer.exit_code == 0 and a in longer.stdout
    missing = reglab("cancel", "ffff0")
    assert missing.exit_code == 1 and "no experiment id starts with 'ffff0'" in missing.output


def test_metrics_prints_a_step_table_per_key(reglab, lab, finish):
    eid = lab.submit(tiny_spec())["id"]
    finish(eid, series={"train_loss": [0.9, 0.5, 0.25], "val_loss": [1.0, 0.75, 0.625]})
    result = reglab("metrics", eid[:10], "train_loss", "val_loss")
    assert result.exit_code == 0, result.output
    assert _tsv(result.stdout) == [
        ["step", "train_loss", "val_loss"],
        ["1", "0.9", "1"],
        ["2", "0.5", "0.75"],
        ["3", "0.25", "0.625"],
    ]
    only = json.loads(reglab("metrics", eid, "val_loss", "-o", "json").stdout)["series"]
    assert list(only) == ["val_loss"] and [p["value"] for p in only["val_loss"]] == [1, 0.75, 0.625]


def test_checkpoints_and_download_verify_and_write_the_file(reglab, lab, finish, tmp_path):
    eid = lab.submit(tiny_spec())["id"]
    payload = safetensors_bytes()
    cid = finish(eid, checkpoint=payload)
    listed = reglab("checkpoints", eid[:7])
    assert listed.exit_code == 0, listed.output
    header, row = _tsv(listed.stdout)
    assert row[header.index("id")] == cid and row[header.index("kind")] == "best"
    assert len(row[header.index("sha256")]) == 64  # never cut
    target = tmp_path / "weights.safetensors"
    got = reglab("download", eid[:7], "-o", target)
    assert got.exit_code == 0, got.output
    assert got.stdout.strip() == str(target) and target.read_bytes() == payload
    by_cid = reglab("download", eid, cid[:6], "-o", tmp_path)
    assert by_cid.exit_code == 0, by_cid.output
    assert (tmp_path / f"{eid}-{cid}.safetensors").read_bytes() == payload
    none = reglab("download", eid, "0000", "-o", tmp_path / "x.safetensors")
    assert none.exit_code == 1 and "matches 0 checkpoint" in none.output


def test_compare_accepts_prefixes_and_prints_whole_ids(reglab, lab, finish):
    a = lab.submit(tiny_spec(name="left"))["id"]
    b = lab.submit(tiny_spec(name="right"))["id"]
    finish(a, {"test_acc": 0.75})
    finish(b, {"test_acc": 0.5})
    result = reglab("compare", a[:6], b[:6])
    assert result.exit_code == 0, result.output
    rows = _tsv(result.stdout)
    assert rows[0][1:] == [f"left {a}", f"right {b}"]
    assert ["test_acc", "0.75", "0.5"] in rows


def test_boolean_options_are_plain_flags(reglab, lab, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(tiny_spec()))
    result = reglab("submit", spec, "--wait", "true")
    assert result.exit_code != 0  # --wait takes no value: 'true' is an extra argument
    result = reglab("submit", spec, "--wait", "--timeout", "0.2", "--poll", "0.05")
    assert result.exit_code == 1 and "still queued" in result.output


def test_a_server_error_body_of_either_shape_is_printed_with_its_fields(reglab, tmp_path):
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps(tiny_spec(regularizers=[{"name": "dropout", "p": 2}])))
    result = reglab("submit", spec)
    assert result.exit_code == 2
    assert "regularizers[0].p" in result.output
