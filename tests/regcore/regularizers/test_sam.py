"""sam: the ascent step, the hook (gradient taken at w + e, weights restored), the effect."""

from __future__ import annotations

import pytest
import torch

from regcore.regularizers.sam import ascent_step
from regcore.training.metrics import data_loss
from tests.regcore.runs import history, make_spec, train, trainer


def test_ascent_step_has_length_rho_along_the_gradient():
    g = [torch.tensor([3.0, 0.0]), torch.tensor([[4.0]])]
    e = ascent_step(g, 0.5)
    assert torch.allclose(e[0], torch.tensor([0.3, 0.0])) and torch.allclose(
        e[1], torch.tensor([[0.4]])
    )


def test_the_step_leaves_the_weights_unchanged_and_the_gradient_of_the_perturbed_point(
    tmp_path, cache_dir
):
    spec = make_spec(regularizers=[{"name": "sam", "rho": 0.1}])
    tr = trainer(spec, tmp_path, cache_dir)
    model = tr.model
    x, y = tr.data.train.x[:50], tr.data.train.y[:50]
    params = list(model.parameters())
    w = [p.detach().clone() for p in params]
    # expected: ∇L at w + ρ g/‖g‖
    g = torch.autograd.grad(data_loss(model(x), y, "classification"), params)
    e = ascent_step(list(g), 0.1)
    with torch.no_grad():
        for p, d in zip(params, e, strict=True):
            p.add_(d)
    expected = torch.autograd.grad(data_loss(model(x), y, "classification"), params)
    with torch.no_grad():
        for p, w0 in zip(params, w, strict=True):
            p.copy_(w0)
    tr.optimizer.step = lambda *a, **k: None  # look at the gradient the optimizer would use
    tr.train_step(x, y, {})
    for p, w0, exp in zip(params, w, expected, strict=True):
        assert torch.equal(p, w0)
        assert torch.allclose(p.grad, exp, atol=1e-6)


def test_penalty_gradients_are_kept(tmp_path, cache_dir):
    """With l2 the SAM gradient is ∇L_data(w + e) + 2λw."""
    spec = make_spec(regularizers=[{"name": "sam"}, {"name": "l2", "strength": 0.5}])
    tr = trainer(spec, tmp_path, cache_dir)
    plain = trainer(make_spec(regularizers=[{"name": "sam"}]), tmp_path / "b", cache_dir)
    plain.model.load_state_dict(tr.model.state_dict())
    for t in (tr, plain):
        t.optimizer.step = lambda *a, **k: None
    x, y = tr.data.train.x[:50], tr.data.train.y[:50]
    tr.train_step(x, y, {})
    plain.train_step(x, y, {})
    w = tr.model.out.weight
    diff = tr.model.out.weight.grad - plain.model.out.weight.grad
    # the ascent direction differs (it includes the penalty), so compare loosely
    assert torch.allclose(diff, 2 * 0.5 * w.detach(), atol=0.05)


@pytest.mark.parametrize("seed", [0, 1])
def test_sam_ends_with_lower_sharpness_than_sgd_from_the_same_start(tmp_path, cache_dir, seed):
    base = dict(
        seed=seed,
        data={"name": "mnist1d", "n_train": 200, "n_val": 100, "n_test": 100},
        model={"name": "mlp", "hidden": [64]},
        train={"optimizer": "sgd", "lr": 0.1, "batch_size": 25, "epochs": 15, "device": "cpu"},
        measure=["sharpness"],
    )
    train(make_spec(**base), tmp_path / "sgd", cache_dir)
    train(
        make_spec(**base, regularizers=[{"name": "sam", "rho": 0.2}]), tmp_path / "sam", cache_dir
    )
    sgd, sam = history(tmp_path / "sgd"), history(tmp_path / "sam")
    assert sam["sharpness"][-1] < 0.9 * sgd["sharpness"][-1]


def test_sam_with_a_loss_transform_is_refused_at_the_transforms_field():
    from regcore.spec import SpecError

    with pytest.raises(SpecError) as err:
        make_spec(regularizers=[{"name": "sam"}, {"name": "flooding", "level": 0.1}])
    assert err.value.errors[0]["field"] == "regularizers[1]"
    assert "sam" in err.value.errors[0]["message"]


@pytest.mark.parametrize(("others", "grads"), [([], 1), ([{"name": "l2"}], 2)])
def test_the_extra_backward_runs_only_when_another_term_is_in_the_loss(
    others, grads, tmp_path, cache_dir, monkeypatch
):
    import regcore.regularizers.sam as sam_module

    tr = trainer(make_spec(regularizers=[{"name": "sam"}, *others]), tmp_path, cache_dir)
    calls = []
    real = torch.autograd.grad

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(sam_module.torch.autograd, "grad", counting)
    tr.train_step(tr.data.train.x[:50], tr.data.train.y[:50], {})
    assert len(calls) == grads
