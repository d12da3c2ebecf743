"""The digits reference workload: data split, model, training loop, pretrained cache.

The reference model is trained once per session (``digits_reference`` in conftest.py); every
other cache test replaces the training by a stub, so this file costs one training.
"""

from __future__ import annotations

import doctest
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from sklearn.datasets import load_digits
from torch import nn

from hwq.workloads import digits, train

from .stubs import StubFit

ALLOWED = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Linear)
N_TOTAL = 1797
N_TEST = 540
N_TRAIN = N_TOTAL - N_TEST
STEPS_PER_EPOCH = -(-N_TRAIN // 64)  # 20 batches of 64 (the last one of 41)


def _states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- data -----------------------------------------------------------------------------------


def test_split_sizes_and_types(digits_data):
    d = digits_data
    assert d.x_train.shape == (N_TRAIN, 1, 8, 8)
    assert d.x_test.shape == (N_TEST, 1, 8, 8)
    assert d.y_train.shape == (N_TRAIN,)
    assert d.y_test.shape == (N_TEST,)
    assert d.x_train.dtype == d.x_test.dtype == torch.float32
    assert d.y_train.dtype == d.y_test.dtype == torch.int64


def test_pixels_are_sixteenths_in_unit_range(digits_data):
    x = torch.cat([digits_data.x_train, digits_data.x_test])
    assert x.min().item() == 0.0
    assert x.max().item() == 1.0
    assert torch.equal(x * 16, (x * 16).round())


def test_split_is_a_partition_of_the_data_set(digits_data):
    raw = load_digits()
    d = digits_data
    mine = torch.cat([d.x_train, d.x_test]).reshape(N_TOTAL, 64) * 16
    labels = torch.cat([d.y_train, d.y_test])
    # same multiset of (image, label) rows as the bundled data set
    ours = np.concatenate([mine.numpy(), labels.numpy()[:, None]], axis=1)
    theirs = np.concatenate([raw.data, raw.target[:, None]], axis=1).astype(np.float32)
    np.testing.assert_array_equal(
        ours[np.lexsort(ours.T[::-1])], theirs[np.lexsort(theirs.T[::-1])]
    )
    np.testing.assert_array_equal(np.bincount(labels.numpy()), np.bincount(raw.target))


def test_split_is_stratified(digits_data):
    per_class = np.bincount(load_digits().target)
    test_counts = np.bincount(digits_data.y_test.numpy(), minlength=10)
    # every class holds its share of the 540 test images, to within one image
    assert np.all(np.abs(test_counts - N_TEST * per_class / N_TOTAL) < 1)
    assert test_counts.sum() == N_TEST


def test_split_is_deterministic(digits_data):
    again = digits.load_data()
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(again, name), getattr(digits_data, name)), name
    assert again.x_train is not digits_data.x_train  # fresh tensors each call


def test_data_is_frozen(digits_data):
    with pytest.raises(AttributeError):
        digits_data.x_train = digits_data.x_test


# --- model ----------------------------------------------------------------------------------


def test_model_uses_only_hardware_layers():
    model = digits.build_model(seed=0)
    leaves = [m for m in model.modules() if not list(m.children())]
    assert all(type(m) in ALLOWED for m in leaves)
    assert [type(m).__name__ for m in model] == [
        "Conv2d", "BatchNorm2d", "ReLU",
        "Conv2d", "BatchNorm2d", "ReLU",
        "MaxPool2d",
        "Conv2d", "BatchNorm2d", "ReLU",
        "MaxPool2d",
        "Flatten",
        "Linear",
    ]  # fmt: skip
    for m in leaves:
        if isinstance(m, nn.Conv2d):
            assert m.bias is None
            assert m.kernel_size[0] == m.kernel_size[1]
            assert m.padding_mode == "zeros"
            assert m.groups == 1 and m.dilation == (1, 1)
        if isinstance(m, nn.MaxPool2d):
            assert (m.kernel_size, m.stride, m.padding) == (2, 2, 0)


