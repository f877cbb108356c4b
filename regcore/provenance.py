"""What ran: the versions, the machine, the spec and the data of one run (``environment``).

``environment(spec, ...)`` is the record written into ``summary.json`` and stored with a run by
the worker: reglab's version and git commit (when run from a checkout), the versions of Python,
torch, numpy, mnist1d and scikit-learn, the device with its name (and CUDA and cuDNN versions on
a GPU), the host, the worker id, torch's thread count, the spec hash, and the dataset with a
sha256.

The dataset's sha256: an uploaded file's own sha256 when the data builder recorded it
(``Dataset.extras["sha256"]``, ``sha256_of: "file"``); otherwise, for the built-in sets, the
sha256 of the arrays the run trained on (every split's inputs and targets, after the splits,
label noise and standardization), ``sha256_of: "arrays"``. ``arrays_sha256`` is always there,
so two runs on the same bytes can be told apart from two runs on the same file.

Pure: takes everything as arguments and reads no settings; torch is imported when called.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import socket
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

#: distributions whose versions decide a result; the data generators among them (mnist1d's
#: templates and transforms, scikit-learn's shipped sets and make_moons) are pinned in
#: pyproject.toml, and mnist1d's renderer is copied call for call in regcore/data/mnist1d_render.py
VERSIONED = {"torch": "torch", "numpy": "numpy", "mnist1d": "mnist1d", "scikit-learn": "sklearn"}

_ROOT = Path(__file__).resolve().parent.parent


def package_version(dist: str, module: str | None = None) -> str | None:
    """The imported module's ``__version__`` when it has one (what actually ran), else the
    installed distribution's version; None when neither is there. A module the run did not
    import is not imported for this (mnist1d pulls matplotlib, scikit-learn scipy: seconds)."""
    if module is not None:
        mod = sys.modules.get(module)
        found = getattr(mod, "__version__", None)
        if isinstance(found, str):
            return found
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def git_commit(root: Path = _ROOT) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the checkout regcore runs from; None for an installed copy
    (no ``.git`` beside the package) or without a ``git`` executable."""
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


@lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    """What does not change while a process lives."""
    versions = {name: package_version(name, module) for name, module in VERSIONED.items()}
    return {
        "reglab": package_version("reglab"),
        "git": git_commit(),
        "python": platform.python_version(),
        **versions,
        "platform": platform.platform(),
        "host": socket.gethostname(),
    }


def cpu_name() -> str:
    """The CPU model (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: Any) -> dict[str, Any]:
    """The device a run used: its name, and on CUDA the CUDA and cuDNN versions."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return {
            "device": str(dev),
            "device_name": torch.cuda.get_device_name(index),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    return {"device": str(dev), "device_name": cpu_name(), "cuda": None, "cudnn": None}


def arrays_sha256(data: Any) -> str:
    """sha256 of every split's inputs and targets, in order, each with its dtype and shape."""
    h = hashlib.sha256()
    for split in ("train", "val", "test"):
        for name in ("x", "y"):
            t = getattr(getattr(data, split), name).detach().cpu().contiguous()
            h.update(f"{split}.{name}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def dataset_info(data_spec: Any, data: Any | None) -> dict[str, Any]:
    """Which dataset, and a sha256 of what was trained on (see the module docstring)."""
    name = data_spec.name
    out: dict[str, Any] = {"name": name, "id": getattr(data_spec, "id", None) or name}
    if data is None:
        return out
    out["arrays_sha256"] = arrays_sha256(data)
    file_sha = data.extras.get("sha256") if isinstance(data.extras, dict) else None
    if file_sha:
        out.update(sha256=file_sha, sha256_of="file")
    else:
        out.update(sha256=out["arrays_sha256"], sha256_of="arrays")
    return out


def environment(
    spec: Any,
    *,
    device: Any | None = None,
    threads: int | None = None,
    data: Any | None = None,
    worker_id: str | None = None,
) -> dict[str, Any]:
    """The provenance record of a run of ``spec`` (an ``ExperimentSpec``). ``device``: the
    torch device it ran on (None: not known yet); ``threads``: torch's CPU threads (None: the
    current ``torch.get_num_threads()``); ``data``: the ``Dataset`` it trained on, for the
    sha256; ``worker_id``: the worker that ran it (None for a local run)."""
    import torch

    env: dict[str, Any] = dict(_static())
    env["git"] = dict(env["git"]) if env["git"] else None
    if device is not None:
        env.update(device_info(device))
    else:
        env.update(device=None, device_name=None, cuda=None, cudnn=None)
    env["threads"] = threads if threads is not None else torch.get_num_threads()
    env["worker_id"] = worker_id
    env["spec_hash"] = spec.spec_hash()
    env["dataset"] = dataset_info(spec.data, data)
    return env
