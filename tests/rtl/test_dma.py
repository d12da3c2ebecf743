"""The DMA alone (Amaranth's simulator): activation stores and loads over ``m_axi``.

A store reads activation words from the activation memory and writes them as INCR bursts; an
activation load reads them back into another address. Both are checked word for word (the
bytes the memory holds, the words the activation memory holds afterwards) and cycle for
cycle against :func:`hwq.golden.memory.store_cycles` / :func:`load_cycles` on a memory of
fixed latency; with random stalls on every channel the words are the same and the time is
no shorter.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module, unsigned
from amaranth.lib import memory
from amaranth.sim import Simulator

from hwq.config import CoreConfig
from hwq.golden.memory import load_cycles, store_cycles
from hwq.layout.words import core_words
from hwq.rtl.axi_memory import AxiMemory
from hwq.rtl.dma import Dma

BASE = 0x1000_0000


class _Bench:
    """A Dma wired to an activation memory of 64 words and an AxiMemory."""

    def __init__(self, config: CoreConfig, init: list[int]) -> None:
        self.config = config
        self.words = core_words(config)
        self.m = m = Module()
        m.submodules.dma = self.dma = dma = Dma(config=config)
        m.submodules.act = self.act = memory.Memory(
            shape=unsigned(self.words.act.width), depth=64, init=init)
        rd = self.act.read_port()
        wr = self.act.write_port()
        m.d.comb += [rd.addr.eq(dma.rd_addr), rd.en.eq(dma.rd_en), dma.rd_data.eq(rd.data),
                     wr.addr.eq(dma.wr_addr), wr.data.eq(dma.wr_data),
                     wr.en.eq(dma.wr_en & dma.wr_act), dma.base.eq(BASE)]


def _run(config, *, words, src, dst_ext, back, latency, stall=0.0, seed=0):
    rng = np.random.default_rng(seed)
    w = core_words(config)
    mask = (1 << w.act.width) - 1
    init = [0] * 64
    for i in range(words):
        init[src + i] = int(rng.integers(0, 1 << 62)) * 7 & mask
    bench = _Bench(config, init)
    ab = w.ext_act_beats
    mem = AxiMemory(bench.dma.m_axi, data_bits=config.ext_bits, latency=latency,
                    stall=stall, seed=seed, base=BASE)
    mem.load(np.zeros((dst_ext + words) * ab * config.ext_bits // 32 + 8, np.uint32))
    got = {}
    dma = bench.dma

    async def testbench(ctx):
        async def pulse(strobe, **fields):
            for name, value in fields.items():
                ctx.set(getattr(dma, name), value)
            ctx.set(strobe, 1)
            await ctx.tick()
            ctx.set(strobe, 0)
            cycles = 1
            while ctx.get(dma.busy):
                await ctx.tick()
                cycles += 1
            return cycles

        got["store"] = await pulse(dma.st_start, st_src=src, st_dst=dst_ext, st_len=words)
        got["load"] = await pulse(dma.start, src=dst_ext, dst=back, length=words, to_act=1)
        await ctx.tick()
        got["back"] = [ctx.get(bench.act.data[back + i]) for i in range(words)]

    sim = Simulator(bench.m)
    sim.add_clock(1e-8)
    sim.add_testbench(mem.testbench, background=True)
    sim.add_testbench(testbench)
    sim.run()
    return init[src:src + words], got, mem


@pytest.mark.parametrize("ext_bits, simd, act_bits, burst, outstanding, latency, dst_ext", [
    (64, 8, 8, 4, 2, 3, 0),       # one beat per word
    (32, 8, 8, 4, 1, 2, 3),       # two beats per word, a first burst cut at its edge
    (128, 8, 8, 2, 2, 5, 1),      # a narrow word on a wide bus: zero-padded beats
    (32, 4, 6, 1, 1, 1, 5),       # 24-bit words, single-beat bursts
])
def test_a_store_then_a_load_moves_the_words_in_the_modelled_cycles(
        ext_bits, simd, act_bits, burst, outstanding, latency, dst_ext):
    cfg = CoreConfig(pe="shift_add", lanes=4, simd=simd, act_bits=act_bits, act_depth=64,
                     ext_bits=ext_bits, ext_burst=burst, ext_outstanding=outstanding)
    w = core_words(cfg)
    ab = w.ext_act_beats
    words = 11
    sent, got, mem = _run(cfg, words=words, src=8, dst_ext=dst_ext, back=40, latency=latency)
    assert got["back"] == sent
    nbytes = ab * ext_bits // 8
    for i, word in enumerate(sent):
        at = (dst_ext + i) * nbytes
        assert int.from_bytes(mem.data[at:at + nbytes], "little") == word
    shape = dict(burst=burst, outstanding=outstanding, latency=latency)
    assert got["store"] == store_cycles(dst_ext * ab, words * ab, **shape)
    assert got["load"] == load_cycles(dst_ext * ab, words * ab, **shape)
    # aligned INCR bursts (the memory model checks each one), every beat written once
    assert sum(n for _, n in mem.writes) == words * ab
    assert [a for a, _ in mem.writes] == sorted(a for a, _ in mem.writes)


@pytest.mark.parametrize("seed", [1, 2])
def test_stalls_on_every_channel_keep_the_words_and_only_add_cycles(seed):
    cfg = CoreConfig(pe="shift_add", lanes=4, simd=8, act_bits=8, act_depth=64, ext_bits=32,
                     ext_burst=4, ext_outstanding=2)
    ab = core_words(cfg).ext_act_beats
    sent, got, _ = _run(cfg, words=9, src=3, dst_ext=2, back=30, latency=2, stall=0.3,
                        seed=seed)
    assert got["back"] == sent
    shape = dict(burst=4, outstanding=2, latency=2)
    assert got["store"] >= store_cycles(2 * ab, 9 * ab, **shape)
    assert got["load"] >= load_cycles(2 * ab, 9 * ab, **shape)
