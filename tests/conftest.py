"""Shared test settings: one torch thread (small models are far faster so on 2 cores)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """Generated datasets are cached here for the whole session (and across sessions)."""
    path = Path(__file__).resolve().parent.parent / ".cache" / "test-data"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def _one_thread():
    try:
        import torch
    except ImportError:  # the API tests run without torch
        yield
        return
    torch.set_num_threads(1)
    yield
