import numpy as np
import pytest
import torch

from regcore.data import build_dataset
from regcore.data.mnist1d_render import TorchRenderer, generate, mnist1d_args, render
from regcore.regularizers.base import Step
from regcore.regularizers.feature_noise import (
    LATENT_SPREAD,
    FeatureNoise,
    match_rows,
    perturb,
    perturb_latents,
)
from regcore.spec import DataSpec
from regcore.training.context import RunContext
from tests.regcore.runs import make_spec, trainer


def test_generate_reproduces_the_packages_make_dataset_exactly():
    from mnist1d.data import make_dataset

    args = mnist1d_args(250, 100, seed=3)
    state = np.random.get_state()
    ref = make_dataset(args)
    mine, lat = generate(args)
    np.random.set_state(state)
    assert np.array_equal(ref["x"], mine["x"]) and np.array_equal(ref["x_test"], mine["x_test"])
    assert np.array_equal(ref["y"], mine["y"]) and np.array_equal(
        lat.template, np.concatenate([ref["y"], ref["y_test"]])
    )


def test_a_re_render_with_zero_noise_reproduces_every_example_exactly():
    args = mnist1d_args(250, 100, seed=4)
    data, lat = generate(args)
    every = np.concatenate([data["x"], data["x_test"]])
    for i in range(len(every)):
        assert np.array_equal(render(lat, i, args, data["mean"], data["std"]), every[i])


def test_the_torch_renderer_reproduces_the_built_train_split(cache_dir):
    d = build_dataset(DataSpec(name="mnist1d", n_train=300, n_val=100, n_test=200), 0, cache_dir)
    tl = d.extras["mnist1d_latents"]()
    r = TorchRenderer(
        tl.args, tl.mean, tl.std, "cpu", d.extras["feature_mean"], d.extras["feature_std"]
    )
    out = r(**r.latents_to_tensors(tl.latents, "cpu"))
    assert torch.allclose(out, d.train.x, atol=1e-4)
    # zero noise through the perturbation is also the identity
    lat = r.latents_to_tensors(tl.latents, "cpu")
    again = r(**perturb_latents(lat, 0.0, "additive", (36, 60)))
    assert torch.allclose(again, d.train.x, atol=1e-4)


def test_perturb_is_additive_or_multiplicative_gaussian_noise():
    z = torch.full((200_000,), 2.0)
    add = perturb(z, 0.1, "additive", spread=3.0)
    mul = perturb(z, 0.1, "multiplicative")
    assert float(add.mean()) == pytest.approx(2.0, abs=0.01) and float(add.std()) == pytest.approx(
        0.3, rel=0.02
    )
    assert float(mul.mean()) == pytest.approx(2.0, abs=0.01) and float(mul.std()) == pytest.approx(
        0.2, rel=0.02
    )
    assert set(LATENT_SPREAD) == {"padding", "scale", "shift", "shear", "corr_noise", "iid_noise"}


def test_match_rows_finds_each_batch_row_in_the_pool():
    pool = torch.randn(50, 40)
    idx = torch.tensor([7, 3, 49, 0])
    assert torch.equal(match_rows(pool[idx], pool), idx)


def test_transform_batch_re_renders_mnist1d_examples_and_keeps_labels(tmp_path, cache_dir):
    spec = make_spec(regularizers=[{"name": "feature_noise", "sigma": 0.3}])
    t = trainer(spec, tmp_path, cache_dir)
    reg = t.regs[0]
    assert isinstance(reg, FeatureNoise) and reg.bound  # the Trainer binds the data
    with pytest.raises(RuntimeError, match="bind_data"):
        FeatureNoise(reg.spec, reg.task).render(t.data.train.x[:4])
    idx = torch.arange(20)
    x, y = t.data.train.x[idx], t.data.train.y[idx]
    step = Step(t.model, t.optimizer, t._loss_fn, x, y, 0, 0, indices=idx)
    x_hat, y_hat = reg.transform_batch(x, y, step)
    assert torch.equal(y_hat, y) and x_hat.shape == x.shape
    # without indices the rows are found by nearest neighbour: the same rendering inputs
    torch.manual_seed(0)
    by_index = reg.render(x, idx)
    torch.manual_seed(0)
    assert torch.equal(reg.render(x), by_index)
    assert not torch.allclose(x_hat, x)
    # the same class template: the re-rendered example stays closer to its own original
    assert float((x_hat - x).norm(dim=1).mean()) < float((x_hat - x.roll(1, 0)).norm(dim=1).mean())


