"""fgsm_acc / pgd_acc: accuracy under attack on the test split; what adversarial training buys."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from regcore.data import Split
from regcore.measures.attack_accuracy import attack_accuracy
from tests.regcore.runs import history, make_spec, train


def test_attacks_flip_a_linear_classifier_exactly_where_the_margin_is_below_eps():
    model = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0], [-1.0]]))  # logit gap 2x: class 0 iff x > 0
    x = torch.tensor([[0.05], [0.3], [-0.08], [-0.5]])
    y = torch.tensor([0, 0, 1, 1])
    split = Split(x, y)
    # ε = 0.1 pushes every |x| < 0.1 across 0: two of four survive
    assert attack_accuracy(model, split, "classification", "fgsm", eps=0.1) == 0.5
    assert attack_accuracy(model, split, "classification", "pgd", eps=0.1, steps=4) == 0.5
    assert attack_accuracy(model, split, "classification", "fgsm", eps=0.0) == 1.0
    assert model.weight.grad is None
    assert attack_accuracy(model, split, "regression", "fgsm") is None


@pytest.mark.slow
def test_adversarial_training_shows_in_fgsm_acc_and_pgd_acc(tmp_path, cache_dir):
    def run(regs, where):
        spec = make_spec(
            data={"name": "mnist1d", "n_train": 1000, "n_val": 200, "n_test": 500},
            model={"name": "mlp", "hidden": [128]},
            train={
                "optimizer": "adam",
                "lr": 0.003,
                "batch_size": 50,
                "epochs": 20,
                "device": "cpu",
            },
            regularizers=regs,
            measure=["fgsm_acc", "pgd_acc"],
        )
        train(spec, tmp_path / where, cache_dir)
        h = history(tmp_path / where)
        return h["fgsm_acc"][-1], h["pgd_acc"][-1], h["test_acc"][-1]

    plain = run([], "plain")
    robust = run([{"name": "adversarial", "epsilon": 0.2}], "adv")
    # seed 0 (fgsm, pgd, clean): plain 0.218 0.194 0.432; adversarial ε=0.2 0.302 0.300 0.474
    assert robust[0] > plain[0] + 0.05
    assert robust[1] > plain[1]
    assert plain[1] <= plain[0] + 1e-9  # PGD is at least as strong as FGSM here
