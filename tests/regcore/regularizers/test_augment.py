"""Augmentation of 1D signals: each transform's formula, the hook, and better MNIST-1D accuracy."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizer_specs import AugmentSpec
from regcore.regularizers.augment import Augment, augment_1d, scale_1d, shift_1d
from regcore.regularizers.base import Step, TaskInfo
from tests.regcore.runs import make_spec, train


def _task(image_shape: tuple[int, int] | None = None) -> TaskInfo:
    return TaskInfo("classification", 10, 6, image_shape, 1, 1, torch.device("cpu"))


def _step(x: torch.Tensor, y: torch.Tensor) -> Step:
    return Step(torch.nn.Identity(), None, None, x, y, 0, 0)  # type: ignore[arg-type]


def test_shift_rolls_each_row_circularly_by_its_own_amount():
    x = torch.arange(10.0).reshape(2, 5)
    out = shift_1d(x, torch.tensor([1, -2]))
    torch.testing.assert_close(out, torch.tensor([[4.0, 0, 1, 2, 3], [7.0, 8, 9, 5, 6]]))
    torch.testing.assert_close(out[0], torch.roll(x[0], 1))


def test_scale_multiplies_each_row_by_its_own_factor():
    x = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    torch.testing.assert_close(
        scale_1d(x, torch.tensor([2.0, 0.5])), torch.tensor([[2.0, -4.0], [1.5, 2.0]])
    )


def test_random_shift_stays_within_max_shift_and_keeps_the_values():
    x = torch.randn(500, 40, generator=torch.Generator().manual_seed(0))
    spec = AugmentSpec(transforms=["shift"], max_shift=3)
    out = augment_1d(x, spec, generator=torch.Generator().manual_seed(1))
    found = set()
    for i in range(x.shape[0]):
        s = next(s for s in range(-3, 4) if torch.equal(out[i], torch.roll(x[i], s)))
        found.add(s)
    assert found == set(range(-3, 4))


def test_random_scale_draws_factors_inside_scale_range_without_clamping():
    x = torch.full((2000, 4), -1.5)  # standardized data is negative too: no clamp to [0, 1]
    spec = AugmentSpec(transforms=["scale"], scale_range=(0.5, 2.0))
    factors = augment_1d(x, spec)[:, 0] / -1.5
    assert factors.min() >= 0.5 and factors.max() <= 2.0
    assert factors.min() < 0.55 and factors.max() > 1.95
    assert torch.allclose(augment_1d(x, spec).std(1), torch.zeros(2000))  # one factor per row


def test_noise_adds_gaussian_noise_of_noise_sigma():
    x = torch.zeros(1000, 40)
    out = augment_1d(x, AugmentSpec(transforms=["noise"], noise_sigma=0.2))
    assert abs(out.std().item() - 0.2) < 0.005


def test_each_row_is_augmented_with_probability_p():
    x = torch.randn(4000, 10, generator=torch.Generator().manual_seed(0))
    out = augment_1d(x, AugmentSpec(transforms=["noise"], p=0.3))
    changed = (out != x).any(1).float().mean()
    assert abs(changed.item() - 0.3) < 0.03


def test_hook_changes_inputs_not_labels_and_refuses_images():
    reg = Augment(AugmentSpec(transforms=["noise"]), _task())
    x, y = torch.zeros(3, 6), torch.tensor([0, 1, 2])
    x1, y1 = reg.transform_batch(x, y, _step(x, y))
    assert y1 is y and not torch.equal(x1, x)
    # the 1D shift has no meaning on images (their transforms are in test_augment_image.py)
    with pytest.raises(ValueError, match="image"):
        Augment(AugmentSpec(), _task(image_shape=(8, 8)))


def test_shift_and_scale_lower_mnist1d_test_error(tmp_path, cache_dir):
    base = dict(
        data={"name": "mnist1d", "n_train": 1000, "n_val": 200, "n_test": 500},
        model={"name": "mlp", "hidden": [128, 128]},
        train={"optimizer": "adam", "lr": 0.003, "batch_size": 50, "epochs": 30, "device": "cpu"},
    )
    plain = train(make_spec(**base), tmp_path / "plain", cache_dir).metrics
    spec = make_spec(**base, regularizers=[{"name": "augment", "transforms": ["shift", "scale"]}])
    augmented = train(spec, tmp_path / "aug", cache_dir).metrics
    # measured over seeds 0-2: error 0.55-0.58 without, 0.43-0.47 with
    assert 1 - augmented["test_acc"] < (1 - plain["test_acc"]) - 0.05
