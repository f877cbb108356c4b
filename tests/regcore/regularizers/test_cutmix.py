"""cutmix: segment/box masks, area-weighted targets, the batch hook on 1D and 8×8 data."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizers.base import Step
from regcore.regularizers.cutmix import cutmix, random_segments, segment_mask
from tests.regcore.runs import make_spec, train, trainer


def test_segment_mask_marks_start_to_start_plus_length():
    m = segment_mask(torch.tensor([1, 0]), torch.tensor([2, 0]), 5)
    assert m.tolist() == [[False, True, True, False, False], [False] * 5]


def test_segments_are_contiguous_and_about_cut_times_size_long():
    torch.manual_seed(0)
    cut = torch.rand(1000)
    m = random_segments(cut, 40, torch.rand(1000))
    lengths = m.sum(1).float()
    assert (lengths <= (cut * 40).round() + 1e-6).all()  # clipping only shortens
    # one run each: exactly one rise along the row
    rises = (m[:, 1:] & ~m[:, :-1]).sum(1) + m[:, 0].long()
    assert (rises <= 1).all()


def test_cutmix_pastes_the_partner_and_mixes_targets_by_area():
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    perm = torch.tensor([1, 0])
    mask = torch.tensor([[True, False, False, False], [False, False, False, False]])
    xm, ym = cutmix(x, y, perm, mask)
    assert xm.tolist() == [[2.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]]
    assert torch.allclose(ym, torch.tensor([[0.75, 0.25], [0.0, 1.0]]))


def _step(tr, x, y):
    return Step(tr.model, tr.optimizer, None, x, y, 0, 0)


def test_the_hook_returns_distributions_consistent_with_the_pasted_area(tmp_path, cache_dir):
    tr = trainer(make_spec(regularizers=[{"name": "cutmix"}]), tmp_path, cache_dir)
    reg = tr.regs[0]
    x, y = tr.data.train.x[:100], tr.data.train.y[:100]
    torch.manual_seed(0)
    xm, ym = reg.transform_batch(x, y, _step(tr, x, y))
    assert ym.shape == (100, 10) and torch.allclose(ym.sum(1), torch.ones(100))
    changed = (xm != x).float().mean(1)
    own = ym.gather(1, y[:, None]).squeeze(1)
    # the own-class weight is at least the unchanged fraction (the partner may share the class)
    assert (own >= 1 - changed - 1e-6).all() and (own < 1).any()


def test_on_8x8_images_the_pasted_region_is_a_box(tmp_path, cache_dir):
    spec = make_spec(
        data={"name": "digits", "n_train": 200, "n_val": 50, "n_test": 50},
        regularizers=[{"name": "cutmix", "alpha": 1.0}],
    )
    tr = trainer(spec, tmp_path, cache_dir)
    x = torch.arange(64.0).repeat(20, 1) + 100 * torch.arange(20.0)[:, None]  # all distinct
    y = torch.zeros(20, dtype=torch.long)
    torch.manual_seed(1)
    xm, _ = tr.regs[0].transform_batch(x, y, _step(tr, x, y))
    for m in (xm != x).reshape(20, 8, 8):
        if m.any():
            rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
            box = m[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
            assert box.all() and int(m.sum()) == box.numel()


def test_cutmix_needs_a_classification_dataset():
    from regcore.spec import SpecError, parse_spec

    with pytest.raises(SpecError, match="classification"):
        parse_spec(
            {
                "data": {"name": "toy1d"},
                "model": {"name": "mlp"},
                "regularizers": [{"name": "cutmix"}],
            }
        )


def test_a_run_with_cutmix_learns(tmp_path, cache_dir):
    result = train(make_spec(regularizers=[{"name": "cutmix"}]), tmp_path, cache_dir)
    assert result.status == "succeeded" and result.metrics["test_acc"] > 0.2
