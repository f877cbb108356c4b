"""pseudo_label, consistency and soft_sharing in ensembles: the batched engine refuses them and
says why, and member-by-member ensembles train them (and resume them) as single runs do."""

from __future__ import annotations

import pytest

from regcore.ensemble.batched import why_not_batched
from regcore.experiment import kind_of, run
from tests.regcore.runs import make_spec
from tests.regcore.test_resume import CancelAfter

DATA = {"name": "mnist1d", "n_train": 100, "n_val": 50, "n_test": 50, "n_unlabeled": 200}
TRAIN = {"optimizer": "adam", "lr": 0.003, "batch_size": 50, "epochs": 3, "device": "cpu"}


@pytest.mark.parametrize(
    ("reg", "why"),
    [
        ({"name": "pseudo_label"}, "unlabelled batch"),
        ({"name": "consistency", "mode": "mean_teacher"}, "teacher"),
        ({"name": "soft_sharing"}, "second model"),
    ],
)
def test_the_batched_engine_refuses_them_and_says_why(reg, why):
    spec = make_spec(
        data=DATA,
        train=TRAIN,
        regularizers=[{"name": "l2"}, {"name": "dropout", "p": 0.2}, reg],
        ensemble={"members": 2},
    )
    reason = why_not_batched(spec)
    assert reason is not None and reg["name"] in reason and why in reason
    assert kind_of(spec) == "ensemble"


def test_a_member_by_member_ensemble_resumes_its_unlabelled_stream(tmp_path, cache_dir):
    spec = make_spec(
        data=DATA,
        train=TRAIN,
        regularizers=[{"name": "pseudo_label", "threshold": 0.0, "ramp_up": 0.0}],
        ensemble={"members": 2},
    )
    kw = {"cache_dir": cache_dir, "threads": 1}
    whole = run(spec, tmp_path / "whole", **kw)
    assert whole.status == "succeeded"
    cut = run(spec, tmp_path / "cut", reporter=CancelAfter(2), **kw)
    assert cut.status == "cancelled"
    resumed = run(spec, tmp_path / "cut", resume=True, **kw)
    assert resumed.status == "succeeded" and resumed.metrics == whole.metrics
