"""Parameters of every regularizer in the catalog, as pydantic models (no torch here).

Each model is one entry of a spec's ``regularizers`` list, tagged by ``name``. The torch side of
each one lives in ``regcore/regularizers/<name>.py``; ``regcore/regularizers/registry.py`` maps
the two. Conventions (see docs/catalog.md): every ``p`` is a *drop* probability with inverted
scaling; ``l2.strength`` λ adds λ·Σw² to the mean data loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Probability = Field(ge=0.0, lt=1.0)

ParamKind = Literal["bias", "norm"]
AugmentTransform = Literal[
    "shift", "scale", "noise", "translate", "rotate", "flip", "blur", "brightness"
]


# typed factories: a lambda's list literal infers as list[str], not the field's Literal list
def _bias_and_norm() -> list[ParamKind]:
    return ["bias", "norm"]


def _shift_and_scale() -> list[AugmentTransform]:
    return ["shift", "scale"]


def _views() -> AugmentSpec:
    """The two views of consistency: every 1D transform."""
    return AugmentSpec.model_validate({"transforms": ["shift", "scale", "noise"]})


def _contrastive_views() -> AugmentSpec:
    """Contrastive pretraining's views: stronger, or telling the two apart is too easy to teach
    features (SimCLR §3; on MNIST-1D, shift 4 and noise 0.05 did not beat training from scratch)."""
    views = {"transforms": ["shift", "scale", "noise"], "max_shift": 12, "noise_sigma": 0.3}
    return AugmentSpec.model_validate(views)


class RegularizerSpec(BaseModel):
    """Base of every regularizer's parameters: unknown fields are errors.

    The ClassVars are each regularizer's constraints, declared once beside its parameters and
    read by the spec's validators (``regcore/spec.py``) and the batched engine; they are not
    fields, so no spec or schema shows them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    if TYPE_CHECKING:  # each subclass's Literal field; mypy reads it on the union's base
        name: str

    #: the models it applies to; None: any model
    models: ClassVar[tuple[str, ...] | None] = None
    #: needs the spatial layout of a 1D signal or a single-channel image
    needs_layout: ClassVar[bool] = False
    #: refused on regression data
    classification_only: ClassVar[bool] = False
    #: a Bayesian method (regcore/bayes): adds its own prior, so one a run
    bayesian: ClassVar[bool] = False
    #: what it does with the unlabelled examples it needs (data.n_unlabeled); None: needs none
    needs_unlabeled: ClassVar[str | None] = None
    #: replaces the gradient of the step (one such a run, and no loss transform beside it)
    replaces_gradient: ClassVar[bool] = False
    #: ends with averaged weights (refused beside early_stopping's restore_best)
    averages_weights: ClassVar[bool] = False
    #: why it can never run in a batched ensemble (regcore/regularizers/batched.py); None:
    #: batched there, or not batched yet
    not_batched_because: ClassVar[str | None] = None


# --- norm penalties and constraints -----------------------------------------------------------


class L2Spec(RegularizerSpec):
    """L2 penalty λΣw² on weights (biases and norm parameters excluded unless listed)."""

    name: Literal["l2"] = "l2"
    strength: float = Field(1e-3, ge=0.0, description="λ in λΣw²")
    exclude: list[ParamKind] = Field(
        default_factory=_bias_and_norm, description="parameter kinds left unpenalized"
    )
    per_layer: dict[str, float] = Field(
        default_factory=dict,
        description="strength per parameter-name prefix (e.g. {'net.0': 1e-2})",
    )


class WeightDecaySpec(RegularizerSpec):
    """Decoupled weight decay φ ← φ − lr·λ′·φ before each optimizer step (as AdamW)."""

    name: Literal["weight_decay"] = "weight_decay"
    rate: float = Field(1e-2, ge=0.0, description="λ′; with plain SGD equals l2 with λ = λ′/2")


class L1Spec(RegularizerSpec):
    """L1 penalty λΣ|w|, or its proximal step (soft-thresholding) that gives exact zeros."""

    name: Literal["l1"] = "l1"
    strength: float = Field(1e-4, ge=0.0, description="λ in λΣ|w|")
    proximal: bool = Field(False, description="soft-threshold after each step instead of a penalty")


