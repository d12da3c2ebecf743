"""Word layouts (shared by compiler, RTL and host) and the register map."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwq.config import CoreConfig
from hwq.layout import regmap
from hwq.layout.words import Field, WordLayout, core_words


@st.composite
def layouts_and_values(draw):
    fields = []
    for i in range(draw(st.integers(1, 5))):
        fields.append(Field(f"f{i}", draw(st.integers(1, 40)), signed=draw(st.booleans()),
                            count=draw(st.integers(1, 4))))
    lay = WordLayout("t", fields)
    n = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = {}
    for f in fields:
        lo, hi = f.range()
        shape = (n, f.count) if f.array else (n,)
        values[f.name] = rng.integers(lo, hi, size=shape, endpoint=True)
    return lay, n, values


@given(layouts_and_values())
def test_pack_unpack_round_trip(case):
    lay, n, values = case
    img = lay.pack(n, **values)
    assert img.shape == (n, lay.chunks) and img.dtype == np.uint32
    back = lay.unpack(img)
    for name, v in values.items():
        np.testing.assert_array_equal(back[name], v)
    np.testing.assert_array_equal(lay.from_ints(lay.to_ints(img)), img)


def test_pack_refuses_values_that_do_not_fit():
    lay = WordLayout("t", [Field("a", 4, signed=True)])
    with pytest.raises(ValueError, match=r"t.a must fit the 4-bit t.a field \(-8..7\), not 8"):
        lay.pack(1, a=8)
    with pytest.raises(ValueError, match=r"t word has no field\(s\) \['b'\]"):
        lay.pack(1, b=1)


def test_core_words_widths():
    w = core_words(CoreConfig(pe="multiply", lanes=8, simd=8, weight_bits=4))
    assert w.act.width == 64 and w.act.chunks == 2
    assert w.weight["w"].count == 64
    assert w.param.width == 8 * 62
    assert w.desc["table"].count == 16
    bs = core_words(CoreConfig(pe="bit_serial", lanes=4, simd=4))
    assert bs.weight["w"].width == 1 and "shift" in {f.name for f in bs.weight.fields}


def test_config_validation_messages():
    with pytest.raises(ValueError, match="Lanes must be an integer in 1..256, not 0"):
        CoreConfig(pe="multiply", lanes=0)
    with pytest.raises(ValueError, match="Lanes and SIMD width must divide one another, "
                                         "not lanes=3, simd=8"):
        CoreConfig(pe="multiply", lanes=3)
    with pytest.raises(ValueError, match="Codebook table entry bit width must be an integer "
                                         "in 2..8, not 9"):
        CoreConfig(pe="multiply", table_bits=9)
    with pytest.raises(ValueError, match="PE type must be one of shift_add, bit_serial, "
                                         "multiply, not 'fpu'"):
        CoreConfig(pe="fpu")
    assert CoreConfig(pe="shift_add").formats == ("pot",)


def test_register_map_is_consistent():
    offsets = [r.offset for r in regmap.REGISTERS]
    assert len(set(offsets)) == len(offsets)
    assert max(offsets) < 1 << regmap.ADDR_WIDTH
    assert regmap.ADDR.CTRL == 0x10 and regmap.BIT.CTRL_START == 1
    assert regmap.BIT.STATUS_DONE == 2 and regmap.MEM.act == 3
    lo, hi = regmap.fingerprint_words("0123456789abcdef")
    assert (lo, hi) == (0x89ABCDEF, 0x01234567)
    table = regmap.markdown()
    assert table.count("\n") == len(regmap.REGISTERS) + 2
    assert all(line.count("|") == 5 for line in table.splitlines())
    namespace = {}
    exec(regmap.python_constants(), namespace)
    assert namespace["BULK_WDATA"] == 0x38 and namespace["CORE_ID"] == regmap.CORE_ID


def test_regmap_imports_no_amaranth():
    import subprocess
    import sys
    code = ("import sys, hwq.layout, hwq.layout.regmap, hwq.layout.program; "
            "sys.exit(int(any(m.startswith('amaranth') for m in sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("name", ["hwq.layout.words", "hwq.golden.cycles"])
def test_doctests(name):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_c_header_has_every_offset_mask_and_memory_id():
    import re

    text = regmap.c_header()
    defines = {name: int(value, 16) if value.startswith("0x") else int(value)
               for name, value in re.findall(r"^#define (HWQ_\w+) (0x[0-9a-f]+|\d+)u$", text,
                                             re.M)}
    expected = {"HWQ_CORE_ID": regmap.CORE_ID, "HWQ_MAP_VERSION": regmap.version_word()}
    expected |= {f"HWQ_REG_{r.name}": r.offset for r in regmap.REGISTERS}
    expected |= {f"HWQ_BIT_{k}": v for k, v in vars(regmap.BIT).items()}
    expected |= {f"HWQ_MEM_{k.upper()}": v for k, v in vars(regmap.MEM).items()}
    assert defines == expected
    assert text.startswith("/* hwq core registers") and text.rstrip().endswith("#endif")


def test_register_fields_pack_and_unpack_through_their_bitfields():
    c0 = regmap.register("CONFIG0")
    assert c0.unpack(c0.pack(PE=2, LANES=256, SIMD=3)) == {"PE": 2, "LANES": 256, "SIMD": 3}
    assert regmap.config_words(CoreConfig(pe="bit_serial", lanes=2, simd=2, acc_bits=24)) == (
        1 | 2 << 8 | 2 << 20, 8 | 4 << 8 | 24 << 16, 0)
    assert regmap.config_words(CoreConfig(pe="shift_add", ext_bits=64, ext_burst=8,
                                          ext_outstanding=3))[2] == 64 | 8 << 8 | 3 << 20
    assert regmap.register("STATUS").pack(DONE=1) == regmap.BIT.STATUS_DONE
    with pytest.raises(ValueError, match=r"CONFIG0.LANES must be in 0..511 \(9 bits\), not 512"):
        c0.pack(LANES=512)
    with pytest.raises(KeyError, match="Register CONFIG0 has no field 'BUSY'"):
        c0.field("BUSY")
