"""Seeding and RNG state, so that a run is repeatable and a resumed run continues the same draws."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    # legacy=False: the dict form, whose type numpy's stubs state exactly (the legacy tuple's
    # overload is shadowed there); "key" and "pos" are the same values the tuple holds
    mt = np.random.get_state(legacy=False)["state"]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(mt["key"].astype(np.int64)),
        "numpy_pos": int(mt["pos"]),
        "python": [list(random.getstate()[1]), random.getstate()[0]],
        "generators": {k: g.get_state() for k, g in generators.items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], 0, 0.0))
    internal, version = state["python"]
    random.setstate((version, tuple(internal), None))
    for k, g in generators.items():
        g.set_state(state["generators"][k])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
