"""k same-architecture members as one model: stacked parameters, one forward, one optimizer.

Each member is built by its own lone ``Trainer`` (same seed, same construction order), so its
initial weights, batch order and RNG state are the ones it would start from alone. The stacked
forward runs every member on its own batch: for ``linear`` and ``mlp`` an explicit ``baddbmm``
forward whose hidden and input units the batched regularizers act on (dropout, noise), for the
other batchable models ``torch.func.vmap`` over ``functional_call``. The loss is the sum of the
members' losses, so each member's gradient is its own; the optimizer applies each member's own
lr and momentum elementwise. Each linear layer's gradients are the products the lone
``F.linear`` backward forms (``_StackedLinear``), so on CPU a member's weights follow its lone
run bit for bit, epoch after epoch (only the reported losses' reductions round differently,
~1e-7); evaluation takes the first layer of every member in one matmul on the shared rows.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from regcore.models.mlp import MLP, LinearModel
from regcore.models.params import classify_parameters
from regcore.models.slots import Slot
from regcore.regularizers.batched import BatchedRegularizer
from regcore.regularizers.max_norm import CONSTRAINED

#: models with the explicit forward (slots exposed); the vmapped ones below run everything else
EXPLICIT_MODELS = {"linear", "mlp"}
VMAP_MODELS = {"cnn1d", "resmlp"}
#: activations per evaluation chunk (k · rows · widest layer), about 4 MB of float32
EVAL_ELEMENTS = 1 << 20


class _StackedLinear(torch.autograd.Function):
    """``h @ wᵀ + b`` per member (``[k, B, in] → [k, B, out]``), with the gradients computed
    as the lone ``F.linear``'s backward computes them, operand for operand: autograd's
    ``addmm`` backward takes ``wᵀ``'s column-major layout into account and forms the weight
    gradient as ``gᵀ @ h``, while ``baddbmm``'s backward forms ``(hᵀ @ g)ᵀ``, which MKL rounds
    differently for the 100→10 output layer (a few ulps; the benchmark's members drifted from
    their lone runs by 1.3e-4 in 5 epochs). The same products here, so on CPU each member's
    gradient is bit for bit its lone run's. (It computes the weight gradient whenever the
    weights require one, also for the adversarial attack's input gradients.)"""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(h, w)
        ctx.has_bias = b is not None
        if b is None:
            return torch.bmm(h, w.transpose(1, 2))
        return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        h, w = ctx.saved_tensors
        gh = torch.bmm(g, w) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(g.transpose(1, 2), h) if ctx.needs_input_grad[1] else None
        gb = g.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gh, gw, gb


