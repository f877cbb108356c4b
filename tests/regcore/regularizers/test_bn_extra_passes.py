"""Extra forward passes (adversarial attacks, the Jacobian penalty) leave batch-norm running
statistics as a plain step on the clean batch leaves them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.regcore.runs import make_spec, trainer


def _running_stats(model: nn.Module) -> list[torch.Tensor]:
    return [
        t.detach().clone()
        for m in model.modules()
        if isinstance(m, nn.BatchNorm1d)
        for t in (m.running_mean, m.running_var)
    ]


@pytest.mark.parametrize(
    "reg",
    [
        {"name": "adversarial", "method": "fgsm", "epsilon": 0.5},
        {"name": "adversarial", "method": "pgd", "epsilon": 0.5, "steps": 3},
        {"name": "jacobian", "strength": 0.1, "estimator": "projection"},
    ],
    ids=["fgsm", "pgd", "jacobian"],
)
def test_one_step_moves_running_stats_as_a_plain_step_on_the_clean_batch(reg, tmp_path, cache_dir):
    model = {"name": "mlp", "hidden": [32, 32], "batch_norm": True}
    data = {"name": "mnist1d", "n_train": 100, "n_val": 50, "n_test": 50}
    with_reg = trainer(make_spec(model=model, data=data, regularizers=[reg]), tmp_path, cache_dir)
    plain = trainer(make_spec(model=model, data=data), tmp_path / "p", cache_dir)
    plain.model.load_state_dict(with_reg.model.state_dict())
    start = _running_stats(plain.model)
    x, y = plain.data.train.x[:50], plain.data.train.y[:50]
    for t in (with_reg, plain):
        t.model.train()
        t.train_step(x, y, {})
    after, expected = _running_stats(with_reg.model), _running_stats(plain.model)
    assert len(expected) == 4 and not torch.equal(start[0], expected[0])
    assert all(torch.equal(a, b) for a, b in zip(after, expected, strict=True))