def test_model_maps_images_to_ten_logits():
    model = digits.build_model(seed=0).eval()
    assert model(torch.zeros(3, *digits.INPUT_SHAPE)).shape == (3, digits.NUM_CLASSES)
    assert sum(p.numel() for p in model.parameters()) == 15418


def test_model_seed_is_reproducible_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b = digits.build_model(seed=3), digits.build_model(seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert _states_equal(a, b)
    assert not torch.equal(a[0].weight, digits.build_model(seed=4)[0].weight)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_model_rejects_bad_seed(seed):
    with pytest.raises(ValueError, match=rf"^Seed must be .*, not {seed!r}$"):
        digits.build_model(seed=seed)


# --- training loop --------------------------------------------------------------------------


def _short_fit(data, seed=0, **kw):
    model = digits.build_model(seed=0)
    losses = train.fit(model, data.x_train, data.y_train, epochs=2, lr=0.05, seed=seed,
                       num_threads=1, schedule="cosine", progress=False, **kw)  # fmt: skip
    return model, losses


def test_fit_is_deterministic(digits_data):
    a, losses_a = _short_fit(digits_data)
    b, losses_b = _short_fit(digits_data)
    assert _states_equal(a, b)
    assert losses_a == losses_b
    assert len(losses_a) == 2 and losses_a[1] < losses_a[0]
    c, _ = _short_fit(digits_data, seed=1)  # another shuffling order
    assert not torch.equal(a[0].weight, c[0].weight)


@pytest.mark.parametrize(("epochs", "warm"), [(3, 5), (1, 2)])
def test_warmup_cosine_rises_over_the_first_epoch_then_anneals(epochs, warm):
    """The lr of every optimizer step: linear to the peak over the first epoch (at most half
    of the steps), then the cosine from the peak towards 0 over the rest."""
    x = torch.linspace(-1, 1, 20).reshape(10, 2)            # 5 steps of 2 samples per epoch
    y = (x[:, 0] > 0).long()
    model = nn.Linear(2, 2)
    seen = []

    def record(_model):
        seen.append(opt_lr[0].param_groups[0]["lr"])

    opt_lr = []
    real_step = torch.optim.SGD.step

    def step(self, *a, **k):
        opt_lr[:] = [self]
        return real_step(self, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.SGD, "step", step)
        train.fit(model, x, y, epochs=epochs, lr=0.1, batch_size=2, schedule="warmup-cosine",
                  after_step=record, progress=False)
    total = 5 * epochs
    # seen[t] is the lr after step t's scheduler update, i.e. the lr of step t + 1
    want = [0.1 * (t + 1) / warm if t < warm else
            0.1 * (1 + math.cos(math.pi * (t - warm) / (total - warm))) / 2
            for t in range(1, total + 1)]
    assert seen == pytest.approx(want)
    assert max(seen) == pytest.approx(0.1)


@pytest.mark.parametrize("clip", [None, 0.5, 100.0])
def test_clip_norm_bounds_the_step(clip):
    """Plain SGD (lr 1, no momentum or decay), one step: the parameters move by the gradient,
    scaled to ``clip_norm`` when it is longer; a bound above the norm changes nothing."""
    x = torch.tensor([[3.0, -4.0], [-3.0, 4.0]])
    y = torch.tensor([1, 0])
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    before = [p.detach().clone() for p in model.parameters()]
    train.fit(model, x, y, epochs=1, lr=1.0, momentum=0.0, weight_decay=0.0, batch_size=2,
              clip_norm=clip, progress=False)
    # zero weights: softmax 1/2 everywhere; dL/dW = mean((p - onehot) x^T), dL/db = mean(p - onehot)
    grad_w = 0.5 * (torch.outer(torch.tensor([0.5, -0.5]), x[0])
                    + torch.outer(torch.tensor([-0.5, 0.5]), x[1]))
    norm = float(grad_w.norm())  # the bias gradient is 0 here
    assert norm == pytest.approx(math.sqrt(12.5))
    scale = 1.0 if clip is None or clip >= norm else clip / norm
    moved = torch.cat([(b - p.detach()).reshape(-1) for b, p in zip(before, model.parameters(),
                                                                    strict=True)])
    assert moved[:4].reshape(2, 2) == pytest.approx(grad_w * scale, rel=1e-6)
    assert float(moved.norm()) == pytest.approx(norm * scale, rel=1e-6)


def test_fit_restores_global_state(digits_data):
    rng = torch.get_rng_state()
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    x, y = digits_data.x_train[:8], digits_data.y_train[:8]
    train.fit(digits.build_model(seed=0), x, y, epochs=1, lr=0.01, num_threads=1, progress=False)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_fit_calls_hooks_in_order_once_per_step(digits_data):
    events: list[str] = []

    def grad_hook(model):
        assert model[0].weight.grad is not None
        events.append("grad")

    def after_step(model):
        events.append("after")

    train.fit(digits.build_model(seed=0), digits_data.x_train, digits_data.y_train, epochs=1,
              lr=0.01, grad_hook=grad_hook, after_step=after_step, progress=False)  # fmt: skip
    assert events == ["grad", "after"] * STEPS_PER_EPOCH


def test_after_step_can_freeze_weights(digits_data):
    """Masked SGD: zeroed gradients plus restored values keep frozen weights fixed exactly."""
    model = digits.build_model(seed=0)
    frozen = model[0].weight.detach().clone()
    mask = torch.zeros_like(frozen, dtype=torch.bool)
    mask[:8] = True  # the first 8 filters are frozen

    def grad_hook(m):
        m[0].weight.grad[mask] = 0

    def after_step(m):
        with torch.no_grad():
            m[0].weight[mask] = frozen[mask]

    train.fit(model, digits_data.x_train, digits_data.y_train, epochs=1, lr=0.05,
              grad_hook=grad_hook, after_step=after_step, progress=False)  # fmt: skip
    assert torch.equal(model[0].weight[mask], frozen[mask])
    assert not torch.equal(model[0].weight[~mask], frozen[~mask])


def test_fit_with_adam_changes_weights(digits_data):
    model, losses = _short_fit(digits_data, optimizer="adam")
    assert len(losses) == 2
    assert not torch.equal(model[0].weight, digits.build_model(seed=0)[0].weight)


def test_fit_skips_a_final_batch_of_one(digits_data):
    x, y = digits_data.x_train[:9], digits_data.y_train[:9]
    steps: list[int] = []
    train.fit(digits.build_model(seed=0), x, y, epochs=2, lr=0.01, batch_size=4,
              after_step=lambda m: steps.append(1), progress=False)  # fmt: skip
    assert len(steps) == 2 * 2  # batches 4 + 4; the single ninth sample is skipped


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "Epochs must be an integer >= 1, not 0"),
        ({"batch_size": 2.0}, "Batch size must be an integer >= 1, not 2.0"),
        ({"lr": -0.1}, "Learning rate must be a positive finite number, not -0.1"),
        ({"lr": float("nan")}, "Learning rate must be a positive finite number, not nan"),
        ({"lr": True}, "Learning rate must be a positive finite number, not True"),
        ({"momentum": 1.0}, r"Momentum must be a number in \[0, 1\), not 1.0"),
        ({"weight_decay": -1}, "Weight decay must be a non-negative finite number, not -1"),
        ({"optimizer": "rmsprop"}, r"Optimizer must be one of \('sgd', 'adam'\), not 'rmsprop'"),
        ({"schedule": "step"}, r"Schedule must be one of \('constant', 'cosine', 'warmup-cosine'\), not 'step'"),
        ({"clip_norm": 0}, "Gradient clip norm must be a positive finite number or None, not 0"),
        ({"clip_norm": float("inf")}, "Gradient clip norm must be a positive finite number or None, not inf"),
        ({"seed": -1}, "Seed must be an integer >= 0, not -1"),
        ({"num_threads": 0}, "Number of threads must be an integer >= 1, not 0"),
    ],
)
def test_fit_rejects_bad_arguments(digits_data, kwargs, message):
    args = {"epochs": 1, "lr": 0.01, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=f"^{message}$"):
        train.fit(digits.build_model(seed=0), digits_data.x_train, digits_data.y_train, **args)


