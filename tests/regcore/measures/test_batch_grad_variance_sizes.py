"""batch_grad_variance is positive above 256 and falls like 1/B (it read 0.0 for B > 256)."""

from __future__ import annotations

import pytest
import torch

from regcore.data import Split
from regcore.measures.batch_grad_variance import batch_grad_variance, batch_index
from regcore.models.mlp import LinearModel


def _problem(n: int = 3000):
    torch.manual_seed(0)
    x = torch.randn(n, 5)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]) + torch.randn(n)).reshape(-1, 1)
    return LinearModel(5, 1), Split(x, y)


def test_whole_batches_without_replacement_and_bounded():
    rows = batch_index(3000, 257)
    assert rows.shape == (8, 257)  # 8 whole batches, 2056 ≤ 3000 rows
    assert rows.unique().numel() == rows.numel()
    assert batch_index(3000, 10).shape == (51, 10)  # at least SUBSET = 512 examples
    assert batch_index(100, 60).shape == (1, 60)
    assert torch.equal(batch_index(3000, 257), rows)  # the measurement's own fixed seed


def test_batch_257_is_positive_and_values_shrink_like_one_over_b():
    model, split = _problem()
    v = {b: batch_grad_variance(model, split, "regression", b) for b in (32, 64, 128, 256, 257)}
    assert v[257] > 0.0
    assert v[257] == pytest.approx(v[256], rel=0.35)
    scaled = [v[b] * b for b in (32, 64, 128, 256)]  # ≈ the per-example variance, tr Σ
    assert max(scaled) / min(scaled) < 1.8
    assert v[32] > v[64] > v[128] > v[256]


def test_too_few_rows_for_two_batches_reads_zero():
    model, split = _problem(100)
    assert batch_grad_variance(model, split, "regression", 60) == 0.0