class ElasticNetSpec(RegularizerSpec):
    """Elastic net λ₁Σ|w| + λ₂Σw²."""

    name: Literal["elastic_net"] = "elastic_net"
    l1: float = Field(1e-4, ge=0.0, description="λ₁")
    l2: float = Field(1e-3, ge=0.0, description="λ₂")


class MaxNormSpec(RegularizerSpec):
    """Each unit's incoming weight vector renormed to ‖w‖ ≤ c after every step."""

    name: Literal["max_norm"] = "max_norm"
    c: float = Field(3.0, gt=0.0, description="largest allowed row norm")


# --- penalties on the function ----------------------------------------------------------------


class EntropySpec(RegularizerSpec):
    """Entropy of the softmax: confidence_penalty is L − β·H(p), minimization is L + β·H(p)."""

    name: Literal["entropy"] = "entropy"
    classification_only = True
    beta: float = Field(0.1, ge=0.0, description="β")
    mode: Literal["confidence_penalty", "minimization"] = "confidence_penalty"


class ActivationL1Spec(RegularizerSpec):
    """α Σ|h| over hidden activations, for sparse representations."""

    name: Literal["activation_l1"] = "activation_l1"
    strength: float = Field(1e-4, ge=0.0, description="α")


class FloodingSpec(RegularizerSpec):
    """Flooding |L − b| + b on the batch loss (Ishida et al. 2020)."""

    name: Literal["flooding"] = "flooding"
    level: float = Field(0.1, ge=0.0, description="flood level b")


# --- noise -------------------------------------------------------------------------------------


class InputNoiseSpec(RegularizerSpec):
    """Gaussian noise on the inputs, fresh every step: x + r or x·r."""

    name: Literal["input_noise"] = "input_noise"
    sigma: float = Field(0.1, ge=0.0, description="standard deviation σ of r")
    mode: Literal["additive", "multiplicative"] = "additive"


class WeightNoiseSpec(RegularizerSpec):
    """Forward and backward with w + ε, ε ~ N(0, σ²) on weights (not biases); update the clean w."""

    name: Literal["weight_noise"] = "weight_noise"
    sigma: float = Field(0.01, ge=0.0, description="standard deviation σ of ε")


class LabelSmoothingSpec(RegularizerSpec):
    """Label smoothing. ``epsilon`` spreads ε over all K classes; ``rho`` puts ρ/(K−1) on others."""

    name: Literal["label_smoothing"] = "label_smoothing"
    classification_only = True
    epsilon: float | None = Field(None, ge=0.0, le=1.0, description="ε over all K classes")
    rho: float | None = Field(None, ge=0.0, lt=1.0, description="ρ over the K−1 wrong classes")

    @model_validator(mode="after")
    def _one_of(self) -> LabelSmoothingSpec:
        if self.epsilon is not None and self.rho is not None:
            raise ValueError("give either epsilon or rho, not both (ε = ρK/(K−1))")
        if self.epsilon is None and self.rho is None:
            object.__setattr__(self, "epsilon", 0.1)
        return self


class DisturbLabelSpec(RegularizerSpec):
    """DisturbLabel: each label replaced by a uniform random class with probability α."""

    name: Literal["disturb_label"] = "disturb_label"
    classification_only = True
    alpha: float = Field(0.1, ge=0.0, le=1.0, description="α")


# --- dropout family ----------------------------------------------------------------------------


class DropoutSpec(RegularizerSpec):
    """Bernoulli dropout on hidden units (and optionally inputs), inverted scaling."""

    name: Literal["dropout"] = "dropout"
    p: float = Field(0.5, ge=0.0, lt=1.0, description="drop probability of hidden units")
    input_p: float = Field(0.0, ge=0.0, lt=1.0, description="drop probability of input features")


class GaussianDropoutSpec(RegularizerSpec):
    """Multiplicative N(1, p/(1−p)) noise on hidden units; identity at eval."""

    name: Literal["gaussian_dropout"] = "gaussian_dropout"
    p: float = Field(0.5, ge=0.0, lt=1.0, description="equivalent drop probability")


