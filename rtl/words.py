"""Amaranth views of the pure-Python word layouts of :mod:`hwq.layout.words`.

The compiler packs memory images with :class:`hwq.layout.words.WordLayout`; the RTL reads
the same bits through the :class:`~amaranth.lib.data.StructLayout` built here (fields LSB
first, in order, as both define it), so a word's packing is written down once.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from hwq.layout.words import Field, WordLayout


def field_shape(f: Field) -> data.ShapeCastable | object:
    """Shape of one field: ``signed``/``unsigned(width)``, an array if ``f.array``."""
    shape = signed(f.width) if f.signed else unsigned(f.width)
    return data.ArrayLayout(shape, f.count) if f.array else shape


def struct_layout(layout: WordLayout) -> data.StructLayout:
    """The :class:`~amaranth.lib.data.StructLayout` of a :class:`WordLayout`."""
    out = data.StructLayout({f.name: field_shape(f) for f in layout.fields})
    assert out.size == layout.width
    return out