def test_fit_rejects_mismatched_data(digits_data):
    model = digits.build_model(seed=0)
    with pytest.raises(ValueError, match="^Labels y must be an int64 tensor of shape .N,., not "
                       r"torch.int32 tensor of shape \(1257,\)$"):  # fmt: skip
        train.fit(model, digits_data.x_train, digits_data.y_train.int(), epochs=1, lr=0.1)
    with pytest.raises(ValueError, match="same, non-zero number of samples, not 1257 and 540$"):
        train.fit(model, digits_data.x_train, digits_data.y_test, epochs=1, lr=0.1)


def test_evaluate_counts_correct_predictions_and_keeps_mode():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    assert train.evaluate(model, x, torch.tensor([0, 1, 1, 1])) == 75.0
    assert train.evaluate(model, x, torch.tensor([0, 1, 0, 1]), batch_size=3) == 100.0
    assert model.training
    model.eval()
    assert train.evaluate(model, x, torch.tensor([1, 0, 1, 0])) == 0.0
    assert not model.training


def test_train_doctests_pass():
    result = doctest.testmod(train)
    assert result.attempted >= 4
    assert result.failed == 0


# --- pretrained model and cache -------------------------------------------------------------


@pytest.fixture
def reference_file(digits_reference, digits_cache_dir) -> Path:
    """The cache file written when the session's reference model was trained."""
    return digits_cache_dir / digits.CACHE_FILE