class DropConnectSpec(RegularizerSpec):
    """Bernoulli mask on weights, y = f((R∘W)x); eval uses W."""

    name: Literal["dropconnect"] = "dropconnect"
    p: float = Field(0.5, ge=0.0, lt=1.0, description="drop probability of each weight")


# --- data --------------------------------------------------------------------------------------


class AugmentSpec(RegularizerSpec):
    """On-the-fly label-preserving transforms: 1D shift, scale, noise; 8×8 translate, rotate, ...

    Image transforms (translate, rotate, flip, blur, brightness) apply to image data (digits);
    shift applies to 1D signals only; scale and noise to both.
    """

    name: Literal["augment"] = "augment"
    transforms: list[AugmentTransform] = Field(default_factory=_shift_and_scale)
    max_shift: int = Field(4, ge=0, description="largest circular shift, in samples")
    scale_range: tuple[float, float] = Field((0.8, 1.2), description="uniform amplitude factor")
    noise_sigma: float = Field(0.05, ge=0.0, description="σ of additive noise")
    p: float = Field(1.0, ge=0.0, le=1.0, description="probability that an example is transformed")
    max_translate: int = Field(1, ge=0, description="images: largest translation, in pixels")
    max_rotate: float = Field(15.0, ge=0.0, le=180.0, description="images: largest rotation (°)")
    blur_sigma: float = Field(1.0, ge=0.0, description="images: largest σ of the 3×3 Gaussian blur")
    brightness: float = Field(0.2, ge=0.0, description="images: largest brightness offset")

    @model_validator(mode="after")
    def _range(self) -> AugmentSpec:
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError("scale_range must satisfy 0 < low <= high")
        return self


class CutoutSpec(RegularizerSpec):
    """Zero one random contiguous segment (1D) or square (images) of each input."""

    name: Literal["cutout"] = "cutout"
    needs_layout = True
    size: int = Field(
        8, ge=1, description="segment length in features; images: side of the square in pixels"
    )
    p: float = Field(1.0, ge=0.0, le=1.0, description="probability that an example is cut")


class MixupSpec(RegularizerSpec):
    """mixup: x̃ = λxᵢ + (1−λ)xⱼ, ỹ likewise, λ ~ Beta(α, α); either order with label_smoothing."""

    name: Literal["mixup"] = "mixup"
    classification_only = True
    alpha: float = Field(0.2, gt=0.0, description="α of Beta(α, α)")


class AdversarialSpec(RegularizerSpec):
    """Adversarial training: loss αJ(x) + (1−α)J(x′), x′ by FGSM or PGD."""

    name: Literal["adversarial"] = "adversarial"
    method: Literal["fgsm", "pgd"] = "fgsm"
    epsilon: float = Field(0.1, ge=0.0, description="L∞ radius of the perturbation")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="weight of the clean loss")
    steps: int = Field(5, ge=1, description="PGD steps")
    step_size: float | None = Field(None, gt=0.0, description="PGD step; default 2.5·ε/steps")


# --- procedure ---------------------------------------------------------------------------------


class EarlyStoppingSpec(RegularizerSpec):
    """Stop when the monitored metric has not improved for ``patience`` epochs; restore the best."""

    name: Literal["early_stopping"] = "early_stopping"
    monitor: str = Field("val_loss", description="metric key to watch")
    patience: int = Field(10, ge=1)
    min_delta: float = Field(0.0, ge=0.0)
    mode: Literal["min", "max", "auto"] = Field("auto", description="auto: max for *_acc, else min")
    restore_best: bool = Field(
        True,
        description="end with the best epoch's weights; refused beside swa or ema, which end "
        "with their average (set false to stop early and keep the average)",
    )
    retrain_on_train_val: bool = Field(
        False,
        description="then retrain from scratch on train+val for the best epoch count "
        "(TU Graz slides, second recipe)",
    )


# --- second half: norm and function penalties, noise (issue 4) --------------------------------


