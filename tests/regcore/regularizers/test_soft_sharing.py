import pytest
import torch

from regcore.regularizers.soft_sharing import SoftSharing, fresh_copy
from regcore.regularizers.tie import tie_penalty
from tests.regcore.runs import history, make_spec, train, trainer

DATA = {"name": "mnist1d", "n_train": 300, "n_val": 100, "n_test": 500}
TRAIN = {"optimizer": "sgd", "lr": 0.05, "batch_size": 50, "epochs": 30, "device": "cpu"}
MLP = {"name": "mlp", "hidden": [64, 64]}


def _spec(*regs):
    return make_spec(data=DATA, model=MLP, train=TRAIN, regularizers=list(regs))


def test_the_peer_is_a_fresh_network_and_drawing_it_leaves_the_runs_stream(tmp_path, cache_dir):
    t = trainer(_spec(), tmp_path, cache_dir)
    before = torch.get_rng_state()
    peer = fresh_copy(t.model, 7)
    assert torch.equal(torch.get_rng_state(), before)
    assert not torch.equal(peer.out.weight, t.model.out.weight)
    assert torch.equal(fresh_copy(t.model, 7).out.weight, peer.out.weight)


def test_the_penalty_is_the_peers_loss_plus_lambda_times_the_shared_distance(tmp_path, cache_dir):
    t = trainer(_spec({"name": "soft_sharing", "strength": 0.3}), tmp_path, cache_dir)
    reg = t.regs[0]
    assert isinstance(reg, SoftSharing)
    assert reg.names == ["body.0.weight", "body.3.weight"]  # the head and the biases are not shared
    x, y = t.data.train.x[:50], t.data.train.y[:50]
    step = type("S", (), {"model": t.model, "x": x, "y": y, "loss_fn": t._loss_fn})()
    want = t._loss_fn(reg.peer(x), y) + tie_penalty(reg.params, reg.peer_params, 0.3)
    assert float(reg.penalty(step).detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    shared_head = trainer(
        _spec({"name": "soft_sharing", "share_head": True}), tmp_path / "h", cache_dir
    )
    assert shared_head.regs[0].names[-1] == "out.weight"


def test_at_strength_zero_the_run_trains_exactly_as_without_a_peer(tmp_path, cache_dir):
    plain = train(_spec(), tmp_path / "plain", cache_dir)
    paired = train(_spec({"name": "soft_sharing", "strength": 0.0}), tmp_path / "pair", cache_dir)
    for key in ("train_loss", "val_loss", "test_loss", "test_acc", "weight_l2"):
        assert paired.metrics[key] == plain.metrics[key], key


def test_the_shared_layers_draw_together_as_the_strength_grows(tmp_path, cache_dir):
    """Seed 0, 30 epochs: the final ‖w − w′‖ falls with λ; at λ = 1 the two networks are nearly
    one (hard sharing), at λ = 0 they stay as far apart as two initializations."""
    distance = {}
    for strength in (0.0, 0.01, 0.1, 1.0):
        work = tmp_path / str(strength)
        train(_spec({"name": "soft_sharing", "strength": strength}), work, cache_dir)
        distance[strength] = history(work)["soft_sharing_distance"][-1]
    d = [distance[s] for s in (0.0, 0.01, 0.1, 1.0)]
    assert d == sorted(d, reverse=True), distance
    assert d[-1] < 0.1 * d[0], distance


def test_a_jointly_trained_peer_raises_test_accuracy_on_300_labels(tmp_path, cache_dir):
    """MLP [100, 100], plain SGD, 60 epochs, measured (test accuracy on 1,000 rows, seeds 0, 1,
    2): alone 0.278 0.261 0.270; soft_sharing λ = 0.1: 0.297 0.279 0.292 (λ = 1: 0.296 0.278
    0.286). Why is not shown here; one reading: pulled toward a network of another
    initialization, the run's averages some of its own initialization's variance away."""
    data = {"name": "mnist1d", "n_train": 300, "n_val": 200, "n_test": 1000}
    spec = {"data": data, "model": {"name": "mlp", "hidden": [100, 100]}}
    spec["train"] = {**TRAIN, "epochs": 60}
    alone = train(make_spec(**spec), tmp_path / "alone", cache_dir)
    shared = {"name": "soft_sharing", "strength": 0.1}
    paired = train(make_spec(**spec, regularizers=[shared]), tmp_path / "pair", cache_dir)
    assert paired.metrics["test_acc"] > alone.metrics["test_acc"] + 0.01
