"""Members with their own hyperparameters trained together as one batched model.

``BatchedMembers`` is the engine: k member specs of one architecture, data and epoch count, each
with its own seed, bagging resample, lr, momentum, schedule and numeric regularizer strengths
(``regcore/regularizers/batched.py``), trained as one stacked model (``stacked.py``). Each
member keeps its own status: it may stop early (frozen and masked, its best weights restored),
be cancelled, or diverge and fail, while the others go on. Every split is evaluated once per
epoch for all members; the combined ensemble's metrics come from the same outputs.

Two drivers use it: ``batched_run.BatchedEnsembleRun`` (one ensemble experiment, its members
and combined metrics under one reporter) and ``pack.run_pack`` (independent runs, each reported
under its own identity). ``why_not_batched`` / ``why_not_batched_members`` say why a
spec cannot batch; such specs train one member after another (``EnsembleRun``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from regcore.data import Dataset
from regcore.ensemble.members import Member, bootstrap_indices, build_trainer, with_train
from regcore.ensemble.stacked import EXPLICIT_MODELS, VMAP_MODELS, StackedModel, StackedOptimizer
from regcore.regularizers.batched import BATCHED, BatchContext, why_not_batchable
from regcore.regularizers.early_stopping import EarlyStopping
from regcore.spec import ExperimentSpec
from regcore.training.allocator import keep_freed_memory
from regcore.training.metrics import ECE_BINS, SPARSITY_THRESHOLD

#: the parts of a member spec that must be the same for every member of one batched run
SHARED_TRAIN = ("optimizer", "nesterov", "betas", "epochs", "batch_size")


def why_not_batched(spec: ExperimentSpec) -> str | None:
    """None when the ensemble can train as one batched model, else the reason it cannot."""
    ens = spec.ensemble
    if ens.size < 2:
        return "a single member"
    if ens.snapshot is not None:
        return "snapshot members come from one run"
    if spec.mc_dropout or spec.multitask or spec.pretrain or spec.self_supervised:
        return "inference and transfer sections run per model"
    return why_not_batched_members(spec.member_specs())


def why_not_batched_members(specs: list[ExperimentSpec]) -> str | None:
    """None when these member specs can train as one batched model, else why not."""
    first = specs[0]
    for s in specs:
        if s.model != first.model:
            return "members differ in their model"
        if s.data != first.data:
            return "members differ in their data"
        for key in SHARED_TRAIN:
            if getattr(s.train, key) != getattr(first.train, key):
                return f"members differ in train.{key}"
        if s.measure:
            return "measures run per model"
        if s.train.steps is not None:
            return "a train.steps budget runs per model"
        if s.train.stop_when_memorised:
            return "train.stop_when_memorised runs per model"
        if s.mc_dropout or s.multitask or s.pretrain or s.self_supervised:
            return "inference and transfer sections run per model"
    model = first.model.name
    if model not in EXPLICIT_MODELS | VMAP_MODELS:
        return f"model {model} is not batched"
    if getattr(first.model, "batch_norm", False) and model not in EXPLICIT_MODELS:
        return f"batch norm in model {model} is not batched (the mlp's is)"
    order: list[str] = []
    for s in specs:
        names = [r.name for r in s.regularizers]
        if len(set(names)) != len(names):
            return "a member lists a regularizer twice"
        order += [n for n in names if n not in order]
    for s in specs:
        names = [r.name for r in s.regularizers]
        if names != [n for n in order if n in names]:
            return "members list their regularizers in different orders"
    for name in order:
        specs_of = [next((r for r in s.regularizers if r.name == name), None) for s in specs]
        reason = why_not_batchable(name, specs_of)
        if reason:
            return reason
        if name == "adversarial" and "activation_l1" in order:
            return "adversarial's extra forwards would feed activation_l1 (one by one)"
        if BATCHED[name].slots and model not in EXPLICIT_MODELS:
            return f"regularizer {name} acts inside model {model}, which is vmapped"
    return None


def regularizer_order(specs: list[ExperimentSpec]) -> list[str]:
    order: list[str] = []
    for s in specs:
        order += [r.name for r in s.regularizers if r.name not in order]
    return order


@dataclass
class MemberStatus:
    """Where one member stands: ``running``, ``stopped`` (early stopping), ``cancelled`` or
    ``failed`` (diverged); only running members train."""

    status: str = "running"
    epochs_run: int = 0
    reason: str | None = None
    best: tuple[float, int] | None = None  # (val_loss, epoch), as the lone Trainer's ``best``
    metrics: dict[str, float] = field(default_factory=dict)  # its last epoch's metrics

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "epochs_run": self.epochs_run,
            "reason": self.reason,
            "best": list(self.best) if self.best else None,
            "metrics": self.metrics,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MemberStatus:
        best = (float(d["best"][0]), int(d["best"][1])) if d["best"] else None
        metrics = {k: float(v) for k, v in d.get("metrics", {}).items()}
        return cls(d["status"], int(d["epochs_run"]), d["reason"], best, metrics)


class _MemberView:
    """Member i's slice as the ``state_dict``/``load_state_dict`` early stopping saves/restores."""

    def __init__(self, stack: StackedModel, i: int):
        self.stack, self.i = stack, i

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.stack.member_state(self.i)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.stack.load_member(self.i, state)