class L0Spec(RegularizerSpec):
    """L0 by hard-concrete gates (Louizos et al. 2018) on the weights of hidden linear layers."""

    name: Literal["l0"] = "l0"
    strength: float = Field(1e-4, ge=0.0, description="λ per expected non-zero weight")
    group: bool = Field(False, description="one gate per hidden unit (weight row), not per weight")
    init_drop: float = Field(0.2, gt=0.0, lt=1.0, description="initial P(gate closed), sets log α")


class SpectralSpec(RegularizerSpec):
    """Spectral norm: ½λΣσ_max(W)² by power iteration (Yoshida & Miyato 2017), or projection
    W ← W/max(1, σ_max/c) after each step (Gouk et al. 2021)."""

    name: Literal["spectral"] = "spectral"
    mode: Literal["penalty", "project"] = "penalty"
    strength: float = Field(1e-3, ge=0.0, description="λ in ½λΣσ_max² (mode penalty)")
    c: float = Field(1.0, gt=0.0, description="largest allowed σ_max per layer (mode project)")
    power_iterations: int = Field(1, ge=1, le=100, description="power-iteration rounds per step")


class TieSpec(RegularizerSpec):
    """Parameter tying λ‖w − w_ref‖² toward the initial weights or a checkpoint (L2-SP)."""

    name: Literal["tie"] = "tie"
    strength: float = Field(1e-3, ge=0.0, description="λ")
    reference: str | None = Field(
        None,
        description="the id of a checkpoint of one of your experiments (reglab run: also a local "
        "safetensors file of the model's state_dict); None: the initial weights",
    )
    exclude: list[ParamKind] = Field(
        default_factory=_bias_and_norm, description="parameter kinds left untied"
    )


class JacobianSpec(RegularizerSpec):
    """Input-Jacobian penalty λ·mean‖∂f/∂x‖²_F by double backprop."""

    name: Literal["jacobian"] = "jacobian"
    strength: float = Field(1e-2, ge=0.0, description="λ")
    estimator: Literal["projection", "full"] = Field(
        "projection", description="random-projection estimate (one backward each) or all K rows"
    )
    projections: int = Field(1, ge=1, le=64, description="random projections per step")


class TangentPropSpec(RegularizerSpec):
    """Tangent propagation λΣᵢ‖(∂f/∂x)vᵢ‖², vᵢ tangents of known transforms (Simard et al. 1992)."""

    name: Literal["tangent_prop"] = "tangent_prop"
    needs_layout = True
    strength: float = Field(1e-2, ge=0.0, description="λ")
    transforms: list[Literal["shift", "scale", "translate", "rotate"]] | None = Field(
        None, description="1D: shift, scale; 8×8: translate, rotate; None: shift / both 2D ones"
    )


class GradNormSpec(RegularizerSpec):
    """Explicit gradient-norm penalty c‖∂L/∂φ‖² (Prince eq. 9.8, Barrett & Dherin 2021)."""

    name: Literal["grad_norm"] = "grad_norm"
    strength: float | None = Field(
        None, ge=0.0, description="the coefficient c; None: lr/4, GD's implicit term"
    )


class HiddenNoiseSpec(RegularizerSpec):
    """Additive Gaussian noise h + N(0, σ²) on hidden activations in training; identity at eval."""

    name: Literal["hidden_noise"] = "hidden_noise"
    sigma: float = Field(0.1, ge=0.0, description="σ")


class FeatureNoiseSpec(RegularizerSpec):
    """Noise in a generator's latent space, x̂ = d(z + r) or d(r∘z) (Antczak eq. 18-19)."""

    name: Literal["feature_noise"] = "feature_noise"
    mode: Literal["additive", "multiplicative"] = "additive"
    sigma: float = Field(0.1, ge=0.0, description="σ of r (relative to each latent's spread)")
    p: float = Field(1.0, ge=0.0, le=1.0, description="probability that an example is re-rendered")
    latent_dim: int = Field(8, ge=1, description="autoencoder latent size (non-mnist1d data)")
    ae_epochs: int = Field(200, ge=1, description="autoencoder full-batch training steps")


# --- issue 4: dropout family, data, procedure (second half of the catalog) ---------------------


