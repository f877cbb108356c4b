"""The data section of the spec: upload and file sources, and model/regularizer fit to shapes."""

from __future__ import annotations

import pytest
import torch

from regcore.experiment import run
from regcore.spec import DataInfo, SpecError, parse_spec
from tests.datasets import files as F

ID = "ab" * 16


def check(model: dict, info: DataInfo, **over) -> list[dict[str, str]]:
    data = {"data": {"name": "upload", "id": ID}, "model": model, **over}
    try:
        parse_spec(data, datasets={ID: info})
    except SpecError as err:
        return err.errors
    return []


TABLE = DataInfo("classification", "table", (100, 5), 2)
SIGNAL3 = DataInfo("classification", "signal", (100, 3, 20), 2)
IMAGE = DataInfo("classification", "image", (100, 8, 8), 2)
IMAGE3 = DataInfo("classification", "image", (100, 3, 8, 8), 2)


@pytest.mark.parametrize(
    ("model", "info", "over", "field", "words"),
    [
        ({"name": "cnn1d"}, TABLE, {}, "model", "'resmlp'"),
        ({"name": "gru"}, SIGNAL3, {}, "model", "'cnn1d'"),
        ({"name": "mlp"}, IMAGE3, {"regularizers": [{"name": "tangent_prop"}]},
         "regularizers[0]", "single-channel"),
        ({"name": "mlp"}, SIGNAL3, {"regularizers": [{"name": "augment", "transforms": ["shift"]}]},
         "regularizers[0].transforms", "['scale', 'noise']"),
        ({"name": "cnn2d"}, IMAGE, {"data": {"name": "upload", "id": ID, "n_train": 200}},
         "data", "exceeds the 100"),
        ({"name": "mlp"}, DataInfo("regression", "table", (100, 5), None),
         {"regularizers": [{"name": "label_smoothing"}]}, "regularizers[0]", "classification"),
    ],
)  # fmt: skip
def test_what_does_not_fit_the_data_is_named(model, info, over, field, words):
    errors = check(model, info, **over)
    assert errors and errors[0]["field"] == field and words in errors[0]["message"], errors


@pytest.mark.parametrize(
    ("model", "info"), [({"name": "cnn2d"}, IMAGE), ({"name": "cnn2d"}, IMAGE3),
                        ({"name": "cnn1d"}, SIGNAL3), ({"name": "mlp"}, TABLE)],
)  # fmt: skip
def test_what_fits_is_accepted(model, info):
    assert check(model, info) == []


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "upload"}, "data.id"),
        ({"name": "upload", "id": ID, "path": "x.npz"}, "data.path"),
        ({"name": "mnist1d", "id": ID}, "data.id"),
        ({"name": "file"}, "data.path"),
        ({"name": "upload", "id": "../../etc"}, "data.id"),
    ],
)
def test_each_source_takes_its_own_fields(data, field):
    with pytest.raises(SpecError) as err:
        parse_spec({"data": data, "model": {"name": "mlp"}})
    assert err.value.errors[0]["field"] == field


def test_cnn2d_on_builtins_reads_digits_only():
    assert parse_spec({"data": {"name": "digits"}, "model": {"name": "cnn2d"}})
    with pytest.raises(SpecError) as err:
        parse_spec({"data": {"name": "mnist1d"}, "model": {"name": "cnn2d"}})
    assert err.value.errors[0]["field"] == "model"


@pytest.mark.parametrize("channels", ["signal", "image"])
def test_multichannel_rows_train_on_their_conv_model(tmp_path, channels):
    torch.set_num_threads(1)
    if channels == "image":
        x, y = F.images(300)
        x = x[:, None].repeat(3, axis=1)  # (N, 3, 8, 8)
        model, kind = {"name": "cnn2d", "channels": [4]}, None
    else:
        x, y = F.table(n=300, f=12)
        x = x.reshape(300, 3, 4)
        model, kind = {"name": "cnn1d", "channels": [4], "hidden": [16]}, "signal"
    (tmp_path / "m.npz").write_bytes(F.npz(x=x, y=y))
    data = {"name": "file", "path": str(tmp_path / "m.npz"), **({"kind": kind} if kind else {})}
    train = {"optimizer": "adam", "lr": 0.01, "epochs": 10, "batch_size": 32, "device": "cpu"}
    spec = parse_spec({"data": data, "model": model, "train": train}, local=True)
    result = run(spec, workdir=tmp_path / "out", threads=1)
    assert result.status == "succeeded", result.reason
    assert result.summary()["metrics"]["test_acc"] > 0.9


def test_an_uploaded_regression_set_takes_the_regression_ensemble_rules():
    reg = DataInfo("regression", "table", (100, 5), None)
    assert check({"name": "mlp"}, reg, ensemble={"members": 3, "combine": "median"}) == []
    errors = check({"name": "mlp"}, reg, multitask={"target": "peak"})
    assert errors and "is regression" in errors[0]["message"]