def _no_training(*args, **kwargs):
    raise AssertionError("pretrained() trained although a valid cache file exists")


def test_pretrained_reaches_target_accuracy(digits_reference, digits_data):
    accuracy = train.evaluate(digits_reference, digits_data.x_test, digits_data.y_test)
    assert accuracy >= digits.TARGET_ACCURACY
    assert not digits_reference.training


def test_pretrained_cache_file_is_complete(digits_reference, digits_cache_dir, digits_data):
    assert sorted(p.name for p in digits_cache_dir.iterdir()) == [digits.CACHE_FILE]  # no temp
    path = digits_cache_dir / digits.CACHE_FILE
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    assert meta["key"] == digits.cache_key()
    assert json.loads(meta["hyperparameters"]) == dict(digits.HYPERPARAMETERS)
    accuracy = train.evaluate(digits_reference, digits_data.x_test, digits_data.y_test)
    assert float(meta["test_accuracy"]) == round(accuracy, 4)


def test_pretrained_loads_from_cache_without_training(
    digits_reference, digits_cache_dir, monkeypatch
):
    monkeypatch.setattr(digits, "fit", _no_training)
    model = digits.pretrained(cache_dir=digits_cache_dir, progress=False)
    assert _states_equal(model, digits_reference)
    assert not model.training


def test_pretrained_reads_cache_dir_from_environment(
    digits_reference, digits_cache_dir, monkeypatch
):
    monkeypatch.setattr(digits, "fit", _no_training)
    monkeypatch.setenv(digits.CACHE_ENV, str(digits_cache_dir))
    assert _states_equal(digits.pretrained(progress=False), digits_reference)


