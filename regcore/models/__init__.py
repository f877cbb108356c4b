"""Model construction from a spec."""

from __future__ import annotations

from regcore.models.cnn1d import CNN1D
from regcore.models.cnn2d import CNN2D
from regcore.models.gru import GRU
from regcore.models.mlp import MLP, LinearModel
from regcore.models.resmlp import ResMLP
from regcore.models.slots import Slot, SlotModel
from regcore.models.transformer import Transformer
from regcore.spec import (
    CNN1DSpec,
    CNN2DSpec,
    GRUSpec,
    LinearModelSpec,
    MLPSpec,
    ResMLPSpec,
    TransformerSpec,
)

__all__ = ["Slot", "SlotModel", "build_model"]


def build_model(
    spec: object, in_features: int, out_features: int, input_shape: tuple[int, ...] | None = None
) -> SlotModel:
    """Build the model a ``ModelSpec`` describes, with freshly initialized weights.

    ``input_shape``: one row's shape when the data has one (uploads; cnn2d and cnn1d read it)."""
    if isinstance(spec, LinearModelSpec):
        return LinearModel(in_features, out_features)
    if isinstance(spec, MLPSpec):
        return MLP(in_features, out_features, spec.hidden, spec.activation, spec.batch_norm)
    if isinstance(spec, CNN1DSpec):
        return CNN1D(
            in_features,
            out_features,
            spec.channels,
            spec.kernel_size,
            spec.hidden,
            spec.activation,
            spec.batch_norm,
            spec.residual,
            in_channels=input_shape[0] if input_shape is not None and len(input_shape) == 2 else 1,
        )
    if isinstance(spec, CNN2DSpec):
        return CNN2D(
            in_features,
            out_features,
            spec.channels,
            spec.kernel_size,
            spec.pool,
            spec.hidden,
            spec.activation,
            spec.batch_norm,
            input_shape,
        )
    if isinstance(spec, ResMLPSpec):
        return ResMLP(
            in_features, out_features, spec.width, spec.blocks, spec.activation, spec.batch_norm
        )
    if isinstance(spec, GRUSpec):
        return GRU(in_features, out_features, spec.hidden_size)
    if isinstance(spec, TransformerSpec):
        return Transformer(
            in_features,
            out_features,
            spec.patch_size,
            spec.d_model,
            spec.heads,
            spec.layers,
            spec.ff,
            spec.activation,
        )
    raise ValueError(f"unknown model spec {type(spec).__name__}")
