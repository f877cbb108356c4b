import torch

from regcore.regularizers.hidden_noise import GaussianNoise, add_gaussian_noise
from tests.regcore.runs import make_spec, train, trainer

OVERFIT = {
    "data": {"name": "mnist1d", "n_train": 200, "n_val": 200, "n_test": 300},
    "model": {"name": "mlp", "hidden": [128]},
    "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 30, "device": "cpu"},
}


def test_noise_is_h_plus_sigma_times_a_standard_normal_draw():
    h = torch.arange(6.0).reshape(2, 3)
    torch.manual_seed(3)
    out = add_gaussian_noise(h, 0.5)
    torch.manual_seed(3)
    assert torch.allclose(out, h + 0.5 * torch.randn(2, 3))
    big = add_gaussian_noise(torch.zeros(200_000), 0.3)
    assert abs(float(big.mean())) < 0.005 and abs(float(big.std()) - 0.3) < 0.005


def test_noise_module_is_the_identity_in_eval_mode():
    mod = GaussianNoise(1.0)
    h = torch.randn(4, 5)
    mod.eval()
    assert torch.equal(mod(h), h)
    mod.train()
    assert not torch.equal(mod(h), h)


def test_configure_model_appends_noise_to_every_hidden_slot_and_eval_is_deterministic(
    tmp_path, cache_dir
):
    spec = make_spec(
        model={"name": "mlp", "hidden": [16, 16]},
        regularizers=[{"name": "hidden_noise", "sigma": 0.5}],
    )
    t = trainer(spec, tmp_path, cache_dir)
    slots = t.model.slots("hidden")
    assert len(slots) == 2
    assert all(isinstance(s.ops[-1], GaussianNoise) for s in slots)
    x = t.data.test.x[:8]
    t.model.eval()
    assert torch.equal(t.model(x), t.model(x))
    t.model.train()
    assert not torch.equal(t.model(x), t.model(x))


def test_hidden_noise_lowers_the_generalization_gap_of_an_overfit_mlp(tmp_path, cache_dir):
    for seed in (0, 1):
        plain = train(make_spec(seed=seed, **OVERFIT), tmp_path / f"p{seed}", cache_dir)
        noisy = train(
            make_spec(seed=seed, regularizers=[{"name": "hidden_noise", "sigma": 1.0}], **OVERFIT),
            tmp_path / f"n{seed}",
            cache_dir,
        )
        assert noisy.metrics["gen_gap"] < plain.metrics["gen_gap"] - 0.1