def test_other_data_use_an_autoencoders_decoder(tmp_path, cache_dir):
    spec = make_spec(
        data={"name": "wine"},
        regularizers=[{"name": "feature_noise", "sigma": 0.0, "ae_epochs": 300}],
    )
    t = trainer(spec, tmp_path, cache_dir)
    reg = t.regs[0]
    x = t.data.train.x
    x_hat = reg.render(x)
    # zero noise: the decoder's reconstruction, which is far better than predicting the mean
    assert float((x_hat - x).pow(2).mean()) < 0.5 * float(x.pow(2).mean())


def test_feature_noise_beats_no_augmentation_on_300_real_mnist1d_samples(tmp_path, cache_dir):
    base = {
        "data": {"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 500},
        "model": {"name": "mlp", "hidden": [128]},
        "train": {
            "optimizer": "adam",
            "lr": 0.003,
            "batch_size": 50,
            "epochs": 40,
            "device": "cpu",
        },
    }
    for seed in (0, 1):
        accs = []
        for regs in ([], [{"name": "feature_noise", "sigma": 0.5}]):
            t = trainer(
                make_spec(seed=seed, regularizers=regs, **base),
                tmp_path / f"{seed}{len(regs)}",
                cache_dir,
            )
            accs.append(t.run().metrics["test_acc"])
        assert accs[1] > accs[0] + 0.02


def _zero_noise_error(reg: FeatureNoise, x: torch.Tensor) -> float:
    idx = torch.arange(len(x))
    return float((reg.render(x, idx) - x).abs().max())


def test_bagged_members_re_render_their_own_resampled_rows(tmp_path, cache_dir):
    from regcore.ensemble.runner import EnsembleRun

    spec = make_spec(
        data={"name": "mnist1d", "n_train": 200, "n_val": 50, "n_test": 50},
        ensemble={"members": 2, "bagging": True, "batched": "off"},
        regularizers=[{"name": "feature_noise", "sigma": 0.0}],
    )
    ens = EnsembleRun(
        RunContext.build(spec, tmp_path, cache_dir=cache_dir, threads=1, checkpoint_every=0)
    )
    for m in ens.members:
        reg = m.trainer.regs[0]
        assert isinstance(reg, FeatureNoise)
        # zero noise renders each resampled row as itself (the latents follow the resample)
        assert _zero_noise_error(reg, m.trainer.data.train.x) < 1e-4


def test_the_train_val_retrain_re_renders_the_merged_split(tmp_path, cache_dir):
    from regcore.experiment import run

    es = {"name": "early_stopping", "patience": 1, "retrain_on_train_val": True}
    spec = make_spec(
        data={"name": "mnist1d", "n_train": 100, "n_val": 50, "n_test": 50},
        train={"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 2, "device": "cpu"},
        regularizers=[{"name": "feature_noise", "sigma": 0.0}, es],
    )
    r = run(spec, tmp_path, cache_dir=cache_dir, threads=1, checkpoint_every=0)
    assert r.status == "succeeded" and r.metrics["train_examples"] == 150
    # the latents it bound cover the val rows too: zero noise reproduces all 150
    from regcore.data import build_dataset
    from regcore.ensemble.members import with_train

    d = build_dataset(spec.data, spec.seed, cache_dir)
    merged = type(d.train)(torch.cat([d.train.x, d.val.x]), torch.cat([d.train.y, d.val.y]))
    reg = FeatureNoise(spec.regularizers[0], None)  # type: ignore[arg-type]
    reg.bind_data(with_train(d, merged, torch.arange(150)))
    assert _zero_noise_error(reg, merged.x) < 1e-4
