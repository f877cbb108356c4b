"""How each batchable regularizer runs on k stacked members, each with its own strengths.

A batched run (``regcore/ensemble/batched.py``) calls these hooks in the order of
``regcore/regularizers/base.py``'s step, once for all members: tensors carry a leading member
dimension ``k`` and each numeric parameter is a ``[k]`` tensor. A member without the regularizer
has strength zero, which is exactly the run it would have alone (no draw, no term, no change).
Random draws come from each member's own generator, in the order the lone run makes them, so a
member's dropout masks and noise are the ones it would draw training alone.

``numeric`` names the fields that may differ between members; every other field must agree
among the members that have the regularizer (``why_not_batched`` says which one does not).
``slots``: the regularizer acts inside the model (hidden or input units), which only the
explicit MLP forward exposes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from regcore.regularizer_specs import BY_NAME, RegularizerSpec
from regcore.regularizers.base import Regularizer
from regcore.regularizers.gaussian_dropout import gaussian_dropout_sigma


@dataclass
class BatchContext:
    """What the hooks of one batched step share (the batched counterpart of ``Step``)."""

    k: int
    device: torch.device
    task: str
    num_classes: int
    params: dict[str, torch.Tensor]  # stacked, [k, ...]
    penalized: Callable[[tuple[str, ...]], list[str]]  # names of penalized params by exclude
    constrained: list[str]  # weights of Linear/Conv layers (max-norm's rows)
    generators: list[torch.Generator]  # each member's own noise stream
    active: list[bool]  # members still training
    lr: list[float]  # each member's rate this epoch (Python floats, as the lone run's)
    outputs: torch.Tensor | None = None
    scratch: dict[str, Any] = field(default_factory=dict)  # this step's x, y, data_loss
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None  # a training forward
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # [k] data losses

    def view(self, v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``[k]`` → ``[k, 1, ...]`` broadcasting against ``like``."""
        return v.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)


class BatchedRegularizer:
    spec_name: ClassVar[str]
    numeric: ClassVar[tuple[str, ...]] = ()
    slots: ClassVar[bool] = False

    def __init__(self, regs: list[Regularizer | None], ctx: BatchContext):
        self.regs: list[Any] = list(regs)  # each member's lone regularizer, None where absent
        self.ctx = ctx

    def values(self, get: Callable[[Any], float], absent: float = 0.0) -> torch.Tensor:
        """One value per member from its lone regularizer (``absent`` where it has none)."""
        vals = [absent if r is None else float(get(r)) for r in self.regs]
        return torch.tensor(vals, device=self.ctx.device)

    def scalars(self, get: Callable[[int, Any], float], absent: float = 0.0) -> torch.Tensor:
        """``[k]`` of ``get(i, reg)``, computed in Python as the lone run computes its scalars."""
        vals = [absent if r is None else float(get(i, r)) for i, r in enumerate(self.regs)]
        return torch.tensor(vals, device=self.ctx.device)

    def present(self, get: Callable[[Any], float]) -> list[tuple[int, float]]:
        """(member, value) for active members whose value is non-zero: the ones that draw."""
        return [
            (i, float(get(r)))
            for i, r in enumerate(self.regs)
            if r is not None and self.ctx.active[i] and float(get(r)) != 0.0
        ]

    # the hooks, in step order; each does nothing by default
    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return x, y

    def before_forward(self) -> None:
        pass

    def catch(self, kind: str, h: torch.Tensor) -> None:
        """A slot's input, before any regularizer's op on it (training forwards only)."""

    def slot(self, kind: str, h: torch.Tensor) -> torch.Tensor:
        return h

    def extra_metrics(self) -> list[dict[str, float]]:
        """Each member's own extra metrics for this epoch (as the lone ``extra_metrics``)."""
        return [{} for _ in self.regs]

    def on_epoch_end(self) -> None:
        pass

    def transform_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def penalty(self) -> torch.Tensor | None:
        return None

    def before_optimizer_step(self) -> None:
        pass

    def after_optimizer_step(self) -> None:
        pass


