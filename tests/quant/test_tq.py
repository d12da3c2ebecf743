"""Transform Quantization: transforms, coding gains, bit allocation, integerization."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from torch import nn

from hwq import golden
from hwq.quant import tq, transforms
from hwq.quant.integerize import fake_quant_model
from hwq.quant.tq import (
    BASIS_SUFFIX,
    allocate,
    allocation_bits,
    analyze_tq,
    quantize_tq,
    uniform_quantize,
)
from hwq.quant.tq import plan as tq_plan
from hwq.quant.tq.allocation import _choose
from hwq.quant.transforms import coding_gain_db, damp, elt, klt
from hwq.workloads.train import evaluate

# small settings: the tests must stay fast on 2 cores
FAST = dict(calib_size=64, probes=4, grid=4)


def _spd(m: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(m, 3 * m)) * rng.uniform(0.1, 3.0, size=(m, 1))
    return a @ a.T / (3 * m)


def _golden(net, x: torch.Tensor) -> np.ndarray:
    return golden.run(net, golden.quantize_input(x.numpy(), net.input_scale, net.act_bits))


# --- transforms -----------------------------------------------------------------------------


def test_doctests():
    for module in (transforms, tq_plan):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_elt_is_the_generalized_eigenbasis(seed):
    c_tt, c_gg = _spd(12, seed), _spd(12, seed + 100)
    tr = elt(c_tt, c_gg)
    lam = tr.U.T @ c_tt @ tr.U
    np.testing.assert_allclose(lam, np.diag(tr.values), atol=1e-9 * lam.max())
    np.testing.assert_allclose(tr.U.T @ np.linalg.inv(c_gg) @ tr.U, np.eye(12), atol=1e-8)
    np.testing.assert_allclose(tr.U @ tr.U_inv, np.eye(12), atol=1e-9)
    assert (np.diff(tr.values) <= 0).all()
    # the coefficients' gradient covariance is I
    np.testing.assert_allclose(tr.U_inv @ c_gg @ tr.U_inv.T, np.eye(12), atol=1e-8)


def test_klt_is_orthonormal_and_diagonalizes_the_weight_covariance():
    c_tt = _spd(10, 3)
    tr = klt(c_tt)
    np.testing.assert_allclose(tr.U.T @ tr.U, np.eye(10), atol=1e-12)
    np.testing.assert_allclose(tr.U_inv, tr.U.T)
    d = tr.U.T @ c_tt @ tr.U
    np.testing.assert_allclose(d, np.diag(np.diag(d)), atol=1e-12)
    assert (np.diff(tr.values) <= 0).all()


def test_coding_gain_on_a_hand_example():
    c_tt = np.diag([4.0, 1.0])
    c_gg = np.array([[1.0, 0.5], [0.5, 1.0]])
    # identity: 0 dB; KLT = identity here (C_tt diagonal): 0 dB
    assert coding_gain_db(c_tt, c_gg, np.eye(2)) == (0.0, 0.0, 0.0)
    assert coding_gain_db(c_tt, c_gg, klt(c_tt).U)[0] == pytest.approx(0.0, abs=1e-12)
    # ELT reaches det: 10 log10(GM(4, 1) GM(1, 1) / sqrt(det C_tt det C_gg)) = 10 log10(2/sqrt 3)
    total, w, g = coding_gain_db(c_tt, c_gg, elt(c_tt, c_gg).U)
    assert total == pytest.approx(10 * np.log10(2 / np.sqrt(3)), abs=1e-12)
    assert total == pytest.approx(w + g, abs=1e-12)
    # KLT of a correlated pair, C_gg = I: 10 log10(2 / sqrt(3)) from the weight term only
    c = np.array([[2.0, 1.0], [1.0, 2.0]])
    total, w, g = coding_gain_db(c, np.eye(2), klt(c).U)
    assert (total, w) == (pytest.approx(10 * np.log10(2 / np.sqrt(3))),) * 2
    assert g == pytest.approx(0.0, abs=1e-12)


def test_elt_gain_is_the_largest_on_random_matrices():
    for seed in range(5):
        c_tt, c_gg = _spd(8, seed), _spd(8, seed + 50)
        gains = {name: coding_gain_db(c_tt, c_gg, transforms.transform(name, c_tt, c_gg).U)[0]
                 for name in transforms.TRANSFORMS}
        assert gains["elt"] >= max(gains["klt"], gains["identity"]) - 1e-9
        assert gains["identity"] == 0.0


def test_damping_makes_a_singular_gradient_covariance_usable():
    c_gg = np.diag([1.0, 2.0, 0.0])  # a dead channel
    np.testing.assert_allclose(damp(c_gg, 0.01), np.diag([1.01, 2.01, 0.01]))
    tr = elt(_spd(3, 0), damp(c_gg, 0.01))
    assert np.isfinite(tr.U).all()
    with pytest.raises(ValueError, match="positive definite"):
        elt(_spd(3, 0), c_gg)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match=r"^TQ transform must be one of elt, klt, identity, "
                                         r"not 'pca'$"):
        transforms.check_transform("pca")
    with pytest.raises(ValueError, match=r"^TQ variant must be one of row, column, not 'diag'$"):
        transforms.check_variant("diag")
    with pytest.raises(ValueError, match=r"TQ damping must be a finite number >= 0, not -1"):
        damp(np.eye(2), -1)


def test_uniform_quantize_is_the_papers_clipped_quantizer():
    t = np.array([-3.0, -0.76, -0.25, 0.0, 0.24, 0.26, 0.75, 3.0])
    np.testing.assert_array_equal(uniform_quantize(t, 0.5, 2), [-2, -2, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(uniform_quantize(t, 0.5, 8), [-6, -2, 0, 0, 0, 1, 2, 6])
    np.testing.assert_array_equal(uniform_quantize(t, 0.5, 0), np.zeros(8, dtype=np.int64))


# --- digits ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analysis(digits_reference, digits_data):
    """A fast ELT analysis of the digits model (distortion curves included)."""
    return analyze_tq(digits_reference, digits_data, transform="elt", **FAST)


def test_coding_gain_order_on_every_conv_layer(digits_reference, digits_data, analysis):
    gains = analysis.gains
    convs = [n for n, m in analysis.folded.named_children() if isinstance(m, nn.Conv2d)]
    assert sorted(gains) == sorted(convs)  # the linear layer is not transformed
    assert gains[convs[0]] == {"elt": 0.0, "klt": 0.0, "identity": 0.0}  # C_in = 1
    for name in convs[1:]:
        g = gains[name]
        assert g["elt"] >= g["klt"] >= g["identity"] == 0.0, (name, g)
        assert g["elt"] > 1.0, (name, g)
    # the same on another seed, without the curves
    other = analyze_tq(digits_reference, digits_data, seed=1, curves=False, **FAST)
    for name in convs[1:]:
        g = other.gains[name]
        assert g["elt"] >= g["klt"] >= g["identity"], (name, g)


def test_allocation_hits_the_target_and_is_monotone_in_lambda(analysis):
    plans, curves = analysis.plans, analysis.curves
    n = analysis.original_weights
    assert n == 15248
    largest_block = max(p.block_bits(k, max(p.depths)) for p in plans
                        for k in range(len(p.blocks)))
    for target in (1.5, 2.0, 3.0, 4.5):
        choice, _ = allocate(plans, curves, target * n)
        total = allocation_bits(plans, choice)
        assert total <= target * n
        assert target * n - total <= largest_block, (target, total / n)
    totals = [allocation_bits(plans, _choose(plans, curves, lam))
              for lam in np.logspace(-12, 2, 40)]
    assert all(a >= b for a, b in zip(totals, totals[1:], strict=False))
    assert totals[0] > totals[-1]
    with pytest.raises(ValueError, match="TQ target is below the smallest allocation"):
        allocate(plans, curves, 0.1 * n)


def test_zero_bit_blocks_are_pruned(digits_reference, digits_data, analysis):
    res = quantize_tq(digits_reference, digits_data, bits=2.0, analysis=analysis,
                      progress=False, **FAST)
    layers = dict(res.model.named_children())
    pruned = 0
    for name, info in res.info["layers"].items():
        if not info["transformed"]:
            assert min(info["block_bits"]) >= 2
            continue
        kept = sum(s for s, b in zip(info["block_sizes"], info["block_bits"], strict=True)
                   if b > 0)
        assert info["kept_channels"] == kept
        pruned += info["pruned_channels"]
        basis, coef = layers[name + BASIS_SUFFIX], layers[name]
        assert (basis.kernel_size, basis.out_channels, coef.in_channels) == ((1, 1), kept, kept)
        assert basis.bias is None
        bits = res.qweights[name].spec.bits
        assert bits.shape == (1, kept, 1, 1)
        widths = [b for s, b in zip(info["block_sizes"], info["block_bits"], strict=True)
                  for _ in range(s) if b > 0]
        np.testing.assert_array_equal(bits.ravel(), widths)
        assert int(res.qweights[name + BASIS_SUFFIX].spec.bits) == 8
    assert pruned > 0


def test_integerized_tq_network_runs_on_the_golden_model(digits_reference, digits_data,
                                                         analysis):
    d = digits_data
    res = quantize_tq(digits_reference, d, bits=2.0, analysis=analysis, progress=False, **FAST)
    info = res.info
    assert info["average_bits"] <= 2.0
    assert info["average_bits"] == info["weight_bits_total"] / 15248
    fq = fake_quant_model(res.model, res.qweights, d.x_train)
    net = fq.to_network()
    net.validate()
    assert net.weight_storage_bits() == info["weight_bits_total"]
    assert [op.name for op in net.ops if op.kind == "conv2d"] == ["0", "3_basis", "3",
                                                                 "7_basis", "7"]
    out = _golden(net, d.x_test)
    np.testing.assert_array_equal(fq.to_int(d.x_test).numpy(), out)
    acc = 100.0 * float((out.argmax(1) == d.y_test.numpy()).mean())
    fq.exact = False
    float_acc = evaluate(fq, d.x_test, d.y_test)
    assert abs(acc - float_acc) <= 0.2
    assert acc >= 95.0  # fp32 99.3; tq at 2 bits without retraining is within ~1 point


def test_retraining_keeps_the_allocation(digits_reference, digits_data, analysis):
    d = digits_data
    res = quantize_tq(digits_reference, d, bits=2.0, analysis=analysis, retrain_epochs=1,
                      progress=False, **FAST)
    assert res.info["retrain_epochs"] == 1
    fq = fake_quant_model(res.model, res.qweights, d.x_train)
    net = fq.to_network()
    assert net.weight_storage_bits() == res.info["weight_bits_total"]
    acc = 100.0 * float((_golden(net, d.x_test).argmax(1) == d.y_test.numpy()).mean())
    assert acc >= 95.0
    # the weights the model holds are the dequantized integers
    layers = dict(res.model.named_children())
    for name, qw in res.qweights.items():
        np.testing.assert_array_equal(layers[name].weight.detach().numpy(),
                                      qw.dequantize().astype(np.float32))


def test_bad_quantize_options(digits_reference, digits_data, analysis):
    for bits in (0, 9, True, float("nan")):
        with pytest.raises(ValueError, match="TQ average bits must be a number in"):
            quantize_tq(digits_reference, digits_data, bits=bits, analysis=analysis, **FAST)
    with pytest.raises(ValueError, match=r"TQ analysis was made with other settings \(transform"):
        quantize_tq(digits_reference, digits_data, bits=2.0, transform="klt",
                    analysis=analysis, **FAST)
    with pytest.raises(ValueError, match=r"^TQ blocks must be an integer >= 1, not 0$"):
        analyze_tq(digits_reference, digits_data, blocks=0)
    with pytest.raises(ValueError, match=r"^TQ basis bits must be an integer in 2..8, not 9$"):
        analyze_tq(digits_reference, digits_data, basis_bits=9)
    with pytest.raises(ValueError, match="TQ transform must be one of elt, klt, identity, "
                                         "not 'pca'"):
        quantize_tq(digits_reference, digits_data, bits=2.0, transform="pca")


def test_column_variant_runs_on_the_golden_model(digits_reference, digits_data):
    d = digits_data
    res = quantize_tq(digits_reference, d, bits=2.5, variant="column", progress=False, **FAST)
    assert sorted(res.info["coding_gain_db"]) == ["3", "7"]  # conv 0: 9 vectors < 16 channels
    layers = dict(res.model.named_children())
    assert list(layers)[:4] == ["0", "2", "3", "3_basis"]
    kept = res.info["layers"]["3"]["kept_channels"]
    assert (layers["3"].out_channels, layers["3_basis"].in_channels) == (kept, kept)
    assert layers["3"].bias is None and layers["3_basis"].bias is not None
    assert res.qweights["3"].spec.bits.shape == (kept, 1, 1, 1)
    fq = fake_quant_model(res.model, res.qweights, d.x_train)
    net = fq.to_network()
    assert net.weight_storage_bits() == res.info["weight_bits_total"] <= 2.5 * 15248
    out = _golden(net, d.x_test)
    np.testing.assert_array_equal(fq.to_int(d.x_test).numpy(), out)
    assert 100.0 * float((out.argmax(1) == d.y_test.numpy()).mean()) >= 95.0


# --- distortion="fisher" --------------------------------------------------------------------


def test_fisher_distortion_is_the_softmax_quadratic_form():
    gen = torch.Generator().manual_seed(0)
    y_ref = 3 * torch.randn(6, 5, generator=gen, dtype=torch.float64)
    d = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    p = torch.softmax(y_ref, dim=-1)
    want = np.mean([float(d[i] @ (torch.diag(p[i]) - torch.outer(p[i], p[i])) @ d[i])
                    for i in range(6)])
    assert float(tq.output_distortion(y_ref + d, y_ref, "fisher")) == pytest.approx(want)
    assert float(tq.output_distortion(y_ref + d, y_ref, "mse")) == pytest.approx(
        float((d ** 2).sum(1).mean()))
    # a shift of all logits of an image does not change the softmax: no fisher distortion
    shift = torch.randn(6, 1, generator=gen, dtype=torch.float64)
    assert float(tq.output_distortion(y_ref + shift, y_ref, "fisher")) == pytest.approx(
        0.0, abs=1e-12)
    assert float(tq.output_distortion(y_ref + shift, y_ref, "mse")) > 0


def test_fisher_probe_has_the_fisher_covariance():
    gen = torch.Generator().manual_seed(1)
    y = 2 * torch.randn(1, 5, generator=gen, dtype=torch.float64)
    z = torch.eye(5, dtype=torch.float64)  # v = M z: the rows of V are the columns of M
    v = tq.output_probe(y.expand(5, 5), z, "fisher")
    p = torch.softmax(y[0], dim=-1)
    np.testing.assert_allclose((v.T @ v).numpy(), (torch.diag(p) - torch.outer(p, p)).numpy(),
                               atol=1e-15)
    np.testing.assert_allclose(v.sum(dim=1).numpy(), 0.0, atol=1e-15)  # orthogonal to 1
    assert tq.output_probe(y.expand(5, 5), z, "mse") is z


def test_fisher_distortion_runs_on_the_golden_model(digits_reference, digits_data):
    d = digits_data
    an = analyze_tq(digits_reference, d, distortion="fisher", **FAST)
    assert an.settings["distortion"] == "fisher"
    res = quantize_tq(digits_reference, d, bits=2.0, analysis=an, distortion="fisher",
                      progress=False, **FAST)
    assert res.info["options"]["distortion"] == "fisher"
    assert res.info["average_bits"] <= 2.0
    fq = fake_quant_model(res.model, res.qweights, d.x_train)
    net = fq.to_network()
    assert net.weight_storage_bits() == res.info["weight_bits_total"]
    out = _golden(net, d.x_test)
    np.testing.assert_array_equal(fq.to_int(d.x_test).numpy(), out)
    assert 100.0 * float((out.argmax(1) == d.y_test.numpy()).mean()) >= 95.0
    with pytest.raises(ValueError, match=r"TQ analysis was made with other settings "
                                         r"\(distortion\)"):
        quantize_tq(digits_reference, d, bits=2.0, analysis=an, **FAST)
    with pytest.raises(ValueError, match=r"^TQ distortion must be one of mse, fisher, "
                                         r"not 'kl'$"):
        analyze_tq(digits_reference, d, distortion="kl")


def test_format_tq_reports_flips_vs_fp32():
    from hwq.bench.tq import format_tq

    entry = dict(target_bits=2.0, retrain_epochs=0, average_bits_mean=1.98,
                 accuracy_mean=98.7, accuracy_std=0.1, test_nll_mean=0.035)
    result = {"fp32_accuracy": 99.26, "summary": {
        "tq-elt 2b 0ep": {**entry, "flips_mean": 3.0}, "tq-klt 2b 0ep": entry}}
    lines = format_tq(result).splitlines()
    assert lines[1].split()[-1] == "flips"
    assert lines[2].startswith("tq-elt 2b 0ep") and lines[2].split()[-1] == "3.0"
    assert lines[3].split()[-1] == "nan"  # results written before the flips existed


def test_smallest_bits_from_the_shapes_is_the_smallest_allocation(digits_reference, digits_data,
                                                                  analysis):
    s = analysis.settings
    need, weights = tq.smallest_bits(digits_reference, variant=s["variant"], blocks=s["blocks"],
                                     basis_bits=s["basis_bits"])
    assert weights == analysis.original_weights
    assert need == allocation_bits(analysis.plans,
                                   _choose(analysis.plans, analysis.curves, 1e40))
    # an untrained model of the same shapes gives the same figure: no training needed
    from hwq.workloads import digits

    assert tq.smallest_bits(digits.build_model(seed=5), variant=s["variant"],
                            blocks=s["blocks"], basis_bits=s["basis_bits"]) == (need, weights)
    low = 0.9 * need / weights
    with pytest.raises(ValueError) as info:
        quantize_tq(digits_reference, digits_data, bits=low, progress=False, **FAST)
    assert str(info.value) == (f"TQ average bits must be at least {need / weights:.4g} for this "
                               f"model (its smallest allocation, {need} bits for {weights} "
                               f"weights), not {low!r}")
