"""Activation L1: α Σ|h| over the hidden activations, for sparse representations.

Goodfellow et al. 2016 §7.10 (representational sparsity); SNU slides on sparse representations;
Glorot et al. 2011 (ReLU with an L1 activation penalty). The sum runs over every unit of every
hidden and conv slot and is averaged over the batch, like the data loss. The activations are the
inputs of the model's ``Slot``s (after the nonlinearity, before any dropout in the slot), caught
by forward pre-hooks during the training forward pass. Within a training step only the forward
on the step's own input (``step.x``, remembered in ``before_forward``) is caught, so the extra
forwards of another regularizer (``adversarial``'s attack and its pass on x′, whether it comes
before or after this one in the list) never replace the clean input's activations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from regcore.models.slots import SlotModel
from regcore.regularizer_specs import ActivationL1Spec
from regcore.regularizers.base import Regularizer, Step


def activation_l1(activations: Sequence[torch.Tensor], strength: float) -> torch.Tensor:
    """α · Σ_layers Σ_units |h|, averaged over the batch (dim 0)."""
    if not activations:
        return torch.zeros(())
    batch = activations[0].shape[0]
    return strength * torch.stack([h.abs().sum() for h in activations]).sum() / batch


class ActivationL1(Regularizer):
    spec_class = ActivationL1Spec
    spec: ActivationL1Spec

    def setup(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        assert isinstance(model, SlotModel)
        # One entry per slot, overwritten each forward: only the current step's tensors are held.
        self.acts: dict[int, torch.Tensor] = {}
        self.expect: torch.Tensor | None = None  # the step's input, from before_forward
        self.current: torch.Tensor | None = None  # the input of the forward now running
        self.last: list[torch.Tensor] = []
        self.handles = [
            slot.register_forward_pre_hook(self._catch(i))
            for i, slot in enumerate(model.slots("hidden", "conv"))
        ]
        self.handles.append(model.register_forward_pre_hook(self._note_input))

    def _note_input(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.current = args[0] if args else None

    def _catch(self, i: int) -> Any:
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            # evaluation passes (eval mode, no_grad) are not part of the training objective
            if not (module.training and torch.is_grad_enabled()):
                return
            if self.expect is not None and self.current is not self.expect:
                return  # another regularizer's forward (e.g. on an adversarial input)
            self.acts[i] = args[0]

        return hook

    def before_forward(self, step: Step) -> None:
        self.acts.clear()
        self.expect = step.x

    def penalty(self, step: Step) -> torch.Tensor:
        acts = [self.acts[i] for i in sorted(self.acts)]
        self.acts.clear()
        self.expect = self.current = None
        self.last = [h.detach() for h in acts]
        if not acts:
            return torch.zeros((), device=step.x.device)
        return activation_l1(acts, self.spec.strength)

    def extra_metrics(self, model: nn.Module) -> dict[str, float]:
        """``activation_sparsity_train_batch``: fraction of exactly-zero hidden activations in
        the last training batch (free: the tensors are already held)."""
        if not self.last:
            return {}
        zeros = sum(int((h == 0).sum()) for h in self.last)
        total = sum(h.numel() for h in self.last)
        return {"activation_sparsity_train_batch": zeros / total}