class BatchedMembers:
    """The batched engine: see the module docstring."""

    def __init__(
        self,
        specs: list[ExperimentSpec],
        data: Dataset,
        *,
        bagging: bool = False,
        device: torch.device,
        threads: int | None = None,
    ):
        reason = why_not_batched_members(specs)
        if reason is not None:
            raise ValueError(f"these members cannot train batched: {reason}")
        self.specs = specs
        self.k = len(specs)
        self.device = device
        if device.type == "cpu":
            keep_freed_memory()  # its per-step tensors are around malloc's mmap threshold
        self.data = data  # shared; each member's train split is a resample of its rows
        n = len(data.train)
        rows = [
            bootstrap_indices(n, s.seed, device) if bagging else torch.arange(n, device=device)
            for s in specs
        ]
        self.bagging = bagging
        self.train_rows = torch.stack(rows)  # [k, N] rows of data.train
        # each member built by its own lone Trainer: its init, batch order and RNG state
        self.members: list[Member] = []
        for i, s in enumerate(specs):
            mdata = data
            if bagging:
                mdata = with_train(
                    data, type(data.train)(data.train.x[rows[i]], data.train.y[rows[i]]), rows[i]
                )
            t = build_trainer(s, Path("."), mdata, None, device=device, threads=threads)
            m = Member(t)
            m.leave()
            self.members.append(m)
        trainers = [m.trainer for m in self.members]
        self.threads = trainers[0].threads
        self.generators = [self._generator(m) for m in self.members]
        self.stack = StackedModel([t.model for t in trainers])
        tr = specs[0].train
        self.optimizer = StackedOptimizer(
            self.stack.params,
            tr.optimizer,
            [s.train.momentum for s in specs],
            tr.nesterov,
            (float(tr.betas[0]), float(tr.betas[1])),
        )
        self.status = [MemberStatus() for _ in specs]
        self.ctx = BatchContext(
            k=self.k,
            device=device,
            task=data.task,
            num_classes=data.num_classes,
            params=self.stack.params,
            penalized=self.stack.penalized,
            constrained=self.stack.constrained,
            generators=self.generators,
            active=[True] * self.k,
            lr=self.current_lr(),
        )
        # the adversarial attack's forwards leave batch-norm statistics alone, as alone
        self.ctx.forward = lambda x: self.stack.forward(x, train=True, update_stats=False)
        self.ctx.loss = lambda out, y: member_loss(out, y, data.task)
        self.order = regularizer_order(specs)
        self.regs = []
        for name in self.order:
            lone = [next((r for r in t.regs if r.name == name), None) for t in trainers]
            self.regs.append(BATCHED[name](lone, self.ctx))
        self.stack.slot_regs = [r for r in self.regs if BATCHED[r.spec_name].slots]
        self.early = [
            next((r for r in t.regs if isinstance(r, EarlyStopping)), None) for t in trainers
        ]
        self.epoch = 0
        self.timings = {"train_s": 0.0, "eval_s": 0.0, "checkpoint_s": 0.0}

    def _generator(self, m: Member) -> torch.Generator:
        """The stream the member's lone run draws its noise from (the global one, there)."""
        if self.device.type == "cuda":
            return torch.Generator(device=self.device).manual_seed(m.trainer.spec.seed)
        g = torch.Generator()
        g.set_state(m.rng["torch"])
        return g

    def current_lr(self) -> list[float]:
        return [float(m.trainer.optimizer.param_groups[0]["lr"]) for m in self.members]

    @property
    def active(self) -> list[bool]:
        return [s.status == "running" for s in self.status]

    # --- one epoch ------------------------------------------------------------------------
    def train_epoch(
        self,
        cancel_all: Callable[[], bool] | None = None,
        cancel: Callable[[int], bool] | None = None,
    ) -> bool:
        """Train every running member one epoch. Between steps, ``cancel_all()`` True stops
        the epoch (not counted, as a lone run's cancel) and returns True; ``cancel(i)`` is
        asked for each running member, True cancels that member alone (True is returned when
        none is left)."""
        self.ctx.active = self.active
        active_t = torch.tensor(self.ctx.active, device=self.device)
        n, bs = self.train_rows.shape[1], self.specs[0].train.batch_size
        orders = torch.stack(
            [torch.randperm(n, generator=m.trainer.shuffle) for m in self.members]
        ).to(self.device)
        # each member's rows of data.train in its batch order, for the whole epoch at once
        epoch_rows = self.train_rows.gather(1, orders)
        full_x, full_y = self.data.train.x, self.data.train.y
        sums: dict[str, list[torch.Tensor]] = {}
        batches = 0
        for start in range(0, n, bs):
            if cancel_all is not None and cancel_all():
                return True
            if cancel is not None:
                for i in range(self.k):
                    if self.status[i].status == "running" and cancel(i):
                        self.status[i].status = "cancelled"
                        self.status[i].reason = f"cancelled during epoch {self.epoch + 1}"
                if not any(self.active):
                    return True
                if self.ctx.active != self.active:
                    self.ctx.active = self.active
                    active_t = torch.tensor(self.ctx.active, device=self.device)
            self.stack.active = self.ctx.active
            rows = epoch_rows[:, start : start + bs].reshape(-1)
            b = rows.numel() // self.k
            x = full_x.index_select(0, rows).view(self.k, b, *full_x.shape[1:])
            y = full_y.index_select(0, rows).view(self.k, b, *full_y.shape[1:])
            for reg in self.regs:
                x, y = reg.transform_batch(x, y)
            for reg in self.regs:
                reg.before_forward()
            out = self.ctx.outputs = self.stack.forward(x, train=True)
            loss = member_loss(out, y, self.data.task)
            self.ctx.scratch.update(x=x, y=y, data_loss=loss)
            for reg in self.regs:
                loss = reg.transform_loss(loss)
            for reg in self.regs:
                term = reg.penalty()
                if term is not None:
                    loss = loss + term
                    sums.setdefault(reg.spec_name, []).append(term.detach())
            sums.setdefault("train_batch_loss", []).append(loss.detach())
            self.optimizer.zero_grad()
            torch.where(active_t, loss, torch.zeros_like(loss)).sum().backward()
            for reg in self.regs:
                reg.before_optimizer_step()
            self.optimizer.step(self.ctx.lr, self.ctx.active)
            for reg in self.regs:
                reg.after_optimizer_step()
            self.ctx.outputs = None
            self.ctx.scratch.clear()
            batches += 1
        means = {k: (torch.stack(v).sum(0) / batches).tolist() for k, v in sums.items()}
        self.epoch += 1
        self.batch_metrics: list[dict[str, float]] = []
        for i, st in enumerate(self.status):
            bm: dict[str, float] = {}
            for key, vals in means.items():
                if key == "train_batch_loss":
                    bm[key] = vals[i]
                elif any(r.name == key for r in self.specs[i].regularizers):
                    bm[f"penalty_{key}"] = vals[i]
            self.batch_metrics.append(bm)
            if st.status != "running":
                continue
            st.epochs_run = self.epoch
            bad = next((k for k, v in bm.items() if not math.isfinite(v)), None)
            if bad is not None:
                st.status, st.reason = "failed", f"{bad} became {bm[bad]} in epoch {self.epoch}"
        return False

    @torch.no_grad()
    def evaluate(
        self, bagged: bool = True
    ) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
        """Every member's lone-run metrics from one pass over each split; and the outputs.
        ``bagged``: a member's train metrics on its own resample (per epoch, as its Trainer
        reports them), else on the whole train split (the final summary, as one by one)."""
        d, task = self.data, self.data.task
        # the outputs are the same while no weight or statistic has changed since the last
        # call (``finish`` after the last epoch's evaluation, as a lone run reuses its own)
        state = [*self.stack.params.values(), *self.stack.buffers.values()]
        versions = [t._version for t in state]
        cached = getattr(self, "_eval_cache", None)
        if (
            cached is not None
            and len(cached[0]) == len(state)
            and all(a is b for a, b in zip(cached[0], state, strict=True))
            and cached[1] == versions
        ):
            outs = cached[2]
        else:
            outs = {s: self.stack.predict(getattr(d, s).x) for s in ("train", "val", "test")}
            self._eval_cache = (state, versions, outs)
        # a member's train metrics: on its own resample's rows (``rows``), picked from the
        # per-row values over the shared train split
        rows = self.train_rows if self.bagging and bagged else None
        vals: dict[str, list[float]] = {}
        for split in ("train", "val", "test"):
            out, y = outs[split], getattr(d, split).y
            pick = rows if split == "train" else None
            if task != "classification":
                if pick is not None:
                    at = pick.view(*pick.shape, *[1] * (out.dim() - 2))
                    out, yk = out.gather(1, at.expand(-1, -1, *out.shape[2:])), y[pick]
                else:
                    yk = y.expand(self.k, *y.shape)
                vals[f"{split}_loss"] = member_loss(out, yk, task).tolist()
                continue
            row_loss, e = _eval_cross_entropy(out, y)
            correct = (out.argmax(-1) == y).float()
            if pick is not None:
                row_loss, correct = row_loss.gather(1, pick), correct.gather(1, pick)
            vals[f"{split}_loss"] = row_loss.mean(1).tolist()
            vals[f"{split}_acc"] = correct.mean(1).tolist()
            if split == "test":
                probs = e.div_(e.sum(-1, keepdim=True))  # softmax: the shifted exps, normalised
                conf, pred = probs.max(-1)
                vals["confidence"] = conf.mean(1).tolist()
                vals["ece"] = _calibration_errors(conf, pred == y).tolist()
        per = [{key: v[i] for key, v in vals.items()} for i in range(self.k)]
        for m in per:
            m["gen_gap"] = m["val_loss"] - m["train_loss"]
        flat = self._weights()
        if flat is not None:
            l2, l1 = flat.norm(dim=1).tolist(), flat.abs().sum(1).tolist()
            sp = (flat.abs() < SPARSITY_THRESHOLD).float().mean(1).tolist()
            for i, m in enumerate(per):
                m.update(weight_l2=l2[i], weight_l1=l1[i], sparsity=sp[i])
        return per, outs

    def _weights(self) -> torch.Tensor | None:
        names = self.stack.penalized(("bias", "norm"))
        if not names:
            return None
        return torch.cat([self.stack.params[n].detach().flatten(1) for n in names], dim=1)

    def end_epoch(self, per: list[dict[str, float]]) -> list[dict[str, float]]:
        """Complete each running member's epoch as its lone Trainer does: batch metrics, the
        lr schedule, divergence of the evaluation, best epoch, early stopping. Returns the
        metrics of the members that ran this epoch (empty dicts for the others)."""
        extra: list[dict[str, float]] = [{} for _ in range(self.k)]
        for reg in self.regs:
            for i, em in enumerate(reg.extra_metrics()):
                extra[i].update(em)
            reg.on_epoch_end()
        result: list[dict[str, float]] = []
        for i, (st, m) in enumerate(zip(self.status, self.members, strict=True)):
            if st.epochs_run != self.epoch or st.status not in ("running", "failed"):
                result.append({})
                continue
            metrics = {**per[i], **self.batch_metrics[i], **extra[i]}
            t = m.trainer
            if t.scheduler is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # its optimizer never steps
                    t.scheduler.step()
            metrics["lr"] = float(t.optimizer.param_groups[0]["lr"])
            st.metrics = metrics
            result.append(metrics)
            if st.status == "failed":
                continue
            if not math.isfinite(metrics["train_loss"]):
                st.status = "failed"
                st.reason = f"train_loss became {metrics['train_loss']} in epoch {self.epoch}"
                continue
            es = self.early[i]
            if es is not None:
                view = _MemberView(self.stack, i)  # what it saves and restores: member i
                es.on_epoch_end(self.epoch, metrics, view)  # type: ignore[arg-type]
            if st.best is None or metrics["val_loss"] < st.best[0]:
                st.best = (metrics["val_loss"], self.epoch)
            if es is not None and es.should_stop():
                st.status, st.reason = "stopped", f"early stopping at epoch {self.epoch}"
        self.ctx.lr = self.current_lr()
        return result

    @property
    def done(self) -> bool:
        return not any(self.active) or self.epoch >= self.specs[0].train.epochs

    def finish(self, which: Sequence[int] | None = None) -> list[dict[str, float]]:
        """Restore early-stopped members' best weights and measure every member once; with
        ``which``, only those members (in that order: members that ended while the others
        train on; an ended member is frozen, so measuring it again at the end gives the same)."""
        members = range(self.k) if which is None else which
        for i in members:
            es = self.early[i]
            if es is not None:
                es.finalize(_MemberView(self.stack, i))  # type: ignore[arg-type]
        per: list[dict[str, float]] = [{}] * self.k
        if self.epoch:
            per, outs = self.evaluate(bagged=False)
            if which is None:
                self.final_outputs = outs
        elif which is None:
            self.final_outputs = {}
        out = []
        for i in members:
            st, es = self.status[i], self.early[i]
            mm = dict(per[i]) if st.epochs_run else {}
            best = es.best_epoch() if es is not None else None
            if best is None and st.best is not None:
                best = st.best[1]
            mm.update(epochs_run=float(st.epochs_run), best_epoch=float(best or 0))
            out.append(mm)
        return out

    def models(self) -> list[torch.nn.Module]:
        return self.stack.unstack([m.trainer.model for m in self.members])

    # --- checkpoints ----------------------------------------------------------------------
    def member_train_state(self, i: int) -> dict[str, Any]:
        """Member i's whole slice of the engine's state beside its weights (``member_weights``):
        the epoch, its status, its slice of the optimizer state, its schedule, its shuffle and
        noise generators and its early stopping. Tensors and JSON only (a checkpoint's
        ``train_state``); ``load_members`` takes it back."""
        st, t, es = self.status[i], self.members[i].trainer, self.early[i]
        return {
            "epoch": self.epoch,
            **st.to_json(),
            "optimizer": self.optimizer.member_state_dict(i),
            "lr": [float(g["lr"]) for g in t.optimizer.param_groups],  # the schedule's, now
            "scheduler": t.scheduler.state_dict() if t.scheduler else None,
            "shuffle": t.shuffle.get_state(),
            "noise": self.generators[i].get_state(),
            "early_stopping": es.state_dict() if es is not None else None,
        }

    def member_weights(self, i: int) -> dict[str, torch.Tensor]:
        return self.stack.member_state(i)

    def weights(self) -> dict[str, torch.Tensor]:
        return {
            f"member{i}.{k}": v for i in range(self.k) for k, v in self.member_weights(i).items()
        }

    def train_state(self) -> dict[str, Any]:
        """Every member's ``member_train_state`` (with ``weights()``, what ``load`` takes)."""
        return {
            "batched": True,
            "epoch": self.epoch,
            "members": [self.member_train_state(i) for i in range(self.k)],
        }

    def load(self, weights: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Load what ``weights()`` and ``train_state()`` saved (through ``load_members``)."""
        members = state["members"]
        if "optimizer" in state:  # written before the optimizer state was kept per member
            split = StackedOptimizer.split_state_dict(state["optimizer"], self.k)
            members = [
                {"epoch": state["epoch"], **ms, "optimizer": o}
                for ms, o in zip(members, split, strict=True)
            ]
        parts = []
        for i, ms in enumerate(members):
            prefix = f"member{i}."
            parts.append(
                ({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}, ms)
            )
        self.load_members(parts)

    def load_members(self, members: list[tuple[dict[str, torch.Tensor], dict[str, Any]]]) -> None:
        """Load each member from its own ``(member_weights, member_train_state)``, which may
        come from different checkpoints. They must fit together: one per member, every member
        still running at one epoch E (the engine goes on from E), and every member that had
        ended (stopped, cancelled, failed) saved at E or before; else ValueError, and nothing
        is changed."""
        if len(members) != self.k:
            raise ValueError(f"{len(members)} member states for {self.k} members")
        states = [ms for _, ms in members]
        epoch = max(int(ms["epoch"]) for ms in states)
        running = [ms for ms in states if ms["status"] == "running"]
        behind = sorted({int(ms["epoch"]) for ms in running} - {epoch})
        if behind:
            raise ValueError(f"members' checkpoints are at different epochs ({behind} and {epoch})")
        steps = {int(ms["optimizer"]["steps"]) for ms in running}
        if len(steps) > 1:
            raise ValueError(f"members' optimizers are at different steps {sorted(steps)}")
        step = steps.pop() if steps else max(int(ms["optimizer"]["steps"]) for ms in states)
        for w, _ in members:
            missing = set(self.stack.member_state(0)) - set(w)
            if missing:
                raise ValueError(f"a member's weights lack {sorted(missing)}")
        self.optimizer.load_member_state_dicts([ms["optimizer"] for ms in states], step)
        for i, (w, ms) in enumerate(members):
            self.stack.load_member(i, {k: v.to(self.device) for k, v in w.items()})
            self.status[i] = MemberStatus.from_json(ms)
            t = self.members[i].trainer
            if t.scheduler is not None and ms["scheduler"] is not None:
                t.scheduler.load_state_dict(ms["scheduler"])
                # the scheduler's state leaves its optimizer's rate as it was: set it
                lrs = ms.get("lr") or t.scheduler.get_last_lr()
                for group, lr in zip(t.optimizer.param_groups, lrs, strict=True):
                    group["lr"] = float(lr)
            t.shuffle.set_state(ms["shuffle"])
            self.generators[i].set_state(ms["noise"])
            if self.early[i] is not None and ms["early_stopping"] is not None:
                self.early[i].load_state_dict(ms["early_stopping"])  # type: ignore[union-attr]
        self.epoch = epoch
        self.ctx.lr = self.current_lr()


def _eval_cross_entropy(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's cross-entropy on each row ``[k, N]`` of outputs ``[k, N, C]`` against
    class indices ``[N]`` as ``logsumexp − the target's logit``, and the shifted exponentials
    ``exp(out − max)`` (the softmax's numerators). ``log_softmax`` over a last dimension of
    ten classes runs one row at a time, several times slower than these elementwise ops; the
    values agree with ``F.cross_entropy`` to rounding (evaluation only: training uses
    ``member_loss``, whose gradient is the lone run's)."""
    top = out.amax(-1, keepdim=True)
    e = (out - top).exp_()
    lse = e.sum(-1).log_().add_(top.squeeze(-1))
    target = out.gather(-1, y.expand(out.shape[0], -1).unsqueeze(-1)).squeeze(-1)
    return lse - target, e


def _calibration_errors(
    conf: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS
) -> torch.Tensor:
    """``expected_calibration_error`` of each member ``[k]`` from its confidences and
    correctness ``[k, N]``: the same bins, one ``bincount`` for every member."""
    k, n = conf.shape
    edges = torch.linspace(0.0, 1.0, bins + 1, device=conf.device)
    idx = torch.bucketize(conf, edges[1:-1], right=False)
    idx = (idx + bins * torch.arange(k, device=conf.device)[:, None]).flatten()
    acc = torch.bincount(idx, weights=correct.to(conf.dtype).flatten(), minlength=k * bins)
    cs = torch.bincount(idx, weights=conf.flatten(), minlength=k * bins)
    return (acc - cs).view(k, bins).abs().sum(1) / n


def member_loss(out: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Each member's mean data loss ``[k]``: outputs ``[k, B, C]``, targets ``[k, B]`` (class
    indices), ``[k, B, C]`` (distributions) or regression targets."""
    k, b = out.shape[:2]
    if task == "classification":
        if y.is_floating_point():
            return -(y * out.log_softmax(-1)).sum(-1).mean(1)
        return F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(k, b).mean(1)
    return (out - y).pow(2).flatten(1).mean(1)