def _sum_per_member(ctx: BatchContext, names: list[str], fn: Callable) -> torch.Tensor:
    """Σ over tensors of fn(p) summed within each member: ``[k]``."""
    terms = [fn(ctx.params[n]).flatten(1).sum(1) for n in names]
    return torch.stack(terms).sum(0) if terms else torch.zeros(ctx.k, device=ctx.device)


class _L2Terms(torch.autograd.Function):
    """λᵢΣw² of each member ``[k]`` over the stacked weights ``ws``, whose gradient is formed
    as the lone run's autograd forms it, bit for bit, in one op per tensor: ``pow``'s backward
    there is ``g · (2·w¹)`` with ``g = 1·λ``, and ``w · (2λ)`` is the same product (doubling
    is exact), where the graph of the penalty would take a ``pow``, a ``mul`` and a sum's
    expand per tensor."""

    @staticmethod
    def forward(ctx: Any, lam: torch.Tensor, *ws: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(lam, *ws)
        return torch.stack([lam * w.pow(2).flatten(1).sum(1) for w in ws]).sum(0)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        lam, *ws = ctx.saved_tensors
        two_c = 2 * (g * lam)
        grads = [
            w * two_c.view(-1, *([1] * (w.dim() - 1))) if need else None
            for w, need in zip(ws, ctx.needs_input_grad[1:], strict=True)
        ]
        return (None, *grads)


class BatchedL2(BatchedRegularizer):
    spec_name = "l2"
    numeric = ("strength",)

    def penalty(self) -> torch.Tensor:
        if not hasattr(self, "lam"):  # fixed for the run: computed once
            self.names = self.ctx.penalized(tuple(self.regs_spec().exclude))
            self.lam = self.values(lambda r: r.spec.strength)
        if not self.names:
            return torch.zeros_like(self.lam)
        return _L2Terms.apply(self.lam, *(self.ctx.params[n] for n in self.names))

    def regs_spec(self) -> Any:
        return next(r for r in self.regs if r is not None).spec


class BatchedL1(BatchedRegularizer):
    spec_name = "l1"
    numeric = ("strength",)

    def _proximal(self) -> bool:
        return bool(next(r for r in self.regs if r is not None).spec.proximal)

    def penalty(self) -> torch.Tensor | None:
        if self._proximal():
            return None
        lam = self.values(lambda r: r.spec.strength)
        return lam * _sum_per_member(self.ctx, self.ctx.penalized(("bias", "norm")), torch.abs)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        if not self._proximal():
            return
        thr = self.scalars(lambda i, r: self.ctx.lr[i] * r.spec.strength)
        for n in self.ctx.penalized(("bias", "norm")):
            w = self.ctx.params[n]
            w.copy_(w.sign() * (w.abs() - self.ctx.view(thr, w)).clamp_min(0.0))


class BatchedElasticNet(BatchedRegularizer):
    spec_name = "elastic_net"
    numeric = ("l1", "l2")

    def penalty(self) -> torch.Tensor:
        names = self.ctx.penalized(("bias", "norm"))
        l1 = self.values(lambda r: r.spec.l1)
        l2 = self.values(lambda r: r.spec.l2)
        absum = _sum_per_member(self.ctx, names, torch.abs)
        sq = [l2 * self.ctx.params[n].pow(2).flatten(1).sum(1) for n in names]
        return l1 * absum + (torch.stack(sq).sum(0) if sq else torch.zeros_like(l2))


class BatchedWeightDecay(BatchedRegularizer):
    spec_name = "weight_decay"
    numeric = ("rate",)

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        factor = self.scalars(
            lambda i, r: 1.0 - self.ctx.lr[i] * r.spec.rate if self.ctx.active[i] else 1.0,
            absent=1.0,
        )
        for n in self.ctx.penalized(("bias", "norm")):
            w = self.ctx.params[n]
            w.mul_(self.ctx.view(factor, w))


class BatchedMaxNorm(BatchedRegularizer):
    spec_name = "max_norm"
    numeric = ("c",)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        c = self.values(lambda r: r.spec.c, absent=float("inf"))
        for n in self.ctx.constrained:
            w = self.ctx.params[n]
            rows = w.flatten(2)  # [k, out, fan_in]
            norms = rows.norm(dim=2, keepdim=True)
            cv = c.view(-1, 1, 1).to(w.dtype)
            # torch.renorm: rows above c are scaled by c / (norm + 1e-7)
            scale = torch.where(norms > cv, cv / (norms + 1e-7), torch.ones_like(norms))
            w.mul_(scale.view(*scale.shape[:2], *([1] * (w.dim() - 2))))


class BatchedEntropy(BatchedRegularizer):
    spec_name = "entropy"
    numeric = ("beta",)

    def penalty(self) -> torch.Tensor:
        out = self.ctx.outputs
        assert out is not None
        log_p = out.log_softmax(dim=-1)
        h = -(log_p.exp() * log_p).sum(dim=-1).mean(dim=1)
        mode = next(r for r in self.regs if r is not None).spec.mode
        sign = -1.0 if mode == "confidence_penalty" else 1.0
        return sign * self.values(lambda r: r.spec.beta) * h


class BatchedFlooding(BatchedRegularizer):
    spec_name = "flooding"
    numeric = ("level",)

    def transform_loss(self, loss: torch.Tensor) -> torch.Tensor:
        b = self.values(lambda r: r.spec.level)
        return (loss - b).abs() + b


def _draw(ctx: BatchContext, i: int, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(shape, dtype=dtype, device=ctx.device, generator=ctx.generators[i])


class BatchedInputNoise(BatchedRegularizer):
    spec_name = "input_noise"
    numeric = ("sigma",)

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        draws = self.present(lambda r: r.spec.sigma)
        if not draws:
            return x, y
        mode = next(r for r in self.regs if r is not None).spec.mode
        rows = list(x.unbind(0))
        for i, sigma in draws:
            z = _draw(self.ctx, i, rows[i].shape, x.dtype)
            rows[i] = rows[i] + sigma * z if mode == "additive" else rows[i] * (1.0 + sigma * z)
        return torch.stack(rows), y


class BatchedLabelSmoothing(BatchedRegularizer):
    spec_name = "label_smoothing"
    numeric = ("epsilon", "rho")

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        K = self.ctx.num_classes
        if not hasattr(self, "keep"):  # fixed for the run: computed once
            self.keep = self.scalars(lambda i, r: 1.0 - r.epsilon, absent=1.0).view(-1, 1, 1)
            self.spread = self.scalars(lambda i, r: r.epsilon / K).view(-1, 1, 1)
            self.top = self.keep + self.spread
        if y.is_floating_point():
            return x, y * self.keep.to(y.dtype) + self.spread.to(y.dtype)
        # onehot·(1 − ε) + ε/K without the one-hot: ε/K everywhere, (1 − ε) + ε/K at the
        # label, the very floats of the product and sum (1·a = a, 0·a + b = b exactly)
        dtype = torch.get_default_dtype()
        k, b = y.shape[:2]
        p = self.spread.to(dtype).expand(k, b, K).clone()
        return x, p.scatter_(2, y.unsqueeze(-1), self.top.to(dtype).expand(k, b, 1))


def _unit_op(
    ctx: BatchContext, h: torch.Tensor, draws: list[tuple[int, float]], make: Callable
) -> list[torch.Tensor | None]:
    """Each drawing member's own tensor from ``make(i, value, h_i)``; None for the others."""
    out: list[torch.Tensor | None] = [None] * ctx.k
    for i, v in draws:
        out[i] = make(i, v, h[i])
    return out


def _stack_or(parts: list[torch.Tensor | None], h: torch.Tensor, fill: float) -> torch.Tensor:
    ref = next(p for p in parts if p is not None)
    return torch.stack([p if p is not None else torch.full_like(ref, fill) for p in parts])


class BatchedDropout(BatchedRegularizer):
    spec_name = "dropout"
    numeric = ("p", "input_p")
    slots = True

    def _draws(
        self, field_: str
    ) -> tuple[list[tuple[int, float, torch.Generator]], Any, dict[torch.dtype, torch.Tensor]]:
        """The members that draw in this slot (member, 1 − p, its stream), ``[k]`` of 1 − p in
        float64 (1 where a member does not draw) and, filled by ``slot`` per dtype, ``[k]`` of
        1/(1 − p) in that dtype, for the current active set: computed once for each set
        (members stop or are cancelled between steps only)."""
        cache: dict[tuple[str, tuple[bool, ...]], Any] = self.__dict__.setdefault("cache", {})
        key = (field_, tuple(self.ctx.active))
        if key not in cache:
            draws = self.present(lambda r: getattr(r.spec, field_))
            keep = [1.0] * self.ctx.k
            for i, p in draws:
                keep[i] = 1 - p
            cache[key] = (  # float64: bernoulli_ compares with the double 1 − p
                [(i, 1 - p, self.ctx.generators[i]) for i, p in draws],
                torch.tensor(keep, dtype=torch.float64, device=self.ctx.device),
                {},
            )
        return cache[key]

    def slot(self, kind: str, h: torch.Tensor) -> torch.Tensor:
        draws, keep, scales = self._draws("input_p" if kind == "input" else "p")
        if not draws:
            return h
        shape = (-1, *([1] * (h.dim() - 1)))
        everyone = len(draws) == self.ctx.k
        if h.device.type == "cpu" and uniform_draws_are_bernoulli():
            # the uniforms ATen's CPU bernoulli_(1 − p) compares with 1 − p, drawn by the
            # faster uniform_ (the same random64 per element, the same stream after), and the
            # noise it would divide: {0, 1} / (1 − p) ∈ {0, 1/(1 − p)}, the same floats
            u = (
                h.new_empty(h.shape, dtype=torch.float64)
                if everyone
                else h.new_zeros(h.shape, dtype=torch.float64)
            )
            rows = u.unbind(0)
            for i, _q, g in draws:
                rows[i].uniform_(generator=g)
            # u < 1 − p as bytes (1 where no draw: u = 0 keeps every unit), then {0, 1} times
            # 1/(1 − p) in the float 1 − p ATen takes: the very floats of {0, 1}/(1 − p); this
            # slot took 61 ms an epoch at 32 members (most of it the draws), 66 ms when it
            # compared into a float buffer and divided that
            kept = torch.lt(u, keep.view(shape)).view(torch.uint8)
            if h.dtype not in scales:
                kf = keep.to(h.dtype)
                scales[h.dtype] = torch.ones_like(kf).div_(kf)
            return h * kept.to(h.dtype).mul_(scales[h.dtype].view(shape))
        # as ATen's dropout: noise.bernoulli_(1 − p).div_(1 − p), then input · noise; the
        # draws go straight into one [k, ...] buffer, divided once (the same float division)
        noise = torch.empty_like(h) if everyone else torch.ones_like(h)
        rows = noise.unbind(0)
        for i, q, g in draws:
            rows[i].bernoulli_(q, generator=g)
        return h * noise.div_(keep.to(h.dtype).view(shape))


@functools.cache
def uniform_draws_are_bernoulli() -> bool:
    """Whether ``t.bernoulli_(q, generator=g)`` on CPU is ``(u < q)`` for ``u`` drawn by
    ``uniform_`` in float64 from the same generator, leaving it in the same state: ATen's
    default CPU kernel (one random64 per element, 53 bits, compared with q). Checked once
    here, not assumed: on Intel CPUs with MKL, ``bernoulli_`` seeds MKL's own stream instead,
    and there the batched dropout keeps calling ``bernoulli_``."""
    g = torch.Generator().manual_seed(20260)
    start = g.get_state()
    mask = torch.empty(37, 29).bernoulli_(0.7, generator=g)
    after = g.get_state()
    g.set_state(start)
    u = torch.empty(37, 29, dtype=torch.float64).uniform_(generator=g)
    return torch.equal(mask, (u < 0.7).to(mask.dtype)) and torch.equal(after, g.get_state())


class BatchedGaussianDropout(BatchedRegularizer):
    spec_name = "gaussian_dropout"
    numeric = ("p",)
    slots = True

    def slot(self, kind: str, h: torch.Tensor) -> torch.Tensor:
        if kind == "input":
            return h
        draws = self.present(lambda r: r.spec.p)
        if not draws:
            return h

        def factor(i: int, p: float, hi: torch.Tensor) -> torch.Tensor:
            return 1.0 + gaussian_dropout_sigma(p) * _draw(self.ctx, i, hi.shape, hi.dtype)

        return h * _stack_or(_unit_op(self.ctx, h, draws, factor), h, 1.0)


class BatchedHiddenNoise(BatchedRegularizer):
    spec_name = "hidden_noise"
    numeric = ("sigma",)
    slots = True

    def slot(self, kind: str, h: torch.Tensor) -> torch.Tensor:
        if kind == "input":
            return h
        draws = self.present(lambda r: r.spec.sigma)
        if not draws:
            return h

        def noise(i: int, sigma: float, hi: torch.Tensor) -> torch.Tensor:
            return sigma * _draw(self.ctx, i, hi.shape, hi.dtype)

        return h + _stack_or(_unit_op(self.ctx, h, draws, noise), h, 0.0)


class BatchedWeightNoise(BatchedRegularizer):
    spec_name = "weight_noise"
    numeric = ("sigma",)

    @torch.no_grad()
    def before_forward(self) -> None:
        draws = self.present(lambda r: r.spec.sigma)
        names = self.ctx.penalized(("bias", "norm"))
        self.clean = [self.ctx.params[n].detach().clone() for n in names] if draws else None
        for n in names:
            w = self.ctx.params[n]
            for i, sigma in draws:
                w[i].add_(_draw(self.ctx, i, w[i].shape, w.dtype), alpha=sigma)

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        clean: list[torch.Tensor] | None = getattr(self, "clean", None)
        if clean is None:
            return
        for n, c in zip(self.ctx.penalized(("bias", "norm")), clean, strict=True):
            self.ctx.params[n].copy_(c)
        self.clean = None


class BatchedEarlyStopping(BatchedRegularizer):
    """Nothing per step: the run asks each member's own ``EarlyStopping`` at the end of an
    epoch; a member that stops is frozen and gets its best weights back at the end."""

    spec_name = "early_stopping"
    numeric = ("monitor", "patience", "min_delta", "mode", "restore_best")


@contextmanager
def global_rng(g: torch.Generator) -> Iterator[None]:
    """Run with the global RNG of ``g``'s device set to ``g``'s state, and keep what was drawn
    in ``g``: for draws torch makes only from the global generator (``torch.distributions``)."""
    cuda = g.device.type == "cuda"
    get = torch.cuda.get_rng_state if cuda else torch.get_rng_state
    set_ = torch.cuda.set_rng_state if cuda else torch.set_rng_state
    saved = get()
    set_(g.get_state())
    try:
        yield
    finally:
        g.set_state(get())
        set_(saved)


class BatchedDisturbLabel(BatchedRegularizer):
    """The lone run draws even at α = 0, so a member draws whenever it has the regularizer."""

    spec_name = "disturb_label"
    numeric = ("alpha",)

    def __init__(self, regs: list[Regularizer | None], ctx: BatchContext):
        super().__init__(regs, ctx)
        self.changed = torch.zeros(ctx.k, dtype=torch.long, device=ctx.device)
        self.seen = 0

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        K = self.ctx.num_classes
        rows = list(y.unbind(0))
        for i, r in enumerate(self.regs):
            if r is None or not self.ctx.active[i]:
                continue
            g, n = self.ctx.generators[i], y.shape[1]
            replace = torch.rand((n,), device=y.device, generator=g) < r.spec.alpha
            drawn = torch.randint(0, K, (n,), device=y.device, generator=g)
            if y.is_floating_point():
                new = torch.where(replace[:, None], F.one_hot(drawn, K).to(y.dtype), rows[i])
                self.changed[i] += (new != rows[i]).any(1).sum()
            else:
                new = torch.where(replace, drawn, rows[i])
                self.changed[i] += (new != rows[i]).sum()
            rows[i] = new
        self.seen += y.shape[1]
        return x, torch.stack(rows)

    def extra_metrics(self) -> list[dict[str, float]]:
        changed = self.changed.tolist()
        return [
            {"disturb_label_changed": changed[i] / self.seen} if r is not None and self.seen else {}
            for i, r in enumerate(self.regs)
        ]

    def on_epoch_end(self) -> None:
        self.changed.zero_()
        self.seen = 0


class BatchedMixup(BatchedRegularizer):
    spec_name = "mixup"
    numeric = ("alpha",)

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from regcore.regularizers.mixup import sample_lambda

        k, b = x.shape[:2]
        lam = torch.ones(k, dtype=x.dtype, device=x.device)
        perm = torch.arange(b, device=x.device).repeat(k, 1)
        for i, r in enumerate(self.regs):
            if r is not None and self.ctx.active[i]:
                with global_rng(self.ctx.generators[i]):  # as alone: Beta, then randperm
                    lam[i] = sample_lambda(r.spec.alpha, x.device).to(x.dtype)
                    perm[i] = torch.randperm(b, device=x.device)
        if self.ctx.task == "classification" and not y.is_floating_point():
            y = F.one_hot(y, self.ctx.num_classes).to(x.dtype)
        rows = torch.arange(k, device=x.device)[:, None]
        lx, ly = lam.view(-1, *([1] * (x.dim() - 1))), lam.view(-1, *([1] * (y.dim() - 1)))
        return lx * x + (1 - lx) * x[rows, perm], ly * y + (1 - ly) * y[rows, perm]


class BatchedActivationL1(BatchedRegularizer):
    spec_name = "activation_l1"
    numeric = ("strength",)
    slots = True

    def __init__(self, regs: list[Regularizer | None], ctx: BatchContext):
        super().__init__(regs, ctx)
        self.acts: list[torch.Tensor] = []
        self.last: list[torch.Tensor] = []

    def catch(self, kind: str, h: torch.Tensor) -> None:
        if kind != "input":
            self.acts.append(h)

    def penalty(self) -> torch.Tensor:
        acts, self.acts = self.acts, []
        self.last = [h.detach() for h in acts]
        lam = self.values(lambda r: r.spec.strength)
        if not acts:
            return torch.zeros_like(lam)
        batch = acts[0].shape[1]
        total = torch.stack([h.abs().flatten(1).sum(1) for h in acts]).sum(0)
        return lam * total / batch

    def extra_metrics(self) -> list[dict[str, float]]:
        if not self.last:
            return [{} for _ in self.regs]
        zeros = torch.stack([(h == 0).flatten(1).sum(1) for h in self.last]).sum(0).tolist()
        total = sum(h[0].numel() for h in self.last)
        return [
            {"activation_sparsity_train_batch": zeros[i] / total} if r is not None else {}
            for i, r in enumerate(self.regs)
        ]


class PerMemberDataTransform(BatchedRegularizer):
    """A regularizer whose only step hook is ``transform_batch`` on rows (augmentations): each
    member's own lone regularizer transforms its batch, drawing through its own stream, so every
    field may differ between members. The model part of the step stays batched."""

    numeric: ClassVar[tuple[str, ...]] = ("*",)  # every field

    def transform_batch(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = list(x.unbind(0)), list(y.unbind(0))
        targets = self.ctx.task == "classification" and any(
            r is not None and self.ctx.active[i] for i, r in enumerate(self.regs)
        )
        for i, r in enumerate(self.regs):
            if r is None or not self.ctx.active[i]:
                continue
            with global_rng(self.ctx.generators[i]):
                xs[i], ys[i] = r.transform_batch(xs[i], ys[i], None)  # type: ignore[arg-type]
        if targets and len({t.dim() for t in ys}) > 1:  # some members now hold distributions
            K = self.ctx.num_classes
            ys = [t if t.is_floating_point() else F.one_hot(t, K).to(x.dtype) for t in ys]
        return torch.stack(xs), torch.stack(ys)


class BatchedCutout(PerMemberDataTransform):
    spec_name = "cutout"


class BatchedCutMix(PerMemberDataTransform):
    spec_name = "cutmix"


class BatchedAugment(PerMemberDataTransform):
    spec_name = "augment"


class BatchedAdversarial(BatchedRegularizer):
    """FGSM or PGD per member: the attack's forwards run for the members that have the term
    (α < 1) only, so only they draw dropout masks there, as alone."""

    spec_name = "adversarial"
    numeric = ("epsilon", "alpha", "step_size")

    def penalty(self) -> torch.Tensor | None:
        ctx = self.ctx
        assert ctx.forward is not None and ctx.loss is not None
        forward, loss = ctx.forward, ctx.loss
        attacking = [
            r is not None and ctx.active[i] and r.spec.alpha != 1.0 for i, r in enumerate(self.regs)
        ]
        if not any(attacking):
            return None
        x0, y, clean = ctx.scratch["x"].detach(), ctx.scratch["y"], ctx.scratch["data_loss"]
        spec = next(r for r in self.regs if r is not None).spec
        eps = self.scalars(lambda i, r: r.spec.epsilon)
        e = eps.view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
        saved, ctx.active = ctx.active, attacking
        try:

            def grad_sign(xa: torch.Tensor) -> torch.Tensor:
                xa = xa.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(loss(forward(xa), y).sum(), xa)
                return g.sign()

            if spec.method == "fgsm":
                adv = (x0 + e * grad_sign(x0)).detach()
            else:
                size = (
                    self.scalars(
                        lambda i, r: (
                            2.5 * r.spec.epsilon / r.spec.steps
                            if r.spec.step_size is None
                            else r.spec.step_size
                        )
                    )
                    .view_as(e.flatten())
                    .view(e.shape)
                    .to(x0.dtype)
                )
                adv = x0
                for _ in range(spec.steps):
                    adv = adv + size * grad_sign(adv)
                    adv = x0 + torch.maximum(torch.minimum(adv - x0, e), -e)
                adv = adv.detach()
            adv_loss = loss(forward(adv), y)
        finally:
            ctx.active = saved
        weight = self.scalars(lambda i, r: (1.0 - r.spec.alpha) if attacking[i] else 0.0)
        return weight * (adv_loss - clean)


#: every batchable regularizer, by spec name
BATCHED: dict[str, type[BatchedRegularizer]] = {
    cls.spec_name: cls
    for cls in (
        BatchedL2,
        BatchedL1,
        BatchedElasticNet,
        BatchedWeightDecay,
        BatchedMaxNorm,
        BatchedEntropy,
        BatchedFlooding,
        BatchedInputNoise,
        BatchedLabelSmoothing,
        BatchedDropout,
        BatchedGaussianDropout,
        BatchedHiddenNoise,
        BatchedWeightNoise,
        BatchedEarlyStopping,
        BatchedDisturbLabel,
        BatchedMixup,
        BatchedActivationL1,
        BatchedCutout,
        BatchedCutMix,
        BatchedAugment,
        BatchedAdversarial,
    )
}


def why_not_batchable(name: str, specs: Sequence[RegularizerSpec | None]) -> str | None:
    """None when members' ``name`` specs (None where absent) can batch, else the reason."""
    cls = BATCHED.get(name)
    if cls is None:
        spec_class = BY_NAME.get(name)
        because = spec_class.not_batched_because if spec_class else None
        return f"regularizer {name} is not batched" + (f": {because}" if because else "")
    present = [s for s in specs if s is not None]
    if name == "l2" and any(getattr(s, "per_layer", None) for s in present):
        return "l2 per_layer strengths are not batched"
    if name == "early_stopping" and any(getattr(s, "retrain_on_train_val", False) for s in present):
        return "early_stopping retrain_on_train_val runs per model"
    if name == "early_stopping" or cls.numeric == ("*",):  # each member's own object decides
        return None
    fixed = [s.model_dump(exclude=set(cls.numeric)) for s in present]
    differ = sorted(k for k in fixed[0] if any(f[k] != fixed[0][k] for f in fixed))
    if differ:
        return f"members' {name} differ in {', '.join(differ)} (only {', '.join(cls.numeric)} may)"
    return None
