import pytest
import torch

from regcore.regularizers.tangent_prop import (
    image_gradients,
    rotate_tangent,
    shift_tangent,
    tangent_prop_penalty,
)
from tests.regcore.runs import make_spec, trainer

RUN = {"train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 15, "device": "cpu"}}


def shift_change(model, x) -> float:
    """mean ‖f(roll(x, 1)) − f(x)‖ under a one-step circular shift."""
    model.eval()
    with torch.no_grad():
        return float((model(torch.roll(x, 1, dims=-1)) - model(x)).norm(dim=1).mean())


def test_shift_tangent_is_the_circular_forward_difference():
    assert torch.equal(
        shift_tangent(torch.tensor([[1.0, 2.0, 4.0]])), torch.tensor([[1.0, 2.0, -3.0]])
    )


def test_image_tangents_of_a_ramp():
    img = torch.arange(3.0).repeat(3, 1)  # I(r, c) = c: ∂I/∂c = 1, ∂I/∂r = 0
    d_row, d_col = image_gradients(img.reshape(1, 9), (3, 3))
    assert torch.equal(d_col, torch.ones(1, 9)) and torch.equal(d_row, torch.zeros(1, 9))
    # rotating about the centre moves a horizontal ramp by (row offset)·∂I/∂c
    rot = rotate_tangent(img.reshape(1, 9), (3, 3)).reshape(3, 3)
    assert torch.equal(rot, torch.tensor([[-1.0] * 3, [0.0] * 3, [1.0] * 3]))


def test_penalty_of_a_linear_map_is_the_mean_squared_image_of_each_tangent():
    a = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    x = torch.tensor([[1.0, 2.0, 4.0], [0.0, 1.0, 0.0]])
    v = shift_tangent(x)  # [[1, 2, -3], [1, -1, 0]]
    got = tangent_prop_penalty(lambda z: z @ a.t(), x, [v, x])
    want = ((v @ a.t()).pow(2).sum() + (x @ a.t()).pow(2).sum()) / 2
    assert float(got) == pytest.approx(float(want))
    # (1·1 + 2·(−3))² + (2 + 3)² = 50 and (1)² + (−1)² = 2 from the shift tangent alone
    assert float(tangent_prop_penalty(lambda z: z @ a.t(), x, [v])) == pytest.approx((50 + 2) / 2)


def test_penalty_hook_matches_finite_differences_along_the_shift(tmp_path, cache_dir):
    t = trainer(
        make_spec(regularizers=[{"name": "tangent_prop", "strength": 0.5}]), tmp_path, cache_dir
    )
    reg = t.regs[0]
    assert reg.names == ["shift"]

    class S:
        model = t.model
        x = t.data.train.x[:16]

    t.model.eval()
    got = reg.penalty(S())
    eps = 1e-3
    v = shift_tangent(S.x)
    with torch.no_grad():
        jv = (t.model(S.x + eps * v) - t.model(S.x - eps * v)) / (2 * eps)
    assert float(got.detach()) == pytest.approx(0.5 * float(jv.pow(2).sum() / 16), rel=1e-2)
    assert t.model.out.weight in {p for p in t.model.parameters()}
    (g,) = torch.autograd.grad(got, [t.model.out.weight])
    assert float(g.abs().sum()) > 0


def test_batch_norm_models_get_the_training_mode_jvp_and_keep_their_running_stats(
    tmp_path, cache_dir
):
    spec = make_spec(
        model={"name": "mlp", "hidden": [32], "batch_norm": True},
        regularizers=[{"name": "tangent_prop", "strength": 1.0}],
    )
    t = trainer(spec, tmp_path, cache_dir)
    bn = next(m for m in t.model.modules() if isinstance(m, torch.nn.BatchNorm1d))
    before = (bn.running_mean.clone(), int(bn.num_batches_tracked))

    class S:
        model = t.model
        x = t.data.train.x[:16]

    t.model.train()
    got = t.regs[0].penalty(S())
    assert torch.equal(bn.running_mean, before[0]) and int(bn.num_batches_tracked) == before[1]
    # the jvp goes through the batch statistics, as training-mode finite differences do
    eps, v = 1e-3, shift_tangent(S.x)
    with torch.no_grad():
        jv = (t.model(S.x + eps * v) - t.model(S.x - eps * v)) / (2 * eps)
    assert float(got.detach()) == pytest.approx(float(jv.pow(2).sum() / 16), rel=1e-2)
    (g,) = torch.autograd.grad(got, [t.model.out.weight])
    assert float(g.abs().sum()) > 0


def test_image_transforms_are_refused_for_flat_data(cache_dir, tmp_path):
    with pytest.raises(ValueError, match="image data"):
        trainer(
            make_spec(regularizers=[{"name": "tangent_prop", "transforms": ["rotate"]}]),
            tmp_path,
            cache_dir,
        )


def test_digits_default_to_translate_and_rotate_and_train(tmp_path, cache_dir):
    spec = make_spec(
        data={"name": "digits", "n_train": 200, "n_val": 100, "n_test": 100},
        regularizers=[{"name": "tangent_prop"}],
        train={"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 1, "device": "cpu"},
    )
    t = trainer(spec, tmp_path, cache_dir)
    assert t.regs[0].names == ["translate", "rotate"]
    assert t.run().status == "succeeded"


def test_tangent_prop_lowers_the_output_change_under_a_one_step_shift(tmp_path, cache_dir):
    for seed in (0, 1):
        changes = []
        for regs in ([], [{"name": "tangent_prop", "strength": 0.1}]):
            t = trainer(
                make_spec(seed=seed, regularizers=regs, **RUN),
                tmp_path / f"{seed}{len(regs)}",
                cache_dir,
            )
            t.run()
            changes.append(shift_change(t.model, t.data.test.x))
        assert changes[1] < 0.9 * changes[0]
