"""``--model FILE.pt2``: a torch.export program rebuilt from standard modules (hwq.workloads.exported)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from hwq.cli import main
from hwq.quant.api import quantize
from hwq.serialize import load
from hwq.workloads.exported import load_exported
from hwq.workloads.models import lenet5, resnet8, sepnet
from hwq.workloads.user import as_data


class _MeanHead(nn.Module):
    """Global average pooling written as ``mean((2, 3))`` and a ``view`` flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6)
        self.fc = nn.Linear(6 * 4 * 4, 3)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.relu6(self.conv2(torch.clamp(self.conv(x), min=0)))
        return self.fc(y.view(y.shape[0], -1)) + self.fc2(y.mean((2, 3)))


def _kws() -> nn.Module:
    return nn.Sequential(nn.Conv1d(2, 4, 3, padding="same"), nn.BatchNorm1d(4), nn.ReLU6(),
                         nn.Dropout(0.2), nn.Flatten(), nn.Linear(32, 3))


MODELS = {
    "lenet5": (lambda: lenet5(1), (1, 28, 28)),
    "resnet8": (lambda: resnet8(1), (1, 28, 28)),
    "sepnet": (lambda: sepnet(1), (1, 28, 28)),
    "kws": (_kws, (2, 8)),
    "mean-view": (_MeanHead, (1, 8, 8)),
}


def _export(name: str, path) -> tuple[nn.Module, torch.Tensor]:
    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    for m in model.modules():  # statistics that make the folding matter
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(4, *shape)
    torch.export.save(torch.export.export(model, (x,)), path)
    return model, x


@pytest.mark.parametrize("name", sorted(MODELS))
def test_an_exported_program_computes_what_the_model_does(name, tmp_path):
    model, x = _export(name, tmp_path / "m.pt2")
    rebuilt = load_exported(tmp_path / "m.pt2")
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


@pytest.mark.parametrize("name", ["resnet8", "kws"])
def test_an_exported_program_quantizes_to_the_same_network(name, tmp_path):
    model, _ = _export(name, tmp_path / "m.pt2")
    shape = MODELS[name][1]
    rng = np.random.default_rng(0)
    data = as_data({"x": rng.normal(size=(40, *shape)).astype(np.float32),
                    "y": rng.integers(0, 3, 40)})
    a = quantize(model, "uniform", bits=4, data=data).network
    b = quantize(load_exported(tmp_path / "m.pt2"), "uniform", bits=4, data=data).network
    assert [op.kind for op in a.ops] == [op.kind for op in b.ops]
    assert a.input_scale == b.input_scale
    for oa, ob in zip(a.weight_ops(), b.weight_ops(), strict=True):
        np.testing.assert_array_equal(oa.weight, ob.weight)
        for field in ("bias", "M", "S"):
            np.testing.assert_array_equal(getattr(oa.requant, field), getattr(ob.requant, field))


def test_an_unmapped_operator_is_named(tmp_path):
    class Gelu(nn.Module):
        def forward(self, x):
            return nn.functional.gelu(x) + torch.sigmoid(x)

    torch.export.save(torch.export.export(Gelu(), (torch.zeros(1, 4),)), tmp_path / "g.pt2")
    with pytest.raises(ValueError, match=r"g\.pt2 uses aten\.gelu, aten\.sigmoid, which hwq "
                                         r"does not map; allowed: .*aten\.conv2d"):
        load_exported(tmp_path / "g.pt2")


def test_a_program_of_two_inputs_is_refused(tmp_path):
    class Two(nn.Module):
        def forward(self, x, y):
            return x + y

    z = torch.zeros(1, 4)
    torch.export.save(torch.export.export(Two(), (z, z)), tmp_path / "two.pt2")
    with pytest.raises(ValueError, match="one input tensor and one output tensor, not 2 inputs "
                                         "and 1 outputs"):
        load_exported(tmp_path / "two.pt2")


def test_a_file_that_is_no_program_is_refused(tmp_path):
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk\.pt2 is not a torch\.export program"):
        load_exported(tmp_path / "junk.pt2")


def test_quantize_cli_takes_a_pt2_with_its_data(tmp_path, capsys):
    _export("kws", tmp_path / "kws.pt2")
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(30, 2, 8)).astype(np.float32),
             y=rng.integers(0, 3, 30))
    out = tmp_path / "net.safetensors"
    code = main(["quantize", "--model", str(tmp_path / "kws.pt2"), "--data",
                 str(tmp_path / "d.npz"), "--bits", "4", "-o", str(out), "--json",
                 "--no-progress"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert [op.kind for op in load(out).ops] == ["conv2d", "flatten", "linear"]
    assert main(["quantize", "--model", str(tmp_path / "kws.pt2"), "--bits", "4", "-o",
                 str(out)]) == 2
    assert capsys.readouterr().err == (f"hwq quantize: error: --model {tmp_path / 'kws.pt2'} "
                                       "(a torch.export program) needs --data FILE.npz\n")
