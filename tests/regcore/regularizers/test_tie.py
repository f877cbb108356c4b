import pytest
import torch
from safetensors.torch import save_file

from regcore.regularizers.tie import Tie, tie_penalty
from tests.regcore.runs import make_spec, trainer

SHORT = {"train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 50, "epochs": 10, "device": "cpu"}}


def test_tie_penalty_is_lambda_times_the_squared_distance_to_the_reference():
    p = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    r = [torch.tensor([0.0, 0.0]), torch.tensor([[1.0]])]
    assert float(tie_penalty(p, r, 0.5)) == pytest.approx(0.5 * (1 + 4 + 4))


def test_setup_ties_to_the_initial_weights_and_penalty_matches_the_function(tmp_path, cache_dir):
    t = trainer(make_spec(regularizers=[{"name": "tie", "strength": 0.1}]), tmp_path, cache_dir)
    reg = t.regs[0]
    assert isinstance(reg, Tie)
    assert reg.names == ["body.0.weight", "out.weight"]
    with torch.no_grad():
        t.model.out.weight.add_(1.0)
    expected = 0.1 * t.model.out.weight.numel()
    assert float(reg.penalty(None).detach()) == pytest.approx(expected, rel=1e-5)


def test_a_safetensors_checkpoint_can_be_the_reference(tmp_path, cache_dir):
    base = trainer(make_spec(), tmp_path / "a", cache_dir)
    ref = {k: torch.full_like(v, 0.5) for k, v in base.model.state_dict().items()}
    path = tmp_path / "ref.safetensors"
    save_file(ref, str(path))
    t = trainer(
        make_spec(local=True, regularizers=[{"name": "tie", "reference": str(path)}]),
        tmp_path,
        cache_dir,
    )
    assert all(torch.all(r == 0.5) for r in t.regs[0].refs)
    with pytest.raises(FileNotFoundError, match="tie.reference"):
        trainer(
            make_spec(
                local=True, regularizers=[{"name": "tie", "reference": str(tmp_path / "nope")}]
            ),
            tmp_path / "b",
            cache_dir,
        )


def _distance_from_start(reg_list, tmp_path, cache_dir, seed):
    t = trainer(make_spec(seed=seed, regularizers=reg_list, **SHORT), tmp_path, cache_dir)
    start = {n: p.detach().clone() for n, p in t.model.named_parameters() if n.endswith("weight")}
    t.run()
    with torch.no_grad():
        sq = sum(
            float((p - start[n]).pow(2).sum()) for n, p in t.model.named_parameters() if n in start
        )
    return sq**0.5


def test_tie_keeps_the_weights_nearer_their_initial_values_than_without(tmp_path, cache_dir):
    for seed in (0, 1):
        plain = _distance_from_start([], tmp_path / f"p{seed}", cache_dir, seed)
        tied = _distance_from_start(
            [{"name": "tie", "strength": 0.1}], tmp_path / f"t{seed}", cache_dir, seed
        )
        assert tied < 0.8 * plain
