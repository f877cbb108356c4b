"""MNIST-1D's generator with its latent variables kept, so examples can be re-rendered.

The mnist1d package's ``make_dataset`` (Greydanus 2020; ``mnist1d/data.py``, ``transform.py``)
draws, per example: a padding length, an amplitude scale, a circular shift, correlated background
noise, i.i.d. noise and a shear, then subsamples to 40 points, and finally standardizes the whole
set by one mean and one standard deviation. It returns only the signals. ``generate`` repeats
the package's pipeline call for call (the same global-RNG draws in the same order, so the output
is identical) and records those draws; ``render`` rebuilds one example from them, in numpy, with
the package's own operations (exact). ``TorchRenderer`` is the same map vectorized in torch, for
re-rendering perturbed latents on the training device (Antczak eq. 18-19: x̂ = d(z + r)).

The latents of one example: ``template`` (its class), ``padding`` (zeros appended before the
dilation), ``scale`` (the amplitude factor), ``shift`` (the circular translation), ``shear`` (the
linear-trend coefficient), ``corr_noise`` and ``iid_noise`` (the raw standard-normal draws).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

EPS = 1e-8  # mnist1d.transform.transform's eps: templates never touch 0 before padding


@dataclass
class Latents:
    """Per-example generating parameters, rows aligned with the generated signals."""

    template: np.ndarray  # int [N]
    padding: np.ndarray  # int [N]
    scale: np.ndarray  # float [N]
    shift: np.ndarray  # int [N]
    shear: np.ndarray  # float [N]
    corr_noise: np.ndarray  # float [N, L1] raw N(0, 1) draws
    iid_noise: np.ndarray  # float [N, L1]

    def take(self, idx: Any) -> Latents:
        return Latents(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def _interpolate(x: np.ndarray, n: int) -> np.ndarray:
    from mnist1d.transform import interpolate

    return interpolate(x, n)


def _render_raw(
    tmpl: np.ndarray,
    padding: int,
    scale: float,
    shift: int,
    shear: float,
    corr: np.ndarray,
    iid: np.ndarray,
    args: Any,
) -> np.ndarray:
    """One signal before the dataset-wide standardization, by the package's operations."""
    from scipy.ndimage import gaussian_filter  # here: a run on cached data never needs scipy

    x = np.concatenate([tmpl + EPS, np.zeros(padding)])
    x = _interpolate(x, args.template_len + args.padding[-1])
    x *= scale
    x = np.concatenate([x[-shift:], x[:-shift]])
    mask = x != 0
    x = mask * x + (1 - mask) * gaussian_filter(args.corr_noise_scale * corr, 2)
    x = x + args.iid_noise_scale * iid
    x = x - shear * np.linspace(-0.5, 0.5, len(x))
    return _interpolate(x, args.final_seq_length)


def generate(args: Any) -> tuple[dict[str, Any], Latents]:
    """``make_dataset(args)``'s dataset and the latents of every example (train then test).

    Reseeds the global ``random``/``numpy`` RNGs as the package does; the caller restores them.
    """
    from mnist1d.data import get_templates

    templates = get_templates()
    random.seed(args.seed)
    np.random.seed(args.seed)
    length = args.template_len + args.padding[-1]
    xs, ys, rec = [], [], []
    per_class = args.num_samples // len(templates["y"])
    for label in range(len(templates["y"])):
        for _ in range(per_class):
            low, high = args.padding
            pad = low + int(np.random.rand() * (high - low + 1))
            scale = 1 + args.scale_coeff * (np.random.rand() - 0.5)
            shift = int(np.random.choice(args.max_translation))
            corr = np.random.randn(length)
            iid = np.random.randn(length)
            shear = args.shear_scale * (np.random.rand() - 0.5)
            tmpl = templates["x"][label]
            xs.append(_render_raw(tmpl, pad, scale, shift, shear, corr, iid, args))
            ys.append(templates["y"][label])
            rec.append((label, pad, scale, shift, shear, corr, iid))
    order = np.random.permutation(len(ys))
    xs_arr, ys_arr = np.stack(xs)[order], np.stack(ys)[order]
    if args.shuffle_seq:
        raise ValueError("shuffle_seq is not supported by the re-renderer")
    mean, std = xs_arr.mean(), xs_arr.std()
    xs_arr = (xs_arr - mean) / std
    split = int(len(ys_arr) * args.train_split)
    cols = list(zip(*rec, strict=True))
    latents = Latents(
        template=np.asarray(cols[0])[order],
        padding=np.asarray(cols[1])[order],
        scale=np.asarray(cols[2])[order],
        shift=np.asarray(cols[3])[order],
        shear=np.asarray(cols[4])[order],
        corr_noise=np.stack(cols[5])[order],
        iid_noise=np.stack(cols[6])[order],
    )
    data = {
        "x": xs_arr[:split],
        "x_test": xs_arr[split:],
        "y": ys_arr[:split],
        "y_test": ys_arr[split:],
        "mean": mean,
        "std": std,
        "templates": templates,
    }
    return data, latents


def render(latents: Latents, i: int, args: Any, mean: float, std: float) -> np.ndarray:
    """Example ``i`` re-rendered from its (possibly edited) latents, standardized as the set."""
    from mnist1d.data import get_templates

    tmpl = get_templates()["x"][latents.template[i]]
    raw = _render_raw(
        tmpl,
        int(latents.padding[i]),
        float(latents.scale[i]),
        int(latents.shift[i]),
        float(latents.shear[i]),
        latents.corr_noise[i],
        latents.iid_noise[i],
        args,
    )
    return (raw - mean) / std


