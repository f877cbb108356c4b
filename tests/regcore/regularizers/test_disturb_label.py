"""DisturbLabel: the replacement rule, the hook's counters, and the changed fraction α(K−1)/K."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizer_specs import DisturbLabelSpec
from regcore.regularizers.base import Step, TaskInfo
from regcore.regularizers.disturb_label import DisturbLabel, disturb_labels
from tests.regcore.runs import history, make_spec, train


def _task(k: int = 10) -> TaskInfo:
    return TaskInfo("classification", k, 3, None, 1, 1, torch.device("cpu"))


def _step(x: torch.Tensor, y: torch.Tensor) -> Step:
    return Step(torch.nn.Identity(), None, None, x, y, 0, 0)  # type: ignore[arg-type]


def test_labels_are_replaced_where_the_coin_falls_below_alpha():
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    gen = torch.Generator().manual_seed(3)
    coins = torch.rand(6, generator=gen)
    drawn = torch.randint(0, 7, (6,), generator=gen)
    expected = torch.where(coins < 0.5, drawn, y)
    out = disturb_labels(y, 7, 0.5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, expected)
    assert out.dtype == torch.long


def test_alpha_zero_keeps_every_label_and_alpha_one_draws_uniformly():
    y = torch.zeros(100_000, dtype=torch.long)
    assert torch.equal(disturb_labels(y, 5, 0.0), y)
    counts = torch.bincount(disturb_labels(y, 5, 1.0), minlength=5).float() / y.numel()
    torch.testing.assert_close(counts, torch.full((5,), 0.2), atol=0.01, rtol=0)


def test_distribution_rows_are_replaced_by_one_hot_rows():
    y = torch.full((1000, 4), 0.25)
    out = disturb_labels(y, 4, 0.5, generator=torch.Generator().manual_seed(0))
    replaced = (out != 0.25).any(1)
    assert 0.4 < replaced.float().mean() < 0.6
    assert torch.equal(out[replaced].sum(1), torch.ones(int(replaced.sum())))
    assert torch.equal(out[replaced].max(1).values, torch.ones(int(replaced.sum())))


def test_hook_draws_afresh_each_step_and_counts_changed_labels():
    reg = DisturbLabel(DisturbLabelSpec(alpha=0.5), _task())
    x, y = torch.zeros(200, 3), torch.arange(200) % 10
    _, y1 = reg.transform_batch(x, y, _step(x, y))
    _, y2 = reg.transform_batch(x, y, _step(x, y))
    assert not torch.equal(y1, y2)
    changed = int((y1 != y).sum() + (y2 != y).sum())
    assert reg.extra_metrics(torch.nn.Identity()) == {"disturb_label_changed": changed / 400}
    reg.on_epoch_end(1, {}, torch.nn.Identity())
    assert reg.extra_metrics(torch.nn.Identity()) == {}


def test_regression_datasets_are_refused():
    with pytest.raises(ValueError, match="classification"):
        DisturbLabel(
            DisturbLabelSpec(), TaskInfo("regression", 1, 1, None, 1, 1, torch.device("cpu"))
        )


def test_fraction_of_changed_labels_in_training_is_alpha_times_k_minus_1_over_k(
    tmp_path, cache_dir
):
    alpha, k = 0.3, 10
    spec = make_spec(
        train={"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 20, "device": "cpu"},
        regularizers=[{"name": "disturb_label", "alpha": alpha}],
    )
    train(spec, tmp_path, cache_dir)
    per_epoch = history(tmp_path)["disturb_label_changed"]
    assert len(per_epoch) == 20
    # 20 epochs × 500 labels: the standard error of the mean fraction is about 0.005
    assert sum(per_epoch) / len(per_epoch) == pytest.approx(alpha * (k - 1) / k, abs=0.015)
    assert len(set(per_epoch)) > 1  # fresh draws, not one fixed corruption
