"""``reglab export ID --format torchscript|onnx``: the trained model of an experiment, as a file.

Downloads the checkpoint (best by default; its sha256 checked), rebuilds the model from the
experiment's spec with ``regcore.load_model`` (safetensors, no pickle) and writes it traced.
``--from FILE --spec SPEC.json`` exports a checkpoint already on disk, with no server.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

import typer

from reglab.common import ApiKey, ApiUrl, api, fail, read_json
from reglab.output import say


def export(
    experiment_id: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="experiment id or a unique prefix")
    ] = None,
    format: Annotated[
        Literal["torchscript", "onnx"], typer.Option("--format", "-f", help="torchscript or onnx")
    ] = "torchscript",
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", "-c", help="checkpoint id, prefix or kind")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="file to write")] = None,
    local: Annotated[
        Path | None, typer.Option("--from", help="a safetensors checkpoint on disk (no server)")
    ] = None,
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="the spec of --from's run (JSON)")
    ] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Export an experiment's trained model as TorchScript or ONNX; print the file's path."""
    suffix = ".pt" if format == "torchscript" else ".onnx"
    with tempfile.TemporaryDirectory(prefix="reglab-export-") as tmp:
        if local is not None:
            if spec_file is None:
                fail("--from needs --spec SPEC.json (the run's spec)", 2)
            spec, weights, name = read_json(spec_file), local, local.stem
        elif experiment_id is not None:
            from reglab.experiments_cli import pick_checkpoint

            with api(api_url, api_key) as client:
                eid = client.resolve_experiment(experiment_id)
                spec = client.get(eid)["spec"]
                ckpt = pick_checkpoint(client.checkpoints(eid), checkpoint)
                weights = client.download_checkpoint(eid, ckpt["id"], Path(tmp), ckpt["sha256"])
            name = f"{eid}-{ckpt.get('kind') or ckpt['id']}"
        else:
            fail("give an experiment ID, or --from CHECKPOINT --spec SPEC.json", 2)
        path = _export(spec, weights, out or Path(name + suffix), format)
    say(f"exported {format} to {path}")
    print(path)


def _export(spec: dict, weights: Path, out: Path, fmt: str) -> Path:
    from regcore.export import export_model
    from regcore.load import CheckpointMismatch, load_model
    from regcore.spec import DATASET_FEATURES, SpecError, parse_spec

    try:
        parsed = parse_spec(spec)
        model = load_model(parsed, weights)
    except SpecError as exc:
        fail(f"the spec is not valid: {exc}", 2)
    except (CheckpointMismatch, ValueError) as exc:
        fail(str(exc), 2)
    features = DATASET_FEATURES.get(parsed.data.name)
    if features is None:
        fail(f"data {parsed.data.name!r} does not fix the input shape; export it in Python", 2)
    try:
        return export_model(model, features, out, fmt)  # type: ignore[arg-type]
    except RuntimeError as exc:
        fail(f"{fmt} export failed: {exc}", 1)
