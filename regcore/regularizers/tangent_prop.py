"""Tangent propagation: λΣᵢ mean_n ‖(∂f(xₙ)/∂x)·vᵢ(xₙ)‖² (Simard et al. 1992; SNU slides [K]).

vᵢ(x) is the derivative of a known label-preserving transform at the identity, so the penalty
asks the network to be locally invariant to it. Jacobian-vector products come from forward-mode
AD (``torch.func.jvp``), one pass per tangent, differentiable in the weights.

Tangents (computed on the standardized inputs the model sees):
* 1D ``shift``: x[t+1] − x[t], circular (a one-step circular shift x ↦ roll(x, −1) is x + v);
* 1D ``scale``: x itself (amplitude scaling x ↦ (1+ε)x);
* 8×8 images ``translate``: the image gradients ∂I/∂u and ∂I/∂v (two tangents, central
  differences, one-sided at the border);
* 8×8 images ``rotate``: v·∂I/∂u − u·∂I/∂v with (u, v) pixel coordinates about the centre.
The defaults are ``shift`` for flat inputs and ``translate`` + ``rotate`` for images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from regcore.models.bn import without_buffer_updates
from regcore.regularizer_specs import TangentPropSpec
from regcore.regularizers.base import Regularizer, Step, TaskInfo

IMAGE_TRANSFORMS = {"translate", "rotate"}


def shift_tangent(x: torch.Tensor) -> torch.Tensor:
    """x[t+1] − x[t], circular, along the last axis."""
    return torch.roll(x, -1, dims=-1) - x


def scale_tangent(x: torch.Tensor) -> torch.Tensor:
    return x


def image_gradients(x: torch.Tensor, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂I/∂row, ∂I/∂col) of flat images [B, H·W], each flat again."""
    img = x.reshape(x.shape[0], *shape)
    d_row, d_col = torch.gradient(img, dim=(1, 2))
    return d_row.reshape(x.shape), d_col.reshape(x.shape)


def rotate_tangent(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """d/dθ of I rotated by θ about the image centre, at θ = 0 (flat)."""
    h, w = shape
    d_row, d_col = image_gradients(x, shape)
    rows = torch.arange(h, device=x.device, dtype=x.dtype) - (h - 1) / 2
    cols = torch.arange(w, device=x.device, dtype=x.dtype) - (w - 1) / 2
    r, c = torch.meshgrid(rows, cols, indexing="ij")
    return (r.reshape(-1) * d_col - c.reshape(-1) * d_row).reshape(x.shape)


def tangents(
    x: torch.Tensor, names: Sequence[str], image_shape: tuple[int, int] | None
) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for name in names:
        if name == "shift":
            out.append(shift_tangent(x))
        elif name == "scale":
            out.append(scale_tangent(x))
        elif name == "translate":
            assert image_shape is not None
            out.extend(image_gradients(x, image_shape))
        elif name == "rotate":
            assert image_shape is not None
            out.append(rotate_tangent(x, image_shape))
        else:
            raise ValueError(f"unknown tangent {name!r}")
    return out


def tangent_prop_penalty(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, vs: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Σᵢ mean_n ‖J_f(xₙ) vᵢₙ‖² by forward-mode jvp."""
    total = x.new_zeros(())
    for v in vs:
        jv = torch.func.jvp(f, (x,), (v,))[1]  # indexed: the stub also admits the has_aux triple
        total = total + jv.pow(2).sum() / x.shape[0]
    return total


class TangentProp(Regularizer):
    spec_class = TangentPropSpec
    spec: TangentPropSpec

    def __init__(self, spec: TangentPropSpec, task: TaskInfo):
        super().__init__(spec, task)
        image = task.image_shape
        names = spec.transforms or (["translate", "rotate"] if image else ["shift"])
        if image is None and IMAGE_TRANSFORMS & set(names):
            raise ValueError(
                f"tangent_prop.transforms {sorted(IMAGE_TRANSFORMS & set(names))} need image data "
                "(digits); for flat inputs use shift or scale"
            )
        self.names = names

    def penalty(self, step: Step) -> torch.Tensor:
        x = step.x.detach()
        vs = tangents(x, self.names, self.task.image_shape)
        f = without_buffer_updates(step.model)
        return self.spec.strength * tangent_prop_penalty(f, x, vs)