class StackedModel:
    """Stacked parameters of ``models`` and their batched forward (``[k, B, ...] → [k, B, C]``)."""

    def __init__(self, models: list[nn.Module]):
        # stacked by hand: torch.func's stack_module_state pulls in seconds of imports
        named = [dict(m.named_parameters()) for m in models]
        self.params: dict[str, torch.Tensor] = {
            n: torch.stack([p[n].detach() for p in named]).requires_grad_(True) for n in named[0]
        }
        bufs = [dict(m.named_buffers()) for m in models]
        self.buffers = {n: torch.stack([b[n] for b in bufs]) for n in bufs[0]}
        self.k = len(models)
        self.base = copy.deepcopy(models[0]).to("meta")
        self.explicit = isinstance(models[0], MLP | LinearModel)
        self.kinds = classify_parameters(models[0])
        self.constrained = [
            f"{name}.weight"
            for name, m in models[0].named_modules()
            if isinstance(m, CONSTRAINED) and f"{name}.weight" in self.params
        ]
        self.slot_regs: list[BatchedRegularizer] = []
        self.active = [True] * self.k  # whose batch-norm statistics a training forward moves
        self.training_forward = True

    def penalized(self, exclude: tuple[str, ...]) -> list[str]:
        skip = set(exclude) | {"aux"}
        return [n for n in self.params if self.kinds.get(n, "weight") not in skip]

    def _linear(self, prefix: str, h: torch.Tensor) -> torch.Tensor:
        w, b = self.params[f"{prefix}.weight"], self.params.get(f"{prefix}.bias")
        if h.dim() == 2:  # inputs [B, in] shared by every member: one matmul for all of them
            k, n_out, n_in = w.shape
            wt = w.reshape(k * n_out, n_in).t()
            out = h @ wt if b is None else torch.addmm(b.reshape(-1), h, wt)
            return out.view(h.shape[0], k, n_out).transpose(0, 1)  # [k, B, out], a view
        if torch.is_grad_enabled() and (w.requires_grad or h.requires_grad):
            return _StackedLinear.apply(h, w, b)
        if b is None:
            return torch.bmm(h, w.transpose(1, 2))
        return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))

    def _slot(self, kind: str, h: torch.Tensor, train: bool) -> torch.Tensor:
        if train:
            for reg in self.slot_regs:
                reg.catch(kind, h)
            for reg in self.slot_regs:
                h = reg.slot(kind, h)
        return h

    def _batch_norm(
        self, prefix: str, mod: nn.BatchNorm1d, h: torch.Tensor, update: bool
    ) -> torch.Tensor:
        """Batch norm with each member's own batch statistics and running statistics; only
        running members' statistics move (a frozen member's stay as they were)."""
        w, b = self.params[f"{prefix}.weight"][:, None], self.params[f"{prefix}.bias"][:, None]
        rm, rv = self.buffers[f"{prefix}.running_mean"], self.buffers[f"{prefix}.running_var"]
        if not self.training_forward:
            return (h - rm[:, None]) / torch.sqrt(rv[:, None] + mod.eps) * w + b
        mean = h.mean(1, keepdim=True)
        var = h.var(1, unbiased=False, keepdim=True)
        if update:
            with torch.no_grad():
                n = h.shape[1]
                m = mod.momentum if mod.momentum is not None else 0.1
                on = torch.tensor(self.active, device=h.device)[:, None]
                unbiased = var[:, 0] * (n / max(n - 1, 1))
                rm.copy_(torch.where(on, (1 - m) * rm + m * mean[:, 0], rm))
                rv.copy_(torch.where(on, (1 - m) * rv + m * unbiased, rv))
                nb = self.buffers[f"{prefix}.num_batches_tracked"]
                nb.add_(on[:, 0].to(nb.dtype))
        return (h - mean) / torch.sqrt(var + mod.eps) * w + b

    def forward(
        self, x: torch.Tensor, train: bool, shared_x: bool = False, update_stats: bool = True
    ) -> torch.Tensor:
        """Outputs ``[k, B, C]``; ``x`` is ``[k, B, ...]``, or ``[B, ...]`` with ``shared_x``."""
        if not self.explicit:
            from torch.func import functional_call, vmap  # only the vmapped models need it

            base = self.base

            def one(
                p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xi: torch.Tensor
            ) -> Any:
                return functional_call(base, (p, b), (xi,))

            in_x = None if shared_x else 0
            return vmap(one, in_dims=(0, 0, in_x))(self.params, self.buffers, x)
        self.training_forward = train
        if shared_x and not train:
            # evaluation: the first linear layer takes the shared rows [B, in] in one matmul
            # (the same products as each member's own, bit for bit); no slot acts here
            h = x.flatten(1)
        else:
            if shared_x:
                x = x.expand(self.k, *x.shape)
            h = self._slot("input", x.flatten(2), train)
        own = False  # whether h is this forward's own tensor (not the input): in place is safe
        if isinstance(self.base, MLP):
            for name, mod in self.base.body.named_children():
                if h.dim() == 2 and not isinstance(mod, nn.Linear):
                    h = h.expand(self.k, *h.shape)
                if isinstance(mod, nn.Linear):
                    h, own = self._linear(f"body.{name}", h), True
                elif isinstance(mod, Slot):
                    h = self._slot(mod.kind, h, train)
                elif isinstance(mod, nn.BatchNorm1d):
                    h = self._batch_norm(f"body.{name}", mod, h, train and update_stats)
                elif own and not train and isinstance(mod, nn.ReLU):  # evaluation
                    h = h.relu_()
                else:  # the activation: elementwise
                    h = mod(h)
        return self._linear("out", h)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Eval-mode outputs of every member on shared inputs ``x`` ``[N, ...]``, in row chunks
        whose activations (k · rows · width) stay cache-sized: at 64 members one 2000-row chunk
        is tens of MB per layer, and measured slower than chunks of a few hundred rows."""
        if chunk is None:
            width = max((p.shape[1] for n, p in self.params.items() if p.dim() == 3), default=1)
            chunk = max(64, EVAL_ELEMENTS // (self.k * width))
        return torch.cat(
            [self.forward(x[i : i + chunk], False, shared_x=True) for i in range(0, len(x), chunk)],
            dim=1,
        )

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        out = {n: p[i].detach().clone() for n, p in self.params.items()}
        out.update({n: b[i].detach().clone() for n, b in self.buffers.items()})
        return out

    @torch.no_grad()
    def load_member(self, i: int, state: dict[str, torch.Tensor]) -> None:
        for n, p in self.params.items():
            p[i].copy_(state[n])
        for n, b in self.buffers.items():
            b[i].copy_(state[n])

    def unstack(self, models: list[nn.Module]) -> list[nn.Module]:
        """Copy member i's weights into ``models[i]``."""
        with torch.no_grad():
            for i, m in enumerate(models):
                m.load_state_dict(self.member_state(i), strict=False)
        return models


