"""Deliberately wrong variants of the RTL (built here by substituting a class or a helper
in its module, the library untouched): each proof fails on its mutant with a basecase
counterexample, and the counterexample, replayed through the block in Amaranth's simulator,
shows a mismatch against hwq.golden; replayed on the real RTL it shows none."""

import pytest
from amaranth.hdl import Cat, Const, Mux, Value

import hwq.rtl.axil as axil
import hwq.rtl.pe as pe
import hwq.rtl.requant as requant
import hwq.rtl.writeback as writeback
from hwq.formal.proofs import PROOFS, run_proof
from hwq.formal.replay import replay

pytestmark = pytest.mark.formal


def _proof(prefix):
    return next(p for p in PROOFS if p.name.startswith(prefix) and not p.slow)


class ShiftOffByOne(pe.PotDecoder):
    """POT exponent field one too large: every nonzero weight shifted one bit too far."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        for i in range(self.count):
            k = self.code[i][:self.bits - 1]
            m.d.comb += self.k[i].eq(Mux(k == 0, 0, k + 1))
        return m


class SwappedCodebook(pe.CodebookDecoder):
    """Codebook entries 0 and 1 swapped."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        for i in range(self.count):
            c = self.code[i]
            m.d.comb += self.value[i].eq(
                Mux(c == 0, self.table[1], Mux(c == 1, self.table[0], self.table[c])))
        return m


class EarlyResponse(axil.RegisterBlock):
    """A write response as soon as a write address is offered, before the write is taken."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        bus = self.s_axil
        with m.If(bus.awvalid & ~bus.bvalid):
            m.d.sync += bus.bvalid.eq(1)
        return m


class ForgetfulPool(writeback.Writeback):
    """Fused max pool that treats every conv position as its window's first: the window's
    last position overwrites the running maximum instead of comparing with it."""

    def _pooled(self, m, index, addr, data, en, done, tfirst, tlast):
        return super()._pooled(m, index, addr, data, en, done, 1, tlast)


def _unsigned_activation(real):
    """registered_product with the second operand (the activation) zero-extended."""
    def product(m, a, b, en, *, name, dsp):
        return real(m, a, Value.cast(b).as_unsigned(), en, name=name, dsp=dsp)
    return product


def _floor_rounding(real):
    """Requant's q registered with its rounding bit cleared: (q + 1) >> 1 becomes q >> 1,
    round half up becomes round down."""
    def register(m, value, en, name):
        if name.startswith("q") and not name.startswith("q8"):
            v = Value.cast(value)
            value = Cat(Const(0, 1), v[1:]).as_signed()
        return real(m, value, en, name)
    return register


def _dropping_stage(real):
    """The array's valid bit of pipeline stage 2 loads even while the output is refused: the
    beat it held is lost."""
    def register(m, value, en, name):
        return real(m, value, 1 if name == "valid_d2" else en, name)
    return register


MUTANTS = {
    "shift_off_by_one": ("pe.shift_add", lambda mp: mp.setattr(pe, "PotDecoder",
                                                              ShiftOffByOne)),
    "lost_sign_extension": ("pe.multiply.int", lambda mp: mp.setattr(
        pe, "registered_product", _unsigned_activation(pe.registered_product))),
    "codebook_entry_swapped": ("pe.multiply.codebook", lambda mp: mp.setattr(
        pe, "CodebookDecoder", SwappedCodebook)),
    "rounding_changed": ("requant.arith", lambda mp: mp.setattr(
        requant, "register", _floor_rounding(requant.register))),
    "dropped_beat_under_stall": ("mac_array.shift_add", lambda mp: mp.setattr(
        pe, "register", _dropping_stage(pe.register))),
    "response_before_request": ("axil", lambda mp: mp.setattr(axil, "RegisterBlock",
                                                             EarlyResponse)),
    "fused_pool_forgets_the_maximum": ("writeback.fused.", lambda mp: mp.setattr(
        writeback, "Writeback", ForgetfulPool)),
    # the block as it was: OKAY (and data 0) for a word with no register
    "okay_on_unmapped": ("axil", lambda mp: mp.setattr(axil, "SLVERR", axil.OKAY)),
}


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_mutant_is_caught_and_replays_as_a_golden_mismatch(mutant, tmp_path):
    prefix, apply = MUTANTS[mutant]
    proof = _proof(prefix)
    with pytest.MonkeyPatch.context() as mp:
        apply(mp)
        row = run_proof(proof, tmp_path)
        assert row["result"] == "fail", row
        assert row["step"] == "basecase"
        assert (tmp_path / f"{proof.name}.vcd").stat().st_size > 0
        assert row["inputs"], row
        assert row["replay"], f"{mutant}: the counterexample shows no golden mismatch"
        print(mutant, row["replay"][0])
    # the same inputs on the real RTL agree with hwq.golden
    assert replay(proof, row["inputs"]) == []
