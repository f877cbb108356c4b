"""Label smoothing: both conventions, distributions as input, and calibration on a real run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from regcore.regularizer_specs import LabelSmoothingSpec
from regcore.regularizers.base import Step, TaskInfo
from regcore.regularizers.label_smoothing import LabelSmoothing, rho_to_epsilon, smooth_labels
from regcore.regularizers.mixup import mixup
from tests.regcore.runs import make_spec, train


def _task(k: int = 4, task: str = "classification") -> TaskInfo:
    return TaskInfo(task, k, 3, None, 1, 1, torch.device("cpu"))


def _step(x: torch.Tensor, y: torch.Tensor) -> Step:
    return Step(torch.nn.Identity(), None, None, x, y, 0, 0)  # type: ignore[arg-type]


def test_epsilon_spreads_epsilon_over_all_k_classes():
    out = smooth_labels(torch.tensor([2, 0]), 4, 0.2)
    expected = torch.tensor([[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]])
    torch.testing.assert_close(out, expected)


def test_rho_puts_one_minus_rho_on_the_true_class_and_rho_over_k_minus_1_elsewhere():
    reg = LabelSmoothing(LabelSmoothingSpec(rho=0.3), _task(k=4))
    x = torch.zeros(1, 3)
    _, y = reg.transform_batch(x, torch.tensor([1]), _step(x, torch.tensor([1])))
    torch.testing.assert_close(y, torch.tensor([[0.1, 0.7, 0.1, 0.1]]))
    assert rho_to_epsilon(0.3, 4) == pytest.approx(0.4)


def test_smoothed_cross_entropy_matches_torch_label_smoothing():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 1])
    ours = F.cross_entropy(logits, smooth_labels(y, 4, 0.1))
    torch.testing.assert_close(ours, F.cross_entropy(logits, y, label_smoothing=0.1))


def test_distributions_are_smoothed_as_they_are_so_mixup_order_does_not_matter():
    dist = torch.tensor([[0.6, 0.4, 0.0, 0.0]])
    torch.testing.assert_close(
        smooth_labels(dist, 4, 0.2), torch.tensor([[0.53, 0.37, 0.05, 0.05]])
    )
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    perm = torch.tensor([5, 4, 3, 2, 1, 0])
    _, mixed_then_smoothed = mixup(x, y, 0.7, perm, 4)
    mixed_then_smoothed = smooth_labels(mixed_then_smoothed, 4, 0.2)
    _, smoothed_then_mixed = mixup(x, smooth_labels(y, 4, 0.2), 0.7, perm)
    torch.testing.assert_close(mixed_then_smoothed, smoothed_then_mixed)


def test_regression_datasets_are_refused():
    with pytest.raises(ValueError, match="classification"):
        LabelSmoothing(LabelSmoothingSpec(), _task(k=1, task="regression"))


def test_label_smoothing_lowers_ece_and_confidence_of_an_overconfident_mlp(tmp_path, cache_dir):
    base = dict(
        model={"name": "mlp", "hidden": [128, 128]},
        train={"optimizer": "adam", "lr": 0.003, "batch_size": 50, "epochs": 40, "device": "cpu"},
    )
    plain = train(make_spec(**base), tmp_path / "plain", cache_dir).metrics
    smooth = train(
        make_spec(**base, regularizers=[{"name": "label_smoothing", "epsilon": 0.2}]),
        tmp_path / "smooth",
        cache_dir,
    ).metrics
    assert plain["ece"] > 0.3  # the baseline really is overconfident
    assert smooth["ece"] < 0.5 * plain["ece"]
    assert smooth["confidence"] < plain["confidence"] - 0.15