class VariationalDropoutSpec(RegularizerSpec):
    """One dropout mask per sequence, reused at every time step (Gal & Ghahramani 2016); gru."""

    name: Literal["variational_dropout"] = "variational_dropout"
    models = ("gru",)
    p: float = Field(0.25, ge=0.0, lt=1.0, description="drop probability of recurrent state units")
    input_p: float = Field(0.0, ge=0.0, lt=1.0, description="drop probability of step inputs")


class DropBlockSpec(RegularizerSpec):
    """Drop contiguous runs of block_size positions of conv feature maps (Ghiasi et al. 2018)."""

    name: Literal["dropblock"] = "dropblock"
    models = ("cnn1d",)
    p: float = Field(0.1, ge=0.0, lt=1.0, description="fraction of positions to drop")
    block_size: int = Field(5, ge=1, description="length of each dropped run")


class StochasticDepthSpec(RegularizerSpec):
    """Skip residual block l with probability p·l/L in training (Huang et al. 2016)."""

    name: Literal["stochastic_depth"] = "stochastic_depth"
    models = ("resmlp", "cnn1d")
    p: float = Field(0.2, ge=0.0, lt=1.0, description="skip probability of the last block")


class RReLUSpec(RegularizerSpec):
    """Randomized leaky ReLU: slope ~ U(lower, upper) in training, (lower+upper)/2 at eval."""

    name: Literal["rrelu"] = "rrelu"
    models = ("mlp", "cnn1d", "resmlp", "transformer")
    lower: float = Field(1 / 8, ge=0.0, le=1.0, description="lowest negative slope")
    upper: float = Field(1 / 3, ge=0.0, le=1.0, description="highest negative slope")

    @model_validator(mode="after")
    def _order(self) -> RReLUSpec:
        if self.lower > self.upper:
            raise ValueError("lower must not exceed upper")
        return self


class StandoutSpec(RegularizerSpec):
    """Adaptive dropout: keep probability σ(α·a + β) from each unit's activation (Ba & Frey)."""

    name: Literal["standout"] = "standout"
    models = ("mlp", "cnn1d", "resmlp", "transformer", "gru")
    alpha: float = Field(1.0, description="α: how strongly a unit's activation sets its keep rate")
    beta: float = Field(0.0, description="β: keep-rate offset; α=0 is dropout with keep σ(β)")
    scaling: Literal["expectation", "inverted"] = Field(
        "expectation",
        description="expectation: eval multiplies by the keep probability (Ba & Frey); "
        "inverted: training divides by it and eval is the identity",
    )


class AttentionDropoutSpec(RegularizerSpec):
    """Dropout on the attention weights of the transformer model, inverted scaling."""

    name: Literal["attention_dropout"] = "attention_dropout"
    models = ("transformer",)
    p: float = Field(0.1, ge=0.0, lt=1.0, description="drop probability of each attention weight")


class EmbeddingDropoutSpec(RegularizerSpec):
    """Drop whole token embeddings of the transformer model, inverted scaling."""

    name: Literal["embedding_dropout"] = "embedding_dropout"
    models = ("transformer",)
    p: float = Field(0.1, ge=0.0, lt=1.0, description="drop probability of each token")


class CutMixSpec(RegularizerSpec):
    """CutMix: paste a segment (1D) or box (image) of x_j into x_i; targets mixed by area."""

    name: Literal["cutmix"] = "cutmix"
    needs_layout = True
    classification_only = True
    alpha: float = Field(1.0, gt=0.0, description="α of Beta(α, α) for the kept fraction λ")
    p: float = Field(1.0, ge=0.0, le=1.0, description="probability that an example is mixed")


class SWASpec(RegularizerSpec):
    """Stochastic weight averaging (Izmailov et al. 2018): average the iterates from ``start``."""

    name: Literal["swa"] = "swa"
    averages_weights = True
    start: float = Field(0.75, ge=0.0, lt=1.0, description="fraction of epochs before averaging")
    swa_lr: float | None = Field(
        None, gt=0.0, description="constant lr while averaging; None keeps the lr"
    )
    anneal_epochs: int = Field(1, ge=1, description="epochs to anneal to swa_lr")
    every: Literal["epoch", "step"] = Field("epoch", description="when an iterate is averaged")