def _linear_map(fn: Any, n: int) -> np.ndarray:
    """The matrix of a linear map of length-n signals, column by column."""
    return np.stack([fn(e) for e in np.eye(n)], axis=1)


class TorchRenderer:
    """The generator as a batched torch map from (perturbed, continuous) latents to signals.

    Continuous padding and scale are fine (the dilation is evaluated at real-valued positions);
    shifts are rounded to whole samples. Inputs are tensors [B] / [B, L1] on one device; the
    output is standardized as the dataset was (``mean``/``std``), then by the per-feature
    ``feature_mean``/``feature_std`` of the training split when given.
    """

    def __init__(
        self,
        args: Any,
        mean: float,
        std: float,
        device: torch.device | str = "cpu",
        feature_mean: np.ndarray | None = None,
        feature_std: np.ndarray | None = None,
    ):
        from mnist1d.data import get_templates
        from scipy.ndimage import gaussian_filter

        self.args = args
        self.length = args.template_len + args.padding[-1]
        tmpl = get_templates()["x"] + EPS
        # one trailing zero: positions past the template read the padding
        padded = np.concatenate([tmpl, np.zeros((len(tmpl), 1))], axis=1)
        f32: dict[str, Any] = {"device": device, "dtype": torch.float32}
        self.templates = torch.as_tensor(padded, **f32)
        self.grid = torch.linspace(0, 1, self.length, **f32)
        self.blur = torch.as_tensor(
            _linear_map(lambda e: gaussian_filter(e, 2), self.length), **f32
        )
        sub = _linear_map(lambda e: _interpolate(e, args.final_seq_length), self.length)
        self.subsample = torch.as_tensor(sub, **f32)
        self.trend = torch.linspace(-0.5, 0.5, self.length, **f32)
        self.mean, self.std = float(mean), float(std)
        self.fmean = torch.as_tensor(feature_mean, **f32) if feature_mean is not None else None
        self.fstd = torch.as_tensor(feature_std, **f32) if feature_std is not None else None

    def __call__(
        self,
        template: torch.Tensor,
        padding: torch.Tensor,
        scale: torch.Tensor,
        shift: torch.Tensor,
        shear: torch.Tensor,
        corr_noise: torch.Tensor,
        iid_noise: torch.Tensor,
    ) -> torch.Tensor:
        n_t = self.args.template_len
        # source index of each dilated sample: the padded template has n_t + padding points
        pos = self.grid[None, :] * (n_t - 1 + padding[:, None])
        i0 = pos.floor().clamp(max=n_t).long()
        frac = pos - i0
        rows = self.templates[template]
        left = rows.gather(1, i0)
        right = rows.gather(1, (i0 + 1).clamp(max=n_t))
        inside = pos < n_t
        x = (
            torch.where(inside, left + (right - left) * frac, torch.zeros_like(pos))
            * scale[:, None]
        )
        # circular shift by whole samples (the package's concatenate([x[-k:], x[:-k]]))
        j = torch.arange(self.length, device=x.device)
        src = (j[None, :] - shift.round().long()[:, None]) % self.length
        x = x.gather(1, src)
        mask = inside.gather(1, src)
        background = (self.args.corr_noise_scale * corr_noise) @ self.blur.T
        x = torch.where(mask, x, background) + self.args.iid_noise_scale * iid_noise
        x = x - shear[:, None] * self.trend[None, :]
        x = (x @ self.subsample.T - self.mean) / self.std
        if self.fmean is not None:
            x = (x - self.fmean) / self.fstd
        return x

    def latents_to_tensors(
        self, lat: Latents, device: torch.device | str
    ) -> dict[str, torch.Tensor]:
        f32: dict[str, Any] = {"device": device, "dtype": torch.float32}
        return {
            "template": torch.as_tensor(lat.template, device=device, dtype=torch.long),
            "padding": torch.as_tensor(lat.padding, **f32),
            "scale": torch.as_tensor(lat.scale, **f32),
            "shift": torch.as_tensor(lat.shift, **f32),
            "shear": torch.as_tensor(lat.shear, **f32),
            "corr_noise": torch.as_tensor(lat.corr_noise, **f32),
            "iid_noise": torch.as_tensor(lat.iid_noise, **f32),
        }


@dataclass
class TrainLatents:
    """What re-rendering the train split needs: its latents and the generator's settings."""

    latents: Latents
    args: Any
    mean: float
    std: float


def mnist1d_args(n_pool: int, n_test: int, seed: int) -> Any:
    """The ``make_dataset`` arguments ``regcore.data.sources.mnist1d_arrays`` uses."""
    from mnist1d.data import get_dataset_args
    from mnist1d.utils import ObjectView

    total = -(-(n_pool + n_test) // 10) * 10
    args = get_dataset_args(as_dict=True)
    args.update(num_samples=total, train_split=(total - n_test + 0.5) / total, seed=seed)
    args.pop("url", None)
    return ObjectView(args)


def train_latents(n_pool: int, n_test: int, seed: int, n_train: int) -> TrainLatents:
    """The latents of the first ``n_train`` examples of the pool (the train split; pass
    ``n_train`` = train + val for the merged split), regenerated; the global RNGs are left as
    they were."""
    state = (np.random.get_state(), random.getstate())
    try:
        args = mnist1d_args(n_pool, n_test, seed)
        data, lat = generate(args)
    finally:
        np.random.set_state(state[0])
        random.setstate(state[1])
    return TrainLatents(lat.take(slice(0, n_train)), args, float(data["mean"]), float(data["std"]))
