"""Which class implements which regularizer spec: one explicit table, read on one screen."""

from __future__ import annotations

from collections.abc import Sequence

from regcore import regularizer_specs as s
from regcore.regularizers.activation_l1 import ActivationL1
from regcore.regularizers.adversarial import Adversarial
from regcore.regularizers.attention_dropout import AttentionDropout
from regcore.regularizers.augment import Augment
from regcore.regularizers.base import Regularizer, TaskInfo
from regcore.regularizers.bayes_by_backprop import BayesByBackprop
from regcore.regularizers.consistency import Consistency
from regcore.regularizers.cutmix import CutMix
from regcore.regularizers.cutout import Cutout
from regcore.regularizers.disturb_label import DisturbLabel
from regcore.regularizers.dropblock import DropBlock
from regcore.regularizers.dropconnect import DropConnect
from regcore.regularizers.dropout import Dropout
from regcore.regularizers.early_stopping import EarlyStopping
from regcore.regularizers.elastic_net import ElasticNet
from regcore.regularizers.ema import EMA
from regcore.regularizers.embedding_dropout import EmbeddingDropout
from regcore.regularizers.entropy import EntropyPenalty
from regcore.regularizers.entropy_sgd import EntropySGD
from regcore.regularizers.feature_noise import FeatureNoise
from regcore.regularizers.flooding import Flooding
from regcore.regularizers.gaussian_dropout import GaussianDropout
from regcore.regularizers.grad_norm import GradNorm
from regcore.regularizers.hidden_noise import HiddenNoise
from regcore.regularizers.input_noise import InputNoise
from regcore.regularizers.jacobian import Jacobian
from regcore.regularizers.l0 import L0
from regcore.regularizers.l1 import L1Penalty
from regcore.regularizers.l2 import L2Penalty
from regcore.regularizers.label_smoothing import LabelSmoothing
from regcore.regularizers.laplace import Laplace
from regcore.regularizers.max_norm import MaxNorm
from regcore.regularizers.mixup import Mixup
from regcore.regularizers.pseudo_label import PseudoLabel
from regcore.regularizers.rrelu import RReLU
from regcore.regularizers.sam import SAM
from regcore.regularizers.sgld import SGLD
from regcore.regularizers.soft_sharing import SoftSharing
from regcore.regularizers.spectral import Spectral
from regcore.regularizers.standout import Standout
from regcore.regularizers.stochastic_depth import StochasticDepth
from regcore.regularizers.swa import SWA
from regcore.regularizers.tangent_prop import TangentProp
from regcore.regularizers.tie import Tie
from regcore.regularizers.variational_dropout import VariationalDropout
from regcore.regularizers.weight_decay import WeightDecay
from regcore.regularizers.weight_noise import WeightNoise

REGISTRY: dict[type[s.RegularizerSpec], type[Regularizer]] = {
    s.L2Spec: L2Penalty,
    s.WeightDecaySpec: WeightDecay,
    s.L1Spec: L1Penalty,
    s.ElasticNetSpec: ElasticNet,
    s.MaxNormSpec: MaxNorm,
    s.EntropySpec: EntropyPenalty,
    s.ActivationL1Spec: ActivationL1,
    s.FloodingSpec: Flooding,
    s.InputNoiseSpec: InputNoise,
    s.WeightNoiseSpec: WeightNoise,
    s.LabelSmoothingSpec: LabelSmoothing,
    s.DisturbLabelSpec: DisturbLabel,
    s.DropoutSpec: Dropout,
    s.GaussianDropoutSpec: GaussianDropout,
    s.DropConnectSpec: DropConnect,
    s.AugmentSpec: Augment,
    s.CutoutSpec: Cutout,
    s.MixupSpec: Mixup,
    s.AdversarialSpec: Adversarial,
    s.EarlyStoppingSpec: EarlyStopping,
    s.L0Spec: L0,
    s.SpectralSpec: Spectral,
    s.TieSpec: Tie,
    s.JacobianSpec: Jacobian,
    s.TangentPropSpec: TangentProp,
    s.GradNormSpec: GradNorm,
    s.HiddenNoiseSpec: HiddenNoise,
    s.FeatureNoiseSpec: FeatureNoise,
    s.VariationalDropoutSpec: VariationalDropout,
    s.DropBlockSpec: DropBlock,
    s.StochasticDepthSpec: StochasticDepth,
    s.RReLUSpec: RReLU,
    s.StandoutSpec: Standout,
    s.AttentionDropoutSpec: AttentionDropout,
    s.EmbeddingDropoutSpec: EmbeddingDropout,
    s.CutMixSpec: CutMix,
    s.SWASpec: SWA,
    s.EMASpec: EMA,
    s.SAMSpec: SAM,
    s.EntropySGDSpec: EntropySGD,
    s.SGLDSpec: SGLD,
    s.BayesByBackpropSpec: BayesByBackprop,
    s.LaplaceSpec: Laplace,
    s.PseudoLabelSpec: PseudoLabel,
    s.ConsistencySpec: Consistency,
    s.SoftSharingSpec: SoftSharing,
}


def build_regularizers(specs: Sequence[s.RegularizerSpec], task: TaskInfo) -> list[Regularizer]:
    missing = [type(sp).__name__ for sp in specs if type(sp) not in REGISTRY]
    if missing:
        raise NotImplementedError(f"no implementation registered for {', '.join(missing)}")
    return [REGISTRY[type(sp)](sp, task) for sp in specs]
