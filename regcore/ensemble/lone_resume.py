"""A pack member's checkpoint as its lone run's: a sweep trial that trained in a pack goes on alone.

A pack (``regcore.ensemble.pack``) saves each member's ``last`` checkpoint as its weights (the
lone model's state_dict keys) and, as training state, ``{"pack": name,
**BatchedMembers.member_train_state(i)}``. A member is bit for bit its lone run, so that state
says everything the lone ``Trainer`` keeps (``Trainer.train_state``), in another layout:

* the member's optimizer slice, per parameter *name* (``StackedOptimizer.member_state_dict``),
  becomes torch's optimizer state_dict, keyed by the index of the parameter in the lone
  optimizer's list, with the lone optimizer's own param_groups at the member's lr;
* its noise generator is the stream its lone run draws dropout and noise from: the global torch
  RNG of the device it trains on (``BatchedMembers._generator``);
* its shuffle generator, scheduler and early stopping are its lone Trainer's own objects' states;
* the step index is the epoch times the steps per epoch, as the lone Trainer counts them.

Only a member that was still running resumes alone: one that had ended (stopped, cancelled,
diverged) was saved the epoch it ended, a cancelled one part way through an epoch and a
diverged one with non-finite weights, so its checkpoint is no epoch a lone run continues from.
``lone_state`` refuses it (ValueError) and the run starts over from epoch 0; training is
deterministic, so it diverges or stops early again as the member did (a stop or cancel that
came from outside, the sweep's, is that caller's to make again). The worker settles a member
that ends as it ends (``worker.packs``), so only a worker killed in between sends such a
member's run again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from regcore.regularizers.early_stopping import EarlyStopping
from regcore.training.rng import rng_state

if TYPE_CHECKING:
    from regcore.training.loop import Trainer


def lone_state(
    trainer: Trainer, weights: dict[str, torch.Tensor], member: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A pack member's checkpoint (``weights``, ``member``: its training state) as what
    ``trainer.load`` takes from a lone run's; ``trainer`` is the lone run's, freshly built.
    ValueError when the member had ended or its state does not fit this run."""
    if member["status"] != "running":
        raise ValueError(
            f"the pack member had ended ({member['status']}: {member['reason']}) "
            f"after epoch {member['epochs_run']}"
        )
    epoch = int(member["epoch"])
    steps = int(member["optimizer"]["steps"])
    if steps != epoch * trainer.task.steps_per_epoch:
        raise ValueError(
            f"the pack member took {steps} optimizer steps in {epoch} epochs; this run takes "
            f"{trainer.task.steps_per_epoch} an epoch"
        )
    missing = sorted(set(trainer.model.state_dict()) - set(weights))
    if missing:
        raise ValueError(f"the pack member's weights lack {missing}")
    regularizers = []
    for reg in trainer.regs:
        if isinstance(reg, EarlyStopping):
            regularizers.append(member["early_stopping"])
        elif reg.state_dict():  # the pack keeps no other regularizer's state: none has any
            raise ValueError(f"regularizer {reg.name} keeps a state that a pack does not hold")
        else:
            regularizers.append({})
    state = {
        "optimizer": _optimizer_state(trainer, member["optimizer"]["state"], steps, member["lr"]),
        "scheduler": member["scheduler"],
        "rng": _rng(trainer, member),
        "regularizers": regularizers,
        "step_index": steps,
        # lr_sum is read only by measures (effective_l2), and a spec with measures never packs
        "best": member["best"],
        # an epochs budget: whole passes (the next pass draws its order and starts at 0)
        "pass": {"epoch": epoch, "pos": 0, "order": None},
        "memorised_at": None,  # train.stop_when_memorised never packs
    }
    return {k: weights[k] for k in trainer.model.state_dict()}, state


def _optimizer_state(
    trainer: Trainer, by_name: dict[str, dict[str, torch.Tensor]], steps: int, lr: list[float]
) -> dict[str, Any]:
    """torch's optimizer state_dict of the lone run from the member's slice by parameter name:
    the index of a parameter is its place in the lone optimizer's list (``build_optimizer``:
    the model's parameters that require a gradient, in order)."""
    names = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    groups = trainer.optimizer.state_dict()["param_groups"]  # its own hyperparameters
    if len(groups) != len(lr):
        raise ValueError(f"{len(lr)} learning rates for {len(groups)} parameter groups")
    groups = [{**g, "lr": float(r)} for g, r in zip(groups, lr, strict=True)]
    unknown = sorted(set(by_name) - set(names))
    if unknown:
        raise ValueError(f"an optimizer state for parameters this run lacks: {unknown}")
    momentum = groups[0].get("momentum", 0)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for i, name in enumerate(names):
        slot = by_name.get(name)
        if slot is None:  # never stepped (no gradient yet), as torch leaves it
            continue
        if isinstance(trainer.optimizer, torch.optim.SGD):
            # the pack keeps a buffer for every member when any has momentum; torch's SGD
            # keeps none at momentum 0
            if momentum:
                state[i] = {"momentum_buffer": slot["momentum_buffer"]}
        else:  # Adam, AdamW: torch counts the steps per parameter, as a float tensor
            step = torch.tensor(float(steps), dtype=torch.get_default_dtype())
            state[i] = {"step": step, "exp_avg": slot["exp_avg"], "exp_avg_sq": slot["exp_avg_sq"]}
    return {"state": state, "param_groups": groups}


def _rng(trainer: Trainer, member: dict[str, Any]) -> dict[str, Any]:
    """The lone run's RNG state: its global torch stream (the device's) is the member's noise
    generator, its shuffle generator the member's. Nothing a pack trains draws from numpy's or
    Python's global RNG (the batchable regularizers draw from torch only), so the lone run's
    current ones (seeded by its Trainer) are kept."""
    generators = trainer.generators()
    if set(generators) != {"shuffle"}:
        raise ValueError(f"this run draws from {sorted(generators)}; a pack member from shuffle")
    out = rng_state(generators)
    out["generators"] = {"shuffle": member["shuffle"]}
    noise = member["noise"]
    if trainer.device.type == "cuda":
        index = trainer.device.index
        if index is None:
            index = torch.cuda.current_device()
        cuda = list(out.get("cuda") or torch.cuda.get_rng_state_all())
        _fits(noise, cuda[index], trainer.device)
        cuda[index] = noise
        out["cuda"] = cuda
    else:
        _fits(noise, out["torch"], trainer.device)
        out["torch"] = noise
    return out


def _fits(noise: torch.Tensor, lone: torch.Tensor, device: torch.device) -> None:
    """A noise stream saved on one kind of device does not continue on another (a CPU
    generator's state is not a CUDA one's)."""
    if noise.numel() != lone.numel():
        raise ValueError(
            f"the pack member's noise stream ({noise.numel()} bytes) is not one of a {device.type} "
            f"run's ({lone.numel()} bytes): the pack ran on another kind of device"
        )
