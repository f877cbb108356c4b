"""Data augmentation for small images (8×8 ``digits``): translate, rotate, flip, blur, brightness.

Simard et al. (2003) distort digit images to enlarge the training set; Goodfellow et al. (2016)
§7.4; Prince §9.3.8. Each transform is a pure function of a batch of images [B, H, W] and its
per-example parameters; ``augment_image`` draws the parameters and applies ``spec.transforms`` in
order (``scale`` and ``noise`` act pixel-wise as for 1D signals). Pixels shifted in from outside
are 0, the mean of a standardized pixel; nothing is clamped. Vectorized over the batch.

``flip`` mirrors left-right, which is not label-preserving for every digit (2, 3, 4, 7, 9): it is
offered because the catalog lists it, and it is a good example of a transform that hurts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from regcore.regularizer_specs import AugmentSpec

IMAGE_TRANSFORMS = ("translate", "rotate", "flip", "blur", "brightness")


def translate(img: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Image i moved right by dx[i] and down by dy[i] whole pixels, zeros shifted in."""
    b, h, w = img.shape
    rows = torch.arange(h, device=img.device)[None, :, None] - dy[:, None, None]
    cols = torch.arange(w, device=img.device)[None, None, :] - dx[:, None, None]
    valid = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    src = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).reshape(b, -1)
    moved = img.reshape(b, -1).gather(1, src).reshape(b, h, w)
    return moved * valid


def rotate(img: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Image i rotated by angles[i] radians about its centre (bilinear, zeros outside)."""
    cos, sin = angles.cos(), angles.sin()
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(
        theta.to(img.dtype), [img.shape[0], 1, *img.shape[1:]], align_corners=False
    )
    return F.grid_sample(img[:, None], grid, align_corners=False, padding_mode="zeros")[:, 0]


def flip(img: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Image i mirrored left-right where ``which[i]`` is True."""
    return torch.where(which[:, None, None], img.flip(-1), img)


def gaussian_kernels(sigma: torch.Tensor) -> torch.Tensor:
    """One normalized 3×3 Gaussian per σ ([B, 3, 3]); σ = 0 gives the identity kernel."""
    t = torch.tensor([-1.0, 0.0, 1.0], device=sigma.device, dtype=sigma.dtype)
    g = torch.exp(-(t[None, :] ** 2) / (2 * sigma[:, None].clamp(min=1e-6) ** 2))
    g = g / g.sum(1, keepdim=True)
    return g[:, :, None] * g[:, None, :]


def blur(img: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Image i convolved with a 3×3 Gaussian of σ[i] (edges replicated)."""
    b = img.shape[0]
    padded = F.pad(img[None], (1, 1, 1, 1), mode="replicate")  # [1, B, H+2, W+2]
    return F.conv2d(padded, gaussian_kernels(sigma)[:, None], groups=b)[0]


def brightness(img: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Image i plus delta[i] on every pixel (standardized units)."""
    return img + delta[:, None, None]


def _uniform(n: int, lo: float, hi: float, like: torch.Tensor, gen: torch.Generator | None):
    return lo + (hi - lo) * torch.rand(n, dtype=like.dtype, device=like.device, generator=gen)


def _apply(
    name: str, img: torch.Tensor, spec: AugmentSpec, gen: torch.Generator | None
) -> torch.Tensor:
    b, dev = img.shape[0], img.device
    if name == "translate":
        m = spec.max_translate
        dx, dy = (torch.randint(-m, m + 1, (b,), device=dev, generator=gen) for _ in range(2))
        return translate(img, dx, dy)
    if name == "rotate":
        limit = math.radians(spec.max_rotate)
        return rotate(img, _uniform(b, -limit, limit, img, gen))
    if name == "flip":
        return flip(img, torch.rand(b, device=dev, generator=gen) < 0.5)
    if name == "blur":
        return blur(img, _uniform(b, 0.0, spec.blur_sigma, img, gen))
    if name == "brightness":
        return brightness(img, _uniform(b, -spec.brightness, spec.brightness, img, gen))
    if name == "scale":
        lo, hi = spec.scale_range
        return img * _uniform(b, lo, hi, img, gen)[:, None, None]
    if name == "noise":
        z = torch.randn(img.shape, dtype=img.dtype, device=dev, generator=gen)
        return img + spec.noise_sigma * z
    raise ValueError(f"{name} is not an image transform; use one of {IMAGE_TRANSFORMS}")


def augment_image(
    x: torch.Tensor,
    spec: AugmentSpec,
    shape: tuple[int, int],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Flattened images x [B, H·W] with ``spec.transforms`` applied, each example with prob. p."""
    img = x.reshape(x.shape[0], *shape)
    for name in spec.transforms:
        img = _apply(name, img, spec, generator)
    out = img.reshape(x.shape)
    if spec.p < 1.0:
        chosen = torch.rand(x.shape[:1], device=x.device, generator=generator) < spec.p
        out = torch.where(chosen[:, None], out, x)
    return out
