"""RegLab's core: specs, data, models, regularizers, training, ensembles and transfer.

Importing the package loads no torch (the API imports ``regcore.spec``); ``run_experiment`` loads
it when called.
"""

from __future__ import annotations

from typing import Any


def run_experiment(spec: Any, **kwargs: Any) -> Any:
    """Run any experiment a spec describes (``regcore.experiment.run``): a single model, an
    ensemble, a pretrain → fine-tune pipeline, ...; ``workdir=`` is required."""
    from regcore.experiment import run

    return run(spec, **kwargs)


def load_model(spec: Any, checkpoint: Any, **kwargs: Any) -> Any:
    """The trained model from a spec and a safetensors checkpoint (``regcore.load.load_model``)."""
    from regcore.load import load_model as load

    return load(spec, checkpoint, **kwargs)
