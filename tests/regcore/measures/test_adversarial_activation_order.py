"""activation_l1 penalizes the clean input's activations wherever adversarial is listed."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizers.activation_l1 import ActivationL1, activation_l1
from tests.regcore.runs import make_spec, trainer

L1 = {"name": "activation_l1", "strength": 0.01}
ADV = {"name": "adversarial", "method": "pgd", "epsilon": 0.5, "steps": 3}


@pytest.mark.parametrize("order", [[ADV, L1], [L1, ADV]], ids=["adv_first", "l1_first"])
def test_activation_l1_takes_the_clean_batch_in_both_orders(tmp_path, cache_dir, order):
    spec = make_spec(model={"name": "mlp", "hidden": [16, 8]}, regularizers=order)
    t = trainer(spec, tmp_path, cache_dir)
    (reg,) = [r for r in t.regs if isinstance(r, ActivationL1)]
    x, y = t.data.train.x[:20], t.data.train.y[:20]
    m = t.model.train()
    with torch.no_grad():
        h1 = torch.relu(m.body[0](x))
        h2 = torch.relu(m.body[3](h1))
    clean = float(activation_l1([h1, h2], 0.01))
    sums: dict[str, list[torch.Tensor]] = {}
    t.train_step(x, y, sums)
    assert float(sums["activation_l1"][0]) == pytest.approx(clean, rel=1e-5)
    # and on the next step too (no stale capture from the previous step's extra forwards)
    with torch.no_grad():
        h1 = torch.relu(m.body[0](x))
        h2 = torch.relu(m.body[3](h1))
    clean = float(activation_l1([h1, h2], 0.01))
    t.train_step(x, y, sums)
    assert float(sums["activation_l1"][1]) == pytest.approx(clean, rel=1e-5)
