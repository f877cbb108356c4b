"""``data.n_unlabeled``: extra inputs of the same dataset, labels withheld, that the training loop
sets beside each labelled batch only when a regularizer reads them."""

from __future__ import annotations

import pytest
import torch

from regcore.data import build_dataset
from regcore.data.unlabeled import UnlabeledBatches
from regcore.experiment import run as run_experiment
from regcore.spec import SpecError, parse_spec
from tests.regcore.runs import make_spec, trainer
from tests.regcore.test_resume import CancelAfter

SMALL = {"name": "mnist1d", "n_train": 100, "n_val": 50, "n_test": 50}


def _data(**data):
    return parse_spec({"data": data, "model": {"name": "mlp"}}).data


@pytest.mark.parametrize(
    "data",
    [
        SMALL,
        {"name": "digits", "n_train": 300, "n_val": 100, "n_test": 100},
        {"name": "moons", "n_train": 50, "n_val": 20, "n_test": 20},
        {"name": "toy1d", "n_train": 20, "n_val": 10, "n_test": 10},
    ],
    ids=lambda d: d["name"],
)
def test_the_labelled_splits_are_the_same_with_or_without_unlabelled_rows(data, cache_dir):
    plain = build_dataset(_data(**data), 3, cache_dir)
    more = build_dataset(_data(**data, n_unlabeled=40), 3, cache_dir)
    assert plain.unlabeled is None
    assert more.unlabeled is not None and tuple(more.unlabeled.shape) == (40, plain.in_features)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(plain, split).x, getattr(more, split).x), split
        assert torch.equal(getattr(plain, split).y, getattr(more, split).y), split
    # no unlabelled row repeats a labelled one (the shipped pool is split, generators draw anew)
    pool = torch.cat([more.train.x, more.val.x, more.test.x])
    assert torch.cdist(more.unlabeled, pool).min() > 1e-6


def test_unlabelled_inputs_are_standardized_with_the_training_split_statistics(cache_dir):
    ds = build_dataset(_data(**SMALL, n_unlabeled=2000), 0, cache_dir)
    raw = build_dataset(_data(**SMALL, n_unlabeled=2000, standardize=False), 0, cache_dir)
    mean, std = ds.extras["feature_mean"], ds.extras["feature_std"]
    want = (raw.unlabeled.double() - torch.as_tensor(mean)) / torch.as_tensor(std)
    assert torch.allclose(ds.unlabeled.double(), want, atol=1e-5)
    # the same distribution as the training inputs: standardized, about zero mean and unit scale
    assert abs(float(ds.unlabeled.mean())) < 0.1 and 0.8 < float(ds.unlabeled.std()) < 1.2


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"name": "wine", "n_train": 100, "n_test": 30, "n_val": 20, "n_unlabeled": 50}, "data",
         "n_unlabeled = 200 exceeds the 178"),
        ({"name": "mnist1d", "n_unlabeled": 0}, "data.n_unlabeled", "greater than or equal to 1"),
        ({"name": "upload", "id": "a" * 32, "n_unlabeled": 5}, "data.n_unlabeled",
         "built-in datasets"),
    ],
)  # fmt: skip
def test_bad_unlabelled_counts_are_refused_naming_the_field(data, field, words):
    with pytest.raises(SpecError) as err:
        parse_spec({"data": data, "model": {"name": "mlp"}})
    assert any(e["field"] == field and words in e["message"] for e in err.value.errors), err.value


def test_pseudo_label_without_an_unlabelled_pool_is_refused():
    with pytest.raises(SpecError) as err:
        make_spec(data=SMALL, regularizers=[{"name": "pseudo_label"}])
    assert err.value.errors[0]["field"] == "regularizers[0]"
    assert "data.n_unlabeled" in err.value.errors[0]["message"]


def test_the_loop_draws_an_unlabelled_batch_only_for_a_regularizer_that_reads_it(
    tmp_path, cache_dir
):
    data = {**SMALL, "n_unlabeled": 400}
    plain = trainer(make_spec(data=data, regularizers=[{"name": "l2"}]), tmp_path / "a", cache_dir)
    assert plain.unlabeled is None
    reads = trainer(
        make_spec(data=data, regularizers=[{"name": "consistency"}]), tmp_path / "b", cache_dir
    )
    assert reads.unlabeled is not None
    # a batch of 50 of 100 labelled rows: 200 of the 400 unlabelled rows beside it
    batch = reads.unlabeled.draw()
    assert tuple(batch.shape) == (200, 40)
    rows = {tuple(r.tolist()) for r in reads.data.unlabeled}
    assert all(tuple(r.tolist()) in rows for r in batch)


def test_unlabelled_batches_come_from_their_own_seeded_stream():
    x = torch.arange(30.0).reshape(10, 3)
    a, b = UnlabeledBatches(x, 5, 5, seed=1), UnlabeledBatches(x, 5, 5, seed=1)
    assert a.size == 10
    torch.manual_seed(0)
    first = a.draw()
    torch.manual_seed(123)  # the global stream does not move them
    assert torch.equal(first, b.draw())


def test_a_cancelled_semi_supervised_run_resumes_to_the_same_end(tmp_path, cache_dir):
    spec = make_spec(
        data={**SMALL, "n_unlabeled": 300},
        train={"optimizer": "adam", "lr": 0.003, "batch_size": 50, "epochs": 4, "device": "cpu"},
        regularizers=[
            {"name": "pseudo_label", "threshold": 0.0, "ramp_up": 0.0},
            {"name": "consistency", "mode": "mean_teacher"},
        ],
    )
    kw = {"cache_dir": cache_dir, "threads": 1}
    whole = run_experiment(spec, workdir=tmp_path / "whole", **kw)
    cut = run_experiment(spec, workdir=tmp_path / "cut", reporter=CancelAfter(2), **kw)
    assert cut.status == "cancelled"
    resumed = run_experiment(spec, workdir=tmp_path / "cut", resume=True, **kw)
    assert resumed.status == "succeeded" and resumed.metrics == whole.metrics


def test_the_unlabelled_batch_is_at_most_16_labelled_batches():
    from regcore.spec import unlabeled_batch_size

    assert unlabeled_batch_size(50, 300, 3000) == 500  # one pass over the pool an epoch
    assert unlabeled_batch_size(50, 10, 200_000) == 160  # 16·B, when B is the whole train split
    assert unlabeled_batch_size(100, 300, 30) == 10  # a small pool: a small batch


def test_the_memory_estimate_counts_the_pool_and_its_extra_passes():
    from regcore.memory_estimate import estimate

    data = {"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 100}
    plain = estimate(make_spec(data=data))
    pool = estimate(make_spec(data={**data, "n_unlabeled": 100_000}))
    semi = estimate(
        make_spec(data={**data, "n_unlabeled": 100_000}, regularizers=[{"name": "consistency"}])
    )
    assert pool.parts["data"].bytes > 100 * plain.parts["data"].bytes
    assert semi.parts["activations"].bytes > 10 * pool.parts["activations"].bytes
