"""Which class implements which regularizer spec: one explicit table, read on one screen."""

from __future__ import annotations

from collections.abc import Sequence

from regcore import regularizer_specs as s
from regcore.regularizers.base import Regularizer, TaskInfo
from regcore.regularizers.dropconnect import DropConnect
from regcore.regularizers.dropout import Dropout
from regcore.regularizers.early_stopping import EarlyStopping
from regcore.regularizers.gaussian_dropout import GaussianDropout
from regcore.regularizers.l2 import L2Penalty

REGISTRY: dict[type[s.RegularizerSpec], type[Regularizer]] = {
    s.L2Spec: L2Penalty,
    s.DropoutSpec: Dropout,
    s.GaussianDropoutSpec: GaussianDropout,
    s.DropConnectSpec: DropConnect,
    s.EarlyStoppingSpec: EarlyStopping,
}


def build_regularizers(specs: Sequence[s.RegularizerSpec], task: TaskInfo) -> list[Regularizer]:
    missing = [type(sp).__name__ for sp in specs if type(sp) not in REGISTRY]
    if missing:
        raise NotImplementedError(f"no implementation registered for {', '.join(missing)}")
    return [REGISTRY[type(sp)](sp, task) for sp in specs]
