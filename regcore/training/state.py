"""Nested training state (optimizer, scheduler, RNG, regularizers) split into tensors and JSON.

Checkpoints never use pickle: every tensor goes to a safetensors file under a generated key, and
the structure around it (dicts, lists, numbers, strings) goes to JSON with ``{"__tensor__": key}``
placeholders. Dicts with non-string keys (an optimizer's per-parameter state) are kept as lists
of pairs so that their keys survive JSON.
"""

from __future__ import annotations

from typing import Any

import torch


def flatten(obj: Any, tensors: dict[str, torch.Tensor], path: str = "s") -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: flatten(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        return {
            "__pairs__": [
                [k, flatten(v, tensors, f"{path}.{i}")] for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, (list, tuple)):
        items = [flatten(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else {"__tuple__": items}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {path}")


def unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__pairs__"}:
            return {k: unflatten(v, tensors) for k, v in obj["__pairs__"]}
        if set(obj) == {"__tuple__"}:
            return tuple(unflatten(v, tensors) for v in obj["__tuple__"])
        return {k: unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    return obj
