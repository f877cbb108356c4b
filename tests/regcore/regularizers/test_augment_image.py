"""augment on 8×8 images: each transform by hand, the dispatch by image_shape, a digits run."""

from __future__ import annotations

import math

import pytest
import torch

from regcore.regularizer_specs import AugmentSpec
from regcore.regularizers.augment_image import (
    augment_image,
    blur,
    brightness,
    flip,
    gaussian_kernels,
    rotate,
    translate,
)
from regcore.regularizers.base import Step
from regcore.spec import SpecError, parse_spec
from tests.regcore.runs import make_spec, train, trainer

DIGITS = {"name": "digits", "n_train": 300, "n_val": 100, "n_test": 300}


def _img() -> torch.Tensor:
    return torch.arange(9.0).reshape(1, 3, 3)


def test_translate_moves_pixels_and_fills_zeros():
    got = translate(_img(), torch.tensor([1]), torch.tensor([0]))
    assert got[0].tolist() == [[0, 0, 1], [0, 3, 4], [0, 6, 7]]
    got = translate(_img(), torch.tensor([0]), torch.tensor([-1]))
    assert got[0].tolist() == [[3, 4, 5], [6, 7, 8], [0, 0, 0]]


def test_rotate_by_a_quarter_turn_permutes_the_pixels():
    got = rotate(_img(), torch.tensor([math.pi / 2]))
    assert torch.allclose(got, torch.rot90(_img(), k=1, dims=(1, 2)), atol=1e-5) or torch.allclose(
        got, torch.rot90(_img(), k=-1, dims=(1, 2)), atol=1e-5
    )
    assert torch.allclose(rotate(_img(), torch.tensor([0.0])), _img(), atol=1e-5)


def test_flip_mirrors_only_the_chosen_images():
    x = torch.cat([_img(), _img()])
    got = flip(x, torch.tensor([True, False]))
    assert got[0].tolist() == [[2, 1, 0], [5, 4, 3], [8, 7, 6]] and torch.equal(got[1], x[1])


def test_blur_averages_with_a_normalized_gaussian():
    k = gaussian_kernels(torch.tensor([1.0]))[0]
    assert float(k.sum()) == pytest.approx(1.0) and float(k[1, 1]) == float(k.max())
    flat = torch.full((1, 3, 3), 2.0)
    assert torch.allclose(blur(flat, torch.tensor([1.0])), flat)  # a constant image is unchanged
    center = blur(_img(), torch.tensor([1.0]))[0, 1, 1]
    assert float(center) == pytest.approx(4.0)  # symmetric kernel on a linear ramp
    assert torch.allclose(blur(_img(), torch.tensor([0.0])), _img(), atol=1e-5)


def test_brightness_adds_an_offset_per_image():
    assert torch.equal(brightness(_img(), torch.tensor([1.5])), _img() + 1.5)


def test_augment_image_applies_the_listed_transforms_to_flat_images():
    spec = AugmentSpec(transforms=["translate", "flip"], max_translate=0)
    x = torch.arange(64.0)[None].repeat(4, 1)
    gen = torch.Generator().manual_seed(0)
    out = augment_image(x, spec, (8, 8), gen)
    assert out.shape == x.shape
    for row in out.reshape(4, 8, 8):
        assert torch.equal(row, x[0].reshape(8, 8)) or torch.equal(row, x[0].reshape(8, 8).flip(-1))


def test_on_digits_the_hook_uses_the_image_transforms(tmp_path, cache_dir):
    spec = make_spec(data=DIGITS, regularizers=[{"name": "augment", "transforms": ["translate"]}])
    tr = trainer(spec, tmp_path, cache_dir)
    x, y = tr.data.train.x[:50], tr.data.train.y[:50]
    torch.manual_seed(0)
    xa, ya = tr.regs[0].transform_batch(x, y, Step(tr.model, tr.optimizer, None, x, y, 0, 0))
    assert torch.equal(ya, y) and xa.shape == x.shape and not torch.equal(xa, x)
    # a translation by at most one pixel: each image equals some shift of the original
    imgs, aug = x.reshape(-1, 8, 8), xa.reshape(-1, 8, 8)
    for i in range(5):
        shifts = [
            translate(imgs[i : i + 1], torch.tensor([dx]), torch.tensor([dy]))[0]
            for dx in (-1, 0, 1)
            for dy in (-1, 0, 1)
        ]
        assert any(torch.allclose(aug[i], s) for s in shifts)


def test_1d_transforms_on_images_and_image_transforms_on_signals_are_spec_errors():
    with pytest.raises(SpecError, match="shift"):
        parse_spec(
            {"data": DIGITS, "model": {"name": "mlp"}, "regularizers": [{"name": "augment"}]}
        )
    with pytest.raises(SpecError, match="rotate"):
        parse_spec(
            {
                "data": {"name": "mnist1d"},
                "model": {"name": "mlp"},
                "regularizers": [{"name": "augment", "transforms": ["rotate"]}],
            }
        )


def test_a_digits_run_with_image_augmentation_learns(tmp_path, cache_dir):
    spec = make_spec(
        data=DIGITS,
        regularizers=[{"name": "augment", "transforms": ["translate", "rotate", "blur"]}],
        train={"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 10, "device": "cpu"},
    )
    result = train(spec, tmp_path, cache_dir)
    assert result.status == "succeeded" and result.metrics["test_acc"] > 0.6