class EMASpec(RegularizerSpec):
    """Exponential moving average of the weights, updated after every step."""

    name: Literal["ema"] = "ema"
    averages_weights = True
    decay: float = Field(0.99, ge=0.0, lt=1.0, description="weight of the old average")


class SAMSpec(RegularizerSpec):
    """Sharpness-aware minimization (Foret et al. 2021): descend the loss at w + ρ·g/‖g‖."""

    name: Literal["sam"] = "sam"
    replaces_gradient = True
    rho: float = Field(0.05, gt=0.0, description="radius ρ of the ascent step")


class EntropySGDSpec(RegularizerSpec):
    """Entropy-SGD (Chaudhari et al. 2017): the local-entropy step γ(w − ⟨w′⟩), L Langevin steps."""

    name: Literal["entropy_sgd"] = "entropy_sgd"
    replaces_gradient = True
    not_batched_because = (
        "its inner Langevin loop moves each model's weights on fresh batches of "
        "its own between two optimizer steps"
    )
    inner_steps: int = Field(20, ge=1, le=100, description="L: Langevin steps per update")
    gamma: float = Field(0.03, gt=0.0, le=1e4, description="γ₀: the scope, coupling w′ to w")
    scoping: float = Field(
        1e-3, ge=0.0, le=1.0, description="γ grows as γ₀·(1 + scoping)^t over the steps t"
    )
    inner_lr: float = Field(0.1, gt=0.0, le=10.0, description="η′ of the Langevin steps")
    noise: float = Field(1e-4, ge=0.0, le=1.0, description="ε: the Langevin noise is √η′·ε·N(0, I)")
    alpha: float = Field(
        0.75, gt=0.0, le=1.0, description="weight of the newest w′ in the running mean ⟨w′⟩"
    )


# --- issue 14: Bayesian inference (Prince §9.3.5) ----------------------------------------------
# Each puts a zero-mean Gaussian prior N(0, prior_var) on the weights; under the mean-loss
# convention it is l2 with λ = 1/(2·N·prior_var), N the training examples (regcore/bayes/prior.py).


class SGLDSpec(RegularizerSpec):
    """Stochastic gradient Langevin dynamics (Welling & Teh 2011): posterior samples from SGD."""

    name: Literal["sgld"] = "sgld"
    classification_only = True  # its predictive is scored by ECE
    bayesian = True
    prior_var: float = Field(1.0, gt=0.0, description="σ²_prior of the N(0, σ²_prior) prior")
    temperature: float = Field(
        1.0, gt=0.0, description="T of the tempered posterior; T < 1 is a cold posterior"
    )
    burn_in: int | None = Field(
        None,
        ge=1,
        description="optimisation (noise-free SGD) to the MAP before sampling starts; "
        "None: the first half of training",
    )
    burn_in_unit: Literal["epochs", "steps"] = "epochs"
    thin: int = Field(10, ge=1, description="Langevin steps between kept samples")
    samples: int = Field(20, ge=1, le=1000, description="the most recent samples kept")
    exclude: list[ParamKind] = Field(
        default_factory=_bias_and_norm, description="parameter kinds under a flat prior"
    )


class BayesByBackpropSpec(RegularizerSpec):
    """Bayes by Backprop (Blundell et al. 2015): a mean-field Gaussian posterior on the weights."""

    name: Literal["bayes_by_backprop"] = "bayes_by_backprop"
    classification_only = True  # its predictive is scored by ECE
    bayesian = True
    prior_var: float = Field(1.0, gt=0.0, description="σ²_prior of the N(0, σ²_prior) prior")
    init_std: float = Field(0.01, gt=0.0, description="initial posterior standard deviation")
    samples: int = Field(20, ge=1, le=1000, description="weight samples in the predictive")


#: the most output-layer weights laplace's ``hessian: full`` inverts (a 4,096² float64 matrix is
#: 128 MiB)
LAPLACE_MAX_FULL = 4096


