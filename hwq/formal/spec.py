"""The golden definitions as Amaranth expressions: what the proofs expect.

Each function mirrors one definition of :mod:`hwq.golden` (tests/formal/test_spec.py checks
them against it on random values, so a proof and the golden model cannot drift apart):

* :func:`pot_value`: ``POT(b)`` code -> ``0`` (``k = 0``) or ``+/-2**(k-1)``
  (:class:`hwq.golden.formats.PotFormat`);
* :func:`pot_term`: a shift-add term ``+/-(a << (k - 1))``
  (:func:`hwq.golden.bitserial.shift_add_linear`);
* :func:`int_value`: ``INT(b)`` code -> two's complement value
  (:class:`hwq.golden.formats.IntFormat`);
* :func:`codebook_value`: index -> table entry (:class:`hwq.golden.formats.CodebookFormat`);
* :func:`plane_coefficient`: a bit-serial beat's ``+/-2**shift``
  (:func:`hwq.golden.bitserial.plane_coefficients`);
* :func:`dot`: ``sum_s w[s] * a[s]``, exact (:func:`hwq.golden.gemm.int_matmul`);
* :func:`requant`: ``clamp(((acc + bias) * M + 2**(S-1)) >> S, lo, hi)``
  (:func:`hwq.golden.requant.requantize_reference`).

Every result is wide enough to be exact (Amaranth widens ``+``, ``*`` and ``<<``).
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Const, Mux, Value, signed

__all__ = ["codebook_value", "dot", "int_value", "plane_coefficient", "pot_term", "pot_value",
           "requant", "sum_of"]


def pot_value(code: object, bits: int) -> Value:
    """``POT(bits)`` weight value of an unsigned ``bits``-bit ``code`` (signed, exact)."""
    code = Value.cast(code)
    k = code[:bits - 1]
    mag = Mux(k == 0, 0, Const(1, signed(2)) << (k - 1)[:bits - 1])
    return Mux(code[bits - 1], -mag, mag)


def pot_term(code: object, a: object, bits: int) -> Value:
    """One shift-add term: ``+/-(a << (k - 1))`` for a ``POT(bits)`` code, 0 for ``k = 0``
    (:func:`hwq.golden.bitserial.shift_add_linear`; equals ``pot_value(code) * a``)."""
    code, a = Value.cast(code), Value.cast(a)
    k = code[:bits - 1]
    mag = (a << k) >> 1
    return Mux(k == 0, 0, Mux(code[bits - 1], -mag, mag))


def int_value(code: object, bits: int) -> Value:
    """``INT(bits)`` weight value: the code's ``bits`` bits read as two's complement."""
    return Value.cast(code)[:bits].as_signed()


def codebook_value(table: Sequence[object], code: object) -> Value:
    """``table[code]``: the entry of a CODEBOOK index (``len(table) == 2**width(code)``)."""
    code = Value.cast(code)
    out = Value.cast(table[0])
    for i in range(1, len(table)):
        out = Mux(code == i, table[i], out)
    return out


def plane_coefficient(shift: object, neg: object) -> Value:
    """Weight of a bit-serial plane: ``-2**shift`` if ``neg`` else ``2**shift``."""
    mag = Const(1, signed(2)) << Value.cast(shift)
    return Mux(neg, -mag, mag)


def dot(w: Sequence[object], a: Sequence[object]) -> Value:
    """``sum_s w[s] * a[s]`` (exact, signed), summed pairwise (a balanced tree: the same
    sum, in an order SAT solvers compare with an adder tree far faster than a chain)."""
    return sum_of([Value.cast(x) * Value.cast(y) for x, y in zip(w, a, strict=True)])


def sum_of(terms: Sequence[object]) -> Value:
    """``sum(terms)``, exact, summed pairwise."""
    terms = [Value.cast(t) for t in terms]
    while len(terms) > 1:
        pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
    return terms[0]


def requant(acc: object, bias: object, m: object, s: object, lo: object, hi: object) -> Value:
    """``clamp(((acc + bias) * M + 2**(S - 1)) >> S, lo, hi)``, ``>>`` arithmetic, ``S >= 1``."""
    s = Value.cast(s)
    p = (Value.cast(acc) + bias) * Value.cast(m).as_unsigned()
    half = Const(1, signed(2)) << (s - 1)[:len(s)]
    y = (p + half) >> s
    return Mux(y < lo, lo, Mux(y > hi, hi, y))
