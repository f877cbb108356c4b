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


def _trained_run(tmp_path, cache_dir, measure, **overrides):
    spec = make_spec(
        data={"name": "mnist1d", "n_train": 500, "n_val": 100, "n_test": 300},
        model={"name": "mlp", "hidden": [64]},
        train={"optimizer": "adam", "lr": 0.003, "batch_size": 50, "epochs": 6, "device": "cpu"},
        measure=measure,
        **overrides,
    )
    result = train(spec, tmp_path, cache_dir)
    return spec, result


def test_a_larger_eps_gives_a_lower_accuracy_on_a_trained_model(tmp_path, cache_dir):
    measure = [
        {"name": "fgsm_acc", "eps": 0.02, "key": "fgsm_acc_small"},
        "fgsm_acc",  # the default ε 0.1
        {"name": "fgsm_acc", "eps": 0.4, "key": "fgsm_acc_large"},
        {"name": "pgd_acc", "eps": 0.02, "steps": 5, "key": "pgd_acc_small"},
        {"name": "pgd_acc", "eps": 0.4, "steps": 5, "key": "pgd_acc_large"},
    ]
    _trained_run(tmp_path, cache_dir, measure)
    h = history(tmp_path)
    assert len(h["fgsm_acc_small"]) == len(h["pgd_acc_large"]) == 6  # recorded every epoch
    m = {k: v[-1] for k, v in h.items()}
    assert m["test_acc"] > m["fgsm_acc_small"] > m["fgsm_acc"] > m["fgsm_acc_large"]
    assert m["pgd_acc_small"] > m["pgd_acc_large"]
    assert m["pgd_acc_large"] <= m["fgsm_acc_large"] + 1e-9  # PGD is the stronger attack


def test_pgd_steps_and_step_size_reach_the_attack():
    """One PGD step of size ε/2 inside a ball of ε is FGSM at ε/2, exactly."""
    from regcore.data import Dataset
    from regcore.measures.attack_accuracy import entry_accuracy
    from regcore.spec import AttackMeasureSpec

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=gen)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 2))
    split = Split(x, y)
    data = Dataset("toy", "classification", 2, split, split, split)

    def acc(**kw):
        return entry_accuracy(model, data, AttackMeasureSpec(**kw))

    one_step = acc(name="pgd_acc", eps=0.6, steps=1, step_size=0.3)
    assert one_step == acc(name="fgsm_acc", eps=0.3)
    assert one_step != acc(name="fgsm_acc", eps=0.6)  # the step size, not ε, set the move
    assert acc(name="pgd_acc", eps=0.6, steps=8) <= acc(name="pgd_acc", eps=0.6, steps=1)


def test_attack_measures_apply_to_the_combined_ensemble(tmp_path, cache_dir):
    from regcore.data import build_dataset
    from regcore.experiment import run

    measure = ["fgsm_acc", {"name": "fgsm_acc", "eps": 0.4, "key": "fgsm_acc_large"}]
    spec = make_spec(
        data={"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 200},
        model={"name": "mlp", "hidden": [32]},
        train={"optimizer": "adam", "lr": 0.003, "batch_size": 50, "epochs": 3, "device": "cpu"},
        ensemble={"members": 2},
        measure=measure,
    )
    result = run(spec, tmp_path, cache_dir=cache_dir, threads=1, checkpoint_every=0)
    m = result.metrics
    assert m["test_acc"] > m["fgsm_acc"] > m["fgsm_acc_large"]
    assert len(history(tmp_path)["fgsm_acc_large"]) == 3  # the ensemble's, every epoch
    ens = result.model  # type: ignore[attr-defined]
    ens.eval()
    test = build_dataset(spec.data, spec.seed, cache_dir).test
    assert m["fgsm_acc"] == attack_accuracy(ens, test, "classification", "fgsm", eps=0.1)
    one = attack_accuracy(ens.members[0], test, "classification", "fgsm", eps=0.1)
    assert m["fgsm_acc"] != one  # the combined model was attacked, not a member


def test_measure_entries_are_checked_naming_the_field():
    from regcore.spec import SpecError

    with pytest.raises(SpecError) as err:
        make_spec(measure=["pgd_acc", {"name": "pgd_acc", "eps": 0.3}])
    assert err.value.errors[0]["field"] == "measure[1].key"
    with pytest.raises(SpecError) as err:
        make_spec(measure=[{"name": "fgsm_acc", "steps": 3}])
    assert "applies to pgd_acc" in err.value.errors[0]["message"]
    with pytest.raises(SpecError) as err:
        make_spec(measure=[{"name": "pgd_acc", "eps": 0}])
    assert err.value.errors[0]["field"] == "measure[0].eps"
    spec = make_spec(measure=["fgsm_acc", "fgsm_acc", {"name": "pgd_acc", "key": "pgd_default"}])
    assert spec.measure[2].steps == 10  # type: ignore[union-attr]
