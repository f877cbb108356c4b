"""The source texts' checkable claims, as data: one entry per claim.

Each claim names where it comes from (seed file and section), the specs of its arms (a base spec
plus per-arm overrides), the statistic (``regcore.reproduce.verdict``) and its criterion. The
quick mode replaces a few train fields (fewer epochs) and runs fewer seeds; nothing here is
tuned to make a claim pass: a claim that does not hold on these small problems is reported so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Spec = dict[str, Any]


@dataclass(frozen=True)
class Statistic:
    """``greater``: per seed, ``metric`` of arm ``a`` minus that of arm ``b``; the claim holds
    when the lower end of the 95% t-interval of the mean difference is above ``margin``.
    ``close``: per seed, |a − b| / |b| (``b`` may be a derived value, ``regcore.reproduce.verdict
    .DERIVED``); holds when the upper end of the interval of the mean is at most ``tolerance``."""

    kind: str  # greater | close
    metric: str
    a: str
    b: str
    b_metric: str | None = None  # close: the other side's metric (default: metric)
    margin: float = 0.0
    tolerance: float = 0.0


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    source: str  # seed file and section
    base: Spec
    arms: dict[str, Spec]  # arm name -> overrides merged onto base (regularizers replace)
    statistic: Statistic
    quick_epochs: float = 0.5  # --quick: every arm trains this fraction of its epochs


MNIST1D = {"name": "mnist1d", "n_train": 500, "n_val": 200, "n_test": 500}
SGD = {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "device": "cpu"}


def _mlp(hidden: list[int], epochs: int, **train: Any) -> Spec:
    return {
        "data": MNIST1D,
        "model": {"name": "mlp", "hidden": hidden},
        "train": {**SGD, "epochs": epochs, **train},
        "regularizers": [],
    }


CLAIMS: list[Claim] = [
    Claim(
        id="l1_sparser_than_l2",
        claim="An L1 penalty gives sparser weights than an L2 penalty of the same strength",
        source="003 (blog) L1 regularization; 002 (TU Graz) L1 as a Laplace prior",
        base=_mlp([64], 30),
        arms={
            "l1": {"regularizers": [{"name": "l1", "strength": 1e-3, "proximal": True}]},
            "l2": {"regularizers": [{"name": "l2", "strength": 1e-3}]},
        },
        statistic=Statistic("greater", "sparsity", a="l1", b="l2"),
    ),
    Claim(
        id="label_smoothing_lowers_ece",
        claim="Label smoothing lowers the expected calibration error (test ECE)",
        source="002 (TU Graz) label smoothing; 004 (Prince) §9.3.4 applying noise",
        base=_mlp([128, 128], 60),
        arms={
            "none": {},
            "label_smoothing": {"regularizers": [{"name": "label_smoothing", "epsilon": 0.1}]},
        },
        statistic=Statistic("greater", "ece", a="none", b="label_smoothing"),
    ),
    Claim(
        id="ensemble_error_formula",
        claim="A regression ensemble's squared error equals v/k + (k−1)c/k "
        "(v: mean member error variance, c: mean covariance)",
        source="001 (SNU) Bagging; 004 (Prince) §9.3.2 ensembling",
        base={
            "data": {"name": "toy1d"},
            "model": {"name": "mlp", "hidden": [32]},
            "train": {**SGD, "batch_size": 10, "epochs": 100},
            "regularizers": [],
            "ensemble": {"members": 4, "bagging": True},
        },
        arms={"ensemble": {}},
        statistic=Statistic(
            "close",
            "ens_sq_error",
            a="ensemble",
            b="ensemble",
            b_metric="ens_formula",
            tolerance=1e-6,
        ),  # fmt: skip
        quick_epochs=0.3,
    ),
    Claim(
        id="input_noise_is_ridge",
        claim="Gaussian input noise of variance σ² on least squares (mean loss) equals ridge "
        "with λ = σ²: same weights within 2%",
        source="000 (Antczak) §4 eq. 16-17; 004 (Prince) §9.3.4; catalog conventions (Bishop)",
        base={
            "data": {"name": "toy1d", "n_train": 200},
            "model": {"name": "linear"},
            "train": {**SGD, "lr": 0.05, "batch_size": 200, "epochs": 400},
            "regularizers": [],
        },
        arms={
            "input_noise": {"regularizers": [{"name": "input_noise", "sigma": 0.5}]},
            "ridge": {"regularizers": [{"name": "l2", "strength": 0.25}]},
        },
        statistic=Statistic("close", "weight_l2", a="input_noise", b="ridge", tolerance=0.02),
    ),
    Claim(
        id="early_stopping_shrinks_weights_like_l2",
        claim="Early stopping has an effect similar to L2: the returned weights are smaller "
        "than those of the run trained to the end",
        source="004 (Prince) §9.3.1 early stopping; 002 (TU Graz) early stopping",
        base=_mlp([128, 128], 60),
        arms={
            "none": {},
            "early_stopping": {
                "regularizers": [{"name": "early_stopping", "patience": 5, "monitor": "val_loss"}]
            },
            "l2": {"regularizers": [{"name": "l2", "strength": 1e-3}]},
        },
        statistic=Statistic("greater", "weight_l2", a="none", b="early_stopping"),
    ),
    Claim(
        id="dropout_shrinks_gen_gap",
        claim="Dropout shrinks the generalization gap (test − train loss) of an overfit MLP",
        source="000 (Antczak) §2 eq. 10-11; 001 (SNU) Dropout; 004 (Prince) §9.3.3",
        base=_mlp([128, 128], 60),
        arms={"none": {}, "dropout": {"regularizers": [{"name": "dropout", "p": 0.5}]}},
        statistic=Statistic("greater", "gen_gap", a="none", b="dropout"),
    ),
    Claim(
        id="larger_lr_generalizes_better",
        claim="At equal lr × steps, a larger learning rate reaches a higher test accuracy "
        "on MNIST-1D",
        source="004 (Prince) §9.2.1-9.2.2 implicit regularization, Figure 9.5",
        base=_mlp([128], 40),
        arms={
            "lr_0.2": {"train": {"lr": 0.2, "epochs": 20}},
            "lr_0.05": {"train": {"lr": 0.05, "epochs": 80}},
        },
        statistic=Statistic("greater", "test_acc", a="lr_0.2", b="lr_0.05"),
    ),
    Claim(
        id="smaller_batch_generalizes_better",
        claim="At equal lr and steps, a smaller batch reaches a higher test accuracy on MNIST-1D",
        source="004 (Prince) §9.2.2 implicit regularization of SGD, Figure 9.5",
        base=_mlp([128], 40),
        arms={
            "batch_25": {"train": {"batch_size": 25, "epochs": 10}},
            "batch_100": {"train": {"batch_size": 100, "epochs": 40}},
        },
        statistic=Statistic("greater", "test_acc", a="batch_25", b="batch_100"),
    ),
]

BY_ID = {c.id: c for c in CLAIMS}
