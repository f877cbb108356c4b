"""dropblock: seed rate, block mask, rescaling, runs of block_size, deterministic eval."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizers.dropblock import DropBlock1d, block_mask, dropblock, seed_rate
from tests.regcore.runs import make_spec, train, trainer

CNN = {"name": "cnn1d", "channels": [8, 8], "hidden": [32]}


def test_seed_rate_follows_ghiasi_eq_1():
    assert seed_rate(0.1, 5, 40) == pytest.approx(0.1 / 5 * 40 / 36)


def test_block_mask_zeroes_block_size_positions_from_each_seed():
    seeds = torch.zeros(1, 1, 8)  # length 10, block 3 → 8 possible starts
    seeds[0, 0, 2] = 1
    seeds[0, 0, 7] = 1
    mask = block_mask(seeds, 3)
    assert mask[0, 0].tolist() == [1, 1, 0, 0, 0, 1, 1, 0, 0, 0]


def test_dropblock_rescales_by_the_kept_fraction():
    x = torch.ones(1, 1, 4)
    mask = torch.tensor([[[1.0, 0.0, 0.0, 1.0]]])
    assert torch.equal(dropblock(x, mask), torch.tensor([[[2.0, 0.0, 0.0, 2.0]]]))


def _runs(row: list[float]) -> list[int]:
    runs, n = [], 0
    for v in row + [1.0]:
        if v == 0:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


def test_dropped_positions_come_in_runs_of_at_least_block_size():
    torch.manual_seed(0)
    layer = DropBlock1d(0.2, 5).train()
    out = layer(torch.ones(64, 4, 40))
    runs = [r for row in out.reshape(-1, 40).tolist() for r in _runs(row)]
    assert runs and min(runs) >= 5
    assert 5 in runs  # isolated blocks have exactly block_size
    assert float((out == 0).float().mean()) == pytest.approx(0.2, abs=0.05)


def test_eval_is_deterministic_and_the_identity(tmp_path, cache_dir):
    spec = make_spec(model=CNN, regularizers=[{"name": "dropblock", "p": 0.2}])
    tr = trainer(spec, tmp_path, cache_dir)
    x = tr.data.test.x[:32]
    tr.model.eval()
    assert torch.equal(tr.model(x), tr.model(x))
    tr.model.train()
    assert not torch.equal(tr.model(x), tr.model(x))
    layer = DropBlock1d(0.5, 3).eval()
    assert torch.equal(layer(x[:, None]), x[:, None])


def test_a_run_with_dropblock_learns(tmp_path, cache_dir):
    spec = make_spec(
        model=CNN,
        regularizers=[{"name": "dropblock", "p": 0.1, "block_size": 3}],
        train={"optimizer": "adam", "lr": 0.01, "batch_size": 50, "epochs": 5, "device": "cpu"},
    )
    result = train(spec, tmp_path, cache_dir)
    assert result.status == "succeeded" and result.metrics["test_acc"] > 0.25
