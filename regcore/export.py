"""A loaded model as a file other runtimes read: TorchScript (``torch.jit.trace``) or ONNX.

Both trace the model in eval mode on an example batch of the spec's input shape, so the exported
graph is the deterministic inference model (dropout off, batch norm on its running statistics).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn

Format = Literal["torchscript", "onnx"]


def example_input(in_features: int, batch: int = 2) -> torch.Tensor:
    return torch.zeros(batch, in_features)


def export_model(model: nn.Module, in_features: int, path: str | Path, fmt: Format) -> Path:
    """Write ``model`` to ``path`` as ``fmt``; the batch dimension stays dynamic in ONNX."""
    path = Path(path)
    model = model.eval()
    x = example_input(in_features)
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(model, x, check_trace=False)
        traced.save(str(path))
    elif fmt == "onnx":
        try:  # torch's exporter (torch.export based) writes the graph with onnxscript
            import onnxscript  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "ONNX export needs onnx and onnxscript: pip install 'reglab[export]'"
            ) from None
        torch.onnx.export(
            model,
            (x,),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            verbose=False,
        )
    else:
        raise ValueError(f"unknown export format {fmt!r}: torchscript or onnx")
    return path
