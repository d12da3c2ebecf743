import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwq.golden import CodebookFormat, IntFormat, PotFormat, format_from_dict, make_format
from tests.golden import reference as ref


@pytest.mark.parametrize("bits", range(2, 9))
def test_int_exhaustive(bits):
    fmt = IntFormat(bits)
    codes = np.arange(1 << bits)
    values = fmt.decode(codes)
    assert values.tolist() == [ref.int_value(c, bits) for c in codes.tolist()]
    assert sorted(values.tolist()) == list(range(-(1 << (bits - 1)), 1 << (bits - 1)))
    np.testing.assert_array_equal(fmt.encode(values), codes)
    assert fmt.encode(values).dtype == np.uint8


@pytest.mark.parametrize("bits", range(2, 8))
def test_pot_exhaustive(bits):
    fmt = PotFormat(bits)
    codes = np.arange(1 << bits)
    values = fmt.decode(codes)
    assert values.tolist() == [ref.pot_value(c, bits) for c in codes.tolist()]
    magnitudes = [1 << e for e in range(2 ** (bits - 1) - 1)]
    assert sorted(set(values.tolist())) == sorted([0] + magnitudes + [-m for m in magnitudes])
    # encode is canonical: zero has code 0 (never the "negative zero" code)
    canon = fmt.encode(values)
    np.testing.assert_array_equal(fmt.decode(canon), values)
    neg_zero = 1 << (bits - 1)
    assert fmt.encode([0]).tolist() == [0]
    assert fmt.decode([neg_zero]).tolist() == [0]
    nonzero = values != 0
    np.testing.assert_array_equal(canon[nonzero], codes[nonzero])


def test_pot_subsumes_inq_set():
    # INQ at b bits uses 2**(b-2) magnitudes: all representable in POT(b)
    for bits in range(2, 8):
        fmt = PotFormat(bits)
        inq = [1 << e for e in range(2 ** (bits - 2))]
        fmt.validate(inq + [-v for v in inq] + [0])


@pytest.mark.parametrize("bits", range(1, 9))
def test_codebook_exhaustive(bits):
    rng = np.random.default_rng(bits)
    size = 1 << bits
    table = rng.choice(np.arange(-128, 128), size=size, replace=False)
    table[rng.integers(size)] = 0
    table = np.unique(table)  # may shrink if zero was drawn twice
    fmt = CodebookFormat(bits, table=tuple(table.tolist()), table_bits=8)
    idx = np.arange(len(table))
    np.testing.assert_array_equal(fmt.decode(idx), table)
    np.testing.assert_array_equal(fmt.encode(table), idx)


def test_codebook_repeated_entry_encodes_first():
    fmt = CodebookFormat(2, table=(0, 5, 5, -1), table_bits=4)
    assert fmt.encode([5, -1, 0]).tolist() == [1, 3, 0]


@given(st.integers(2, 8), st.data())
@settings(max_examples=2000)
def test_int_roundtrip_property(bits, data):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    values = np.array(data.draw(st.lists(st.integers(lo, hi), min_size=1, max_size=32)))
    fmt = IntFormat(bits)
    np.testing.assert_array_equal(fmt.decode(fmt.encode(values)), values)


@given(st.integers(2, 7), st.data())
@settings(max_examples=2000)
def test_pot_roundtrip_property(bits, data):
    fmt = PotFormat(bits)
    e = data.draw(st.lists(st.integers(-1, fmt.max_exponent), min_size=1, max_size=32))
    signs = data.draw(st.lists(st.sampled_from([-1, 1]), min_size=len(e), max_size=len(e)))
    values = np.array([0 if ei < 0 else s * (1 << ei) for ei, s in zip(e, signs, strict=True)])
    codes = fmt.encode(values)
    np.testing.assert_array_equal(fmt.decode(codes), values)
    assert codes.tolist() == [
        0 if v == 0 else ((1 << (bits - 1)) if v < 0 else 0) | (abs(v).bit_length())
        for v in values.tolist()
    ]


@pytest.mark.parametrize(
    "make, exc, message",
    [
        (lambda: IntFormat(9), ValueError, "INT weight bit width must be an integer in 2..8, not 9"),
        (lambda: IntFormat(1), ValueError, "in 2..8, not 1"),
        (lambda: IntFormat(4.0), TypeError, "must be an integer in 2..8, not 4.0"),
        (lambda: IntFormat(True), TypeError, "not True"),
        (lambda: PotFormat(8), ValueError, "POT weight bit width must be an integer in 2..7, not 8"),
        (lambda: CodebookFormat(0, table=(0,)), ValueError, "in 1..8, not 0"),
        (lambda: CodebookFormat(2, table=(1, 2)), ValueError, "must contain an exact zero"),
        (lambda: CodebookFormat(1, table=(0, 1, 2)), ValueError, "1..2 entries"),
        (lambda: CodebookFormat(2, table=(0, 200)), ValueError, "8-bit signed"),
        (lambda: make_format("fp8", 4), ValueError, "['codebook', 'int', 'pot'], not 'fp8'"),
    ],
)
def test_bad_formats(make, exc, message):
    with pytest.raises(exc) as info:
        make()
    assert message in str(info.value)


def test_bad_values_named():
    with pytest.raises(ValueError, match=r"4-bit two's complement \(-8\.\.7\); 1 value\(s\) are not, first 8 at index \(1,\)"):
        IntFormat(4).encode([1, 8])
    with pytest.raises(TypeError, match="must be an integer array, not dtype float64"):
        IntFormat(4).encode(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"POT weights must be 0 or \+/-2\*\*e with e in 0\.\.2 .* first 3 at index \(0,\)"):
        PotFormat(3).encode([3])
    with pytest.raises(ValueError, match=r"first 8 at index \(0,\)"):
        PotFormat(3).encode([8])  # 2**3 > max exponent 2
    with pytest.raises(ValueError, match=r"POT weights .* first -9223372036854775808"):
        PotFormat(7).encode(np.array([np.iinfo(np.int64).min]))
    with pytest.raises(ValueError, match=r"entries of the table \[0, 3\]; 1 value\(s\) are not, first 2"):
        CodebookFormat(1, table=(0, 3)).encode([3, 2])
    with pytest.raises(ValueError, match=r"unsigned 4-bit codes \(0\.\.15\).*first 16"):
        IntFormat(4).decode([16])
    with pytest.raises(ValueError, match=r"within the 2-entry table"):
        CodebookFormat(2, table=(0, 3)).decode([2])


def test_format_dict_roundtrip():
    for fmt in (IntFormat(3), PotFormat(5), CodebookFormat(2, table=(0, -3, 4), table_bits=4)):
        assert format_from_dict(fmt.to_dict()) == fmt