def _corrupt(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"this is not a safetensors file")
    elif how == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "bit flip":  # in the last tensor's payload; header and key intact
        path.write_bytes(raw[:-5] + bytes([raw[-5] ^ 0x10]) + raw[-4:])
    elif how == "missing tensor":  # valid file, right key and digest, one tensor short
        state = load_file(path)
        with safe_open(path, framework="pt") as f:
            meta = f.metadata()
        del state["12.bias"]
        meta["sha256"] = digits._digest(state)
        save_file(state, path, metadata=meta)
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("empty", "SafetensorError: Error while deserializing header"),
        ("garbage", "SafetensorError: Error while deserializing header"),
        ("truncated", "SafetensorError: Error while deserializing header"),
        ("bit flip", "ValueError: tensor digest mismatch"),
        ("missing tensor", "RuntimeError: Error(s) in loading state_dict"),
    ],
)
def test_corrupt_cache_is_retrained(reference_file, tmp_path, monkeypatch, how, reason):
    path = tmp_path / digits.CACHE_FILE
    shutil.copyfile(reference_file, path)
    _corrupt(path, how)
    stub = StubFit()
    monkeypatch.setattr(digits, "fit", stub)
    with pytest.warns(RuntimeWarning) as record:
        digits.pretrained(cache_dir=tmp_path, progress=False)
    messages = [str(w.message) for w in record]
    prefix = f"Digits cache {path} is unreadable ({reason}"
    assert any(m.startswith(prefix) and m.endswith("; retraining") for m in messages), messages
    assert all("\n" not in m for m in messages)
    assert len(stub.calls) == 1
    assert stub.calls[0]["seed"] == digits.HYPERPARAMETERS["seed"]
    # the rewritten file is valid again
    monkeypatch.setattr(digits, "fit", _no_training)
    digits.pretrained(cache_dir=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [digits.CACHE_FILE]


def test_stale_cache_key_is_retrained(reference_file, tmp_path, monkeypatch):
    state = load_file(reference_file)
    with safe_open(reference_file, framework="pt") as f:
        meta = f.metadata()
    save_file(state, tmp_path / digits.CACHE_FILE, metadata={**meta, "key": "0" * 64})
    stub = StubFit()
    monkeypatch.setattr(digits, "fit", stub)
    with pytest.warns(RuntimeWarning) as record:
        digits.pretrained(cache_dir=tmp_path, progress=False)
    expected = (
        f"Digits cache {tmp_path / digits.CACHE_FILE} was made with other settings "
        f"(key 000000000000..., expected {digits.cache_key()[:12]}...); retraining"
    )
    assert expected in [str(w.message) for w in record]
    assert len(stub.calls) == 1
    with safe_open(tmp_path / digits.CACHE_FILE, framework="pt") as f:
        assert f.metadata()["key"] == digits.cache_key()


def test_retrain_overwrites_a_valid_cache(reference_file, tmp_path, monkeypatch):
    shutil.copyfile(reference_file, tmp_path / digits.CACHE_FILE)
    stub = StubFit()
    monkeypatch.setattr(digits, "fit", stub)
    with pytest.warns(RuntimeWarning, match="below the 98.0 % target"):  # stub trains nothing
        digits.pretrained(cache_dir=tmp_path, retrain=True, progress=False)
    assert len(stub.calls) == 1
    assert {k: stub.calls[0][k] for k in digits.HYPERPARAMETERS} == dict(digits.HYPERPARAMETERS)


def test_missing_cache_dir_is_created(tmp_path, monkeypatch):
    monkeypatch.setattr(digits, "fit", StubFit())
    target = tmp_path / "a" / "b"
    with pytest.warns(RuntimeWarning, match="below the 98.0 % target"):
        digits.pretrained(cache_dir=target, progress=False)
    assert (target / digits.CACHE_FILE).is_file()


def test_cache_dir_must_be_a_directory(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(ValueError, match="^Cache directory must be a directory, not the file "):
        digits.pretrained(cache_dir=not_a_dir, progress=False)


def test_cache_key_depends_on_hyperparameters():
    key = digits.cache_key()
    assert len(key) == 64 and int(key, 16) >= 0
    assert digits.cache_key() == key
    assert digits.cache_key(epochs=digits.HYPERPARAMETERS["epochs"]) == key
    changed = {
        digits.cache_key(epochs=31),
        digits.cache_key(lr=0.1),
        digits.cache_key(seed=1),
        digits.cache_key(optimizer="adam"),
        digits.cache_key(weight_decay=0.0),
    }
    assert len(changed) == 5 and key not in changed


def test_cache_key_rejects_unknown_hyperparameter():
    with pytest.raises(ValueError, match="^Unknown hyperparameter 'epoch'; allowed: epochs, lr,"):
        digits.cache_key(epoch=3)


def test_describe_lists_the_settings():
    assert digits.describe() == {
        "epochs": 30,
        "lr": 0.05,
        "batch_size": 64,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "optimizer": "sgd",
        "schedule": "cosine",
        "seed": 0,
        "num_threads": 1,
        "test_size": 540,
        "split_random_state": 0,
        "target_accuracy": 98.0,
        "cache_key": digits.cache_key(),
    }


# --- models of other training seeds ---------------------------------------------------------


def test_seed_zero_is_the_reference_model(digits_reference, digits_cache_dir, monkeypatch):
    assert digits.REFERENCE_SEED == digits.HYPERPARAMETERS["seed"] == 0
    assert digits.seed_cache_file(0) == digits.CACHE_FILE
    assert digits.cache_key(seed=0) == digits.cache_key()
    monkeypatch.setattr(digits, "fit", _no_training)
    model = digits.pretrained(seed=0, cache_dir=digits_cache_dir, progress=False)
    assert _states_equal(model, digits_reference)


def test_seed_zero_trains_the_reference_recipe(tmp_path, monkeypatch):
    stub = StubFit()
    monkeypatch.setattr(digits, "fit", stub)
    with pytest.warns(RuntimeWarning, match="^Digits reference model reached "):
        digits.pretrained(seed=0, cache_dir=tmp_path, progress=False)
    (call,) = stub.calls
    assert {k: call[k] for k in digits.HYPERPARAMETERS} == dict(digits.HYPERPARAMETERS)
    assert call["desc"] == "digits"
    assert sorted(p.name for p in tmp_path.iterdir()) == [digits.CACHE_FILE]


def test_other_seed_has_its_own_cache_file(reference_file, tmp_path, monkeypatch):
    shutil.copyfile(reference_file, tmp_path / digits.CACHE_FILE)
    stub = StubFit()
    monkeypatch.setattr(digits, "fit", stub)
    with pytest.warns(RuntimeWarning) as record:  # the stub trains nothing
        model = digits.pretrained(seed=3, cache_dir=tmp_path, progress=False)
    (message,) = [str(w.message) for w in record]
    assert message.startswith("Digits model of seed 3 reached ")
    assert message.endswith(" % test accuracy, below the 98.0 % target")
    (call,) = stub.calls
    assert {k: call[k] for k in digits.HYPERPARAMETERS} == {**digits.HYPERPARAMETERS, "seed": 3}
    assert call["desc"] == "digits seed 3"
    assert _states_equal(model, digits.build_model(seed=3))  # initialized with seed 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "digits-seed3.safetensors", digits.CACHE_FILE]
    assert (tmp_path / digits.CACHE_FILE).read_bytes() == reference_file.read_bytes()
    with safe_open(tmp_path / "digits-seed3.safetensors", framework="pt") as f:
        meta = f.metadata()
    assert meta["key"] == digits.cache_key(seed=3) != digits.cache_key()
    assert json.loads(meta["hyperparameters"]) == {**digits.HYPERPARAMETERS, "seed": 3}
    # the second call loads seed 3's file; the default still loads the reference
    monkeypatch.setattr(digits, "fit", _no_training)
    assert _states_equal(digits.pretrained(seed=3, cache_dir=tmp_path, progress=False), model)
    reference = digits.pretrained(cache_dir=tmp_path, progress=False)
    assert not _states_equal(reference, model)


@pytest.mark.parametrize("seed", [-1, True, 1.0, "1", None])
def test_pretrained_rejects_bad_seeds(tmp_path, seed):
    target = tmp_path / "cache"
    with pytest.raises(ValueError) as info:
        digits.pretrained(seed=seed, cache_dir=target, progress=False)
    assert str(info.value) == f"Training seed must be a non-negative integer, not {seed!r}"
    assert not target.exists()  # checked before the cache directory is made


def test_digits_doctests_pass():
    result = doctest.testmod(digits)
    assert (result.attempted, result.failed) == (2, 0)
