"""hwq.formal.spec against hwq.golden on random values: the proofs' expected values are the
golden model's, so a proof and the golden model cannot drift apart."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from hwq.formal import spec
from hwq.golden.bitserial import bitplanes, plane_coefficients, shift_add_linear
from hwq.golden.formats import CodebookFormat, IntFormat, PotFormat
from hwq.golden.gemm import int_matmul
from hwq.golden.requant import M_MAX, requantize_reference


def evaluate(shapes: dict, build, rows: list[dict]) -> list[int]:
    """Values of ``build(signals)`` for each row of input values, in Amaranth's simulator."""
    sigs = {name: Signal(shape, name=name) for name, shape in shapes.items()}
    expr = build(sigs)
    out = []

    async def tb(ctx):
        for row in rows:
            for name, v in row.items():
                ctx.set(sigs[name], int(v))
            out.append(ctx.get(expr))

    sim = Simulator(Module())
    sim.add_testbench(tb)
    sim.run()
    return out


@pytest.mark.parametrize("bits", [2, 3, 4, 7])
def test_pot_value_is_golden_decode(bits):
    codes = list(range(1 << bits))
    got = evaluate({"c": unsigned(bits)}, lambda s: spec.pot_value(s["c"], bits),
                   [{"c": c} for c in codes])
    np.testing.assert_array_equal(got, PotFormat(bits).decode(codes))


@pytest.mark.parametrize("bits", [2, 3, 4, 5])   # shifts up to 14: int64 golden is exact
def test_pot_terms_are_golden_shift_add(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, size=(200, 3))
    a = rng.integers(-8, 8, size=(200, 3))
    shapes = {f"c{j}": unsigned(bits) for j in range(3)} | {f"a{j}": signed(4) for j in range(3)}
    rows = [{**{f"c{j}": int(codes[i, j]) for j in range(3)},
             **{f"a{j}": int(a[i, j]) & 15 for j in range(3)}} for i in range(200)]
    got = evaluate(shapes, lambda s: spec.sum_of([spec.pot_term(s[f"c{j}"], s[f"a{j}"], bits)
                                                  for j in range(3)]), rows)
    want = [int(shift_add_linear(a[i:i + 1], codes[i:i + 1], bits)[0, 0]) for i in range(200)]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, np.einsum("ij,ij->i", PotFormat(bits).decode(codes), a))


@pytest.mark.parametrize("bits", [2, 3, 8])
def test_int_value_is_golden_decode(bits):
    codes = list(range(1 << bits))
    got = evaluate({"c": unsigned(bits)}, lambda s: spec.int_value(s["c"], bits),
                   [{"c": c} for c in codes])
    np.testing.assert_array_equal(got, IntFormat(bits).decode(codes))


def test_codebook_value_is_golden_decode():
    rng = np.random.default_rng(1)
    for _ in range(5):
        table = [0, *rng.integers(-128, 128, size=7).tolist()]
        rng.shuffle(table)
        rows = [{"c": c, **{f"t{i}": v & 0xFF for i, v in enumerate(table)}} for c in range(8)]
        shapes = {"c": unsigned(3), **{f"t{i}": signed(8) for i in range(8)}}
        got = evaluate(shapes, lambda s: spec.codebook_value([s[f"t{i}"] for i in range(8)],
                                                             s["c"]), rows)
        np.testing.assert_array_equal(got, CodebookFormat(3, table=tuple(table)).decode(
            list(range(8))))


def test_plane_coefficients_and_dot_are_golden():
    rng = np.random.default_rng(2)
    bits = 4
    coef = evaluate({"sh": unsigned(3), "n": unsigned(1)},
                    lambda s: spec.plane_coefficient(s["sh"], s["n"]),
                    [{"sh": i, "n": int(i == bits - 1)} for i in range(bits)])
    np.testing.assert_array_equal(coef, plane_coefficients(bits))
    # a bit-serial group (one beat per plane) sums to the INT dot product
    w = rng.integers(-8, 8, size=(50, 3))
    a = rng.integers(-32, 32, size=(50, 3))
    planes = bitplanes(w, bits)                                # (bits, 50, 3)
    shapes = {f"{n}{j}": signed(6) for n in "wa" for j in range(3)}
    rows = [{**{f"w{j}": int(w[i, j]) & 63 for j in range(3)},
             **{f"a{j}": int(a[i, j]) & 63 for j in range(3)}} for i in range(50)]
    got = evaluate(shapes, lambda s: spec.dot([s[f"w{j}"] for j in range(3)],
                                              [s[f"a{j}"] for j in range(3)]), rows)
    np.testing.assert_array_equal(got, np.einsum("ij,ij->i", w, a))
    np.testing.assert_array_equal(got, [int_matmul(a[i:i + 1], w[i:i + 1].T)[0, 0]
                                        for i in range(50)])
    by_planes = sum(coef[p] * np.einsum("ij,ij->i", planes[p].astype(np.int64), a)
                    for p in range(bits))
    np.testing.assert_array_equal(got, by_planes)


def test_requant_is_golden_reference():
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(300):
        lo = int(rng.integers(-128, 1))
        rows.append({"acc": int(rng.integers(-(1 << 20), 1 << 20)),
                     "b": int(rng.integers(-(1 << 31), 1 << 31)),
                     "m": int(rng.integers(1, M_MAX + 1)), "s": int(rng.integers(1, 63)),
                     "lo": lo, "hi": int(rng.integers(lo, 128))})
    rows += [{"acc": acc, "b": 0, "m": 1, "s": 1, "lo": -128, "hi": 127}  # ties round up
             for acc in (-5, -3, -1, 1, 3, 5)]
    shapes = {"acc": signed(24), "b": signed(32), "m": unsigned(24), "s": unsigned(6),
              "lo": signed(8), "hi": signed(8)}
    masked = [{k: v & ((1 << len(Signal(shapes[k]))) - 1) for k, v in r.items()} for r in rows]
    got = evaluate(shapes, lambda s: spec.requant(s["acc"], s["b"], s["m"], s["s"], s["lo"],
                                                  s["hi"]), masked)
    want = [requantize_reference(r["acc"], r["b"], r["m"], r["s"], r["lo"], r["hi"])
            for r in rows]
    assert got == want