class StackedOptimizer:
    """SGD (momentum, Nesterov) or Adam/AdamW on stacked parameters, with per-member lr and
    momentum ``[k]`` and a per-member mask: a frozen member's weights never change.

    The updates are torch's single-tensor SGD and Adam written with ``[k]`` tensors in place of
    the Python scalars (weight decay is the ``weight_decay`` regularizer, CONTRACT §1)."""

    def __init__(
        self,
        params: dict[str, torch.Tensor],
        kind: str,
        momentum: list[float],
        nesterov: bool,
        betas: tuple[float, float],
        eps: float = 1e-8,
    ):
        self.params = params
        self.kind = kind
        dev = next(iter(params.values())).device
        self.momentum = torch.tensor(momentum, device=dev)
        self.any_momentum = any(m != 0 for m in momentum)
        self.nesterov = nesterov
        self.betas = betas
        self.eps = eps
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    @staticmethod
    def _v(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)

    @staticmethod
    def _axpy(
        p: torch.Tensor,
        g: torch.Tensor,
        alphas: list[float],
        active: list[bool],
        denom: torch.Tensor | None = None,
    ) -> None:
        """p ← p + αᵢ·gᵢ (with ``denom``: p + αᵢ·gᵢ/dᵢ) for each active member i, by torch's
        own ``add(alpha=)`` (``addcdiv(value=)``, as torch's Adam) for each distinct α, the
        lone optimizer's very operation; inactive members stay as they are."""
        groups: dict[float, list[int]] = {}
        for i, a in enumerate(alphas):
            if active[i]:
                groups.setdefault(a, []).append(i)
        if len(groups) == 1 and all(active):
            a = next(iter(groups))
            if denom is None:
                p.add_(g, alpha=a)
            else:
                p.addcdiv_(g, denom, value=a)
            return
        new = p.clone()
        for a, idx in groups.items():
            rows = torch.tensor(idx, device=p.device)
            if denom is None:
                new[rows] = torch.add(p[rows], g[rows], alpha=a)
            else:
                new[rows] = torch.addcdiv(p[rows], g[rows], denom[rows], value=a)
        p.copy_(new)

    @torch.no_grad()
    def step(self, lr: list[float], active: list[bool]) -> None:
        """One step of every active member at its own rate ``lr[i]``."""
        self.steps += 1
        for n, p in self.params.items():
            g = p.grad
            if g is None:
                continue
            st = self.state.setdefault(n, {})
            if self.kind == "sgd":
                if self.any_momentum:
                    buf = st.get("momentum_buffer")
                    if buf is None:
                        buf = st["momentum_buffer"] = g.detach().clone()
                    else:
                        buf.mul_(self._v(self.momentum, buf)).add_(g)
                    g = g + self._v(self.momentum, g) * buf if self.nesterov else buf
                self._axpy(p, g, [-x for x in lr], active)
            else:
                b1, b2 = self.betas
                if "exp_avg" not in st:
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                m, v = st["exp_avg"], st["exp_avg_sq"]
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                bc1 = 1 - b1**self.steps
                bc2_sqrt = (1 - b2**self.steps) ** 0.5
                denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
                self._axpy(p, m, [-x / bc1 for x in lr], active, denom)

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.state, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = next(iter(self.params.values())).device
        self.state = {n: {k: v.to(dev) for k, v in s.items()} for n, s in state["state"].items()}
        self.steps = int(state["steps"])

    def member_state_dict(self, i: int) -> dict[str, Any]:
        """Member i's slice of the state (its momentum buffers or Adam moments) and the step
        count: what ``load_member_state_dicts`` stacks back."""
        return {
            "state": {
                n: {k: v[i].detach().clone() for k, v in s.items()} for n, s in self.state.items()
            },
            "steps": self.steps,
        }

    @staticmethod
    def split_state_dict(state: dict[str, Any], k: int) -> list[dict[str, Any]]:
        """``state_dict()``'s output as the k members' ``member_state_dict``s."""
        return [
            {
                "state": {
                    n: {key: v[i] for key, v in s.items()} for n, s in state["state"].items()
                },
                "steps": int(state["steps"]),
            }
            for i in range(k)
        ]

    def load_member_state_dicts(self, states: list[dict[str, Any]], steps: int) -> None:
        """Stack the k members' slices (``member_state_dict``) back into the state; ``steps``
        the step count to go on from (Adam's bias correction is one for all members). Raises
        ValueError, changing nothing, when the slices do not fit together."""
        dev = next(iter(self.params.values())).device
        if len(states) != len(self.momentum):
            raise ValueError(f"{len(states)} optimizer states for {len(self.momentum)} members")
        layout = {n: sorted(s) for n, s in states[0]["state"].items()}
        if any({n: sorted(s) for n, s in st["state"].items()} != layout for st in states):
            raise ValueError("the members' optimizer states hold different buffers")
        stacked: dict[str, dict[str, torch.Tensor]] = {}
        for n, keys in layout.items():
            if n not in self.params:
                raise ValueError(f"an optimizer state for an unknown parameter {n}")
            stacked[n] = {}
            for key in keys:
                v = torch.stack([st["state"][n][key].to(dev) for st in states])
                if v.shape != self.params[n].shape:
                    raise ValueError(f"an optimizer state {n}.{key} of shape {tuple(v.shape)}")
                stacked[n][key] = v
        self.state = stacked
        self.steps = int(steps)
