"""Feature-space noise: perturb an example's generating latents and render it again.

Antczak eq. 18-19: x̂ = d(z + r) (``additive``) or x̂ = d(r∘z) (``multiplicative``), with d a
generator and z the example's latent code, r fresh every step.

* MNIST-1D: d is the dataset's own generator (``regcore.data.mnist1d_render``), z the latents each
  training example was drawn with (padding, scale, shift, shear, the raw noise draws; the class
  template is kept, so labels stay right). Additive noise is scaled per latent by the width of
  the range the generator samples it from (padding 24, scale 0.4, shift 48 samples, shear 0.75;
  the noise draws are standard normal, width 1), so one σ means the same for all of them.
* Other data: d is the decoder of a small autoencoder fit on the training split when the data
  are bound; z = e(x), and additive noise is scaled by each latent's standard deviation.

Each example is re-rendered with probability ``p``, else kept. The loop tells which training
rows a batch holds (``Step.indices``), and a resampled training split (bagging, the train+val
retrain) where each of its rows comes from in the generator's pool
(``Dataset.extras["train_index"]``); without indices (a batch built by hand) the rows are
matched by nearest neighbour. Put ``feature_noise`` first among the batch transforms: it
re-renders the original examples.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from regcore.regularizer_specs import FeatureNoiseSpec
from regcore.regularizers.base import Regularizer, Step

#: additive noise scale of each MNIST-1D latent: the width of its sampling range
LATENT_SPREAD = {
    "padding": 24.0,
    "scale": 0.4,
    "shift": 48.0,
    "shear": 0.75,
    "corr_noise": 1.0,
    "iid_noise": 1.0,
}


def perturb(
    z: torch.Tensor, sigma: float, mode: str, spread: float | torch.Tensor = 1.0
) -> torch.Tensor:
    """z + σ·spread·ε (additive) or z·(1 + σ·ε) (multiplicative, r ~ N(1, σ²)), ε ~ N(0, 1)."""
    eps = torch.randn_like(z)
    if mode == "additive":
        return z + sigma * spread * eps
    return z * (1.0 + sigma * eps)


def perturb_latents(
    lat: dict[str, torch.Tensor], sigma: float, mode: str, padding_range: tuple[int, int]
) -> dict[str, torch.Tensor]:
    """Every continuous MNIST-1D latent perturbed; the template (the class) is kept."""
    out = {"template": lat["template"]}
    for key, spread in LATENT_SPREAD.items():
        out[key] = perturb(lat[key], sigma, mode, spread)
    out["padding"] = out["padding"].clamp(*padding_range)
    out["scale"] = out["scale"].clamp(min=0.0)
    return out


def match_rows(x: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Index of each row of x in pool (nearest neighbour; exact for unmodified rows)."""
    return torch.cdist(x, pool).argmin(dim=1)


class AutoEncoder(nn.Module):
    def __init__(self, features: int, latent: int, width: int = 64):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(features, width), nn.ReLU(), nn.Linear(width, latent)
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, width), nn.ReLU(), nn.Linear(width, features)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def fit_autoencoder(x: torch.Tensor, latent: int, steps: int, seed: int = 0) -> AutoEncoder:
    """Full-batch Adam on the mean squared reconstruction error; leaves the global RNG alone."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        ae = AutoEncoder(x.shape[1], latent).to(x.device)
        opt = torch.optim.Adam(ae.parameters(), lr=1e-2)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = (ae(x) - x).pow(2).mean()
            loss.backward()
            opt.step()
    ae.eval()
    ae.requires_grad_(False)
    return ae


class FeatureNoise(Regularizer):
    spec_class = FeatureNoiseSpec
    spec: FeatureNoiseSpec
    bound = False

    def bind_data(self, data: Any) -> None:
        from regcore.data.mnist1d_render import TorchRenderer

        self.pool = data.train.x
        device = self.pool.device
        make = data.extras.get("mnist1d_latents")
        if make is not None:
            # a bootstrap resample or the merged train+val split: row i of the training split
            # is row rows[i] of the generator's pool
            rows = data.extras.get("train_index")
            tl = make() if rows is None else make(n_train=int(rows.max()) + 1)
            self.renderer = TorchRenderer(
                tl.args,
                tl.mean,
                tl.std,
                device,
                data.extras.get("feature_mean"),
                data.extras.get("feature_std"),
            )
            self.latents = self.renderer.latents_to_tensors(tl.latents, device)
            if rows is not None:
                rows = rows.to(device)
                self.latents = {k: v[rows] for k, v in self.latents.items()}
            self.padding_range = tuple(tl.args.padding)
            self.ae = None
        else:
            self.ae = fit_autoencoder(self.pool, self.spec.latent_dim, self.spec.ae_epochs)
            with torch.no_grad():
                self.z_std = self.ae.encoder(self.pool).std(0)
        self.bound = True

    def render(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """x̂ for each row of x (a training batch)."""
        if not self.bound:
            raise RuntimeError(
                "feature_noise needs the training data: call bind_data(dataset) first"
            )
        s = self.spec
        with torch.no_grad():
            if self.ae is None:
                idx = match_rows(x, self.pool) if indices is None else indices
                lat = {k: v[idx] for k, v in self.latents.items()}
                return self.renderer(**perturb_latents(lat, s.sigma, s.mode, self.padding_range))
            z = self.ae.encoder(x)
            return self.ae.decoder(perturb(z, s.sigma, s.mode, self.z_std))

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor, step: Step
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_hat = self.render(x, step.indices)
        if self.spec.p < 1.0:
            keep = torch.rand(x.shape[0], 1, device=x.device) >= self.spec.p
            x_hat = torch.where(keep, x, x_hat)
        return x_hat, y