class LaplaceSpec(RegularizerSpec):
    """Last-layer Laplace approximation (MacKay 1992; Daxberger et al. 2021) around MAP weights."""

    name: Literal["laplace"] = "laplace"
    classification_only = True  # its predictive is scored by ECE
    bayesian = True
    prior_var: float = Field(1.0, gt=0.0, description="σ²_prior of the N(0, σ²_prior) prior")
    hessian: Literal["full", "diag"] = Field(
        "full", description="the last layer's generalized Gauss-Newton, whole or its diagonal"
    )
    predictive: Literal["probit", "sampling"] = Field(
        "probit", description="probit approximation of the softmax, or Monte Carlo"
    )
    samples: int = Field(100, ge=1, le=10_000, description="weight samples (predictive sampling)")
    exclude: list[ParamKind] = Field(
        default_factory=_bias_and_norm, description="parameter kinds under a flat prior"
    )


# --- semi-supervised (data.n_unlabeled) and soft sharing ---------------------------------------

RAMP_UP = Field(
    0.3,
    ge=0.0,
    le=1.0,
    description="fraction of the training steps over which the weight rises as exp(−5(1−t)²)",
)


class PseudoLabelSpec(RegularizerSpec):
    """Pseudo-labels (Lee 2013): cross-entropy on the unlabelled batch's confident argmax class."""

    name: Literal["pseudo_label"] = "pseudo_label"
    classification_only = True  # its labels are argmax classes
    needs_unlabeled = "labels unlabelled examples"
    not_batched_because = (
        "it reads an unlabelled batch (data.n_unlabeled) beside each labelled one, "
        "which the batched engine does not draw"
    )
    weight: float = Field(1.0, ge=0.0, description="weight of the unlabelled loss after ramp-up")
    threshold: float = Field(
        0.95, ge=0.0, lt=1.0, description="least softmax confidence a pseudo-label needs"
    )
    ramp_up: float = RAMP_UP
    views: AugmentSpec | None = Field(
        None,
        description="fit the pseudo-label on an augmented view, labelled from the plain input "
        "(FixMatch's weak/strong pair); None: label and fit the same pass (Lee)",
    )


class ConsistencySpec(RegularizerSpec):
    """Agreement between two augmented views: Π-model or mean teacher (Laine & Aila; Tarvainen)."""

    name: Literal["consistency"] = "consistency"
    not_batched_because = (
        "it reads an unlabelled batch (data.n_unlabeled) beside each labelled one, "
        "which the batched engine does not draw, and mean_teacher keeps a teacher model per run"
    )
    mode: Literal["pi", "mean_teacher"] = Field(
        "pi", description="pi: two student passes; mean_teacher: an EMA teacher's pass"
    )
    weight: float = Field(10.0, ge=0.0, description="w of w·mean Σₖ(pₖ − p̃ₖ)² after ramp-up")
    ramp_up: float = RAMP_UP
    decay: float = Field(0.99, ge=0.0, lt=1.0, description="mean_teacher: the EMA's decay")
    views: AugmentSpec = Field(
        default_factory=_views, description="the augment transforms that make each view"
    )


class SoftSharingSpec(RegularizerSpec):
    """Soft parameter sharing: a second model trained jointly, λ‖w − w′‖² on the shared layers."""

    name: Literal["soft_sharing"] = "soft_sharing"
    not_batched_because = "it trains a second model, with its own optimizer, beside each run's"
    strength: float = Field(1e-2, ge=0.0, description="λ")
    share_head: bool = Field(False, description="pull the output layers together too")
    exclude: list[ParamKind] = Field(
        default_factory=_bias_and_norm, description="parameter kinds left unshared"
    )


#: every regularizer's parameter model, in definition (catalog) order: the one list the spec
#: union (regcore/spec.py), the registry and the catalog derive from
ALL: tuple[type[RegularizerSpec], ...] = tuple(
    v
    for v in list(globals().values())
    if isinstance(v, type)
    and issubclass(v, RegularizerSpec)
    and v is not RegularizerSpec
    and v.__module__ == __name__
)
#: each one by its ``name``
BY_NAME: dict[str, type[RegularizerSpec]] = {cls.model_fields["name"].default: cls for cls in ALL}
