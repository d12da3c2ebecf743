"""The accelerator core ``hwq_core``: memories, layer sequencer, datapath, host interface.

Datapath (one micro-op per cycle, streams between the stages)::

    AddressGenerator -> WeightFetch -> ActFetch -+-> MacArray -> Requant -> Writeback -+
         ^ descriptor       (weight mem)  (act,   |                                    +-> act mem
         |                                 param) +-> MaxPool -------------------------+
    sequencer (descriptor mem) <- done of the layer's last write

The sequencer reads descriptor ``i`` (one cycle), starts the address generator, waits for
the layer's last write, records the layer's cycle count, and goes on until a descriptor
with ``last``. Inside a layer nothing stalls (the layout compiler gives every group at least
``lanes / simd`` micro-ops, the write-back's rate), so a layer takes exactly the cycles of
:mod:`hwq.golden.cycles`.

Host side: AXI4-Lite registers (:mod:`hwq.layout.regmap`, ports ``s_axil__*``), a bulk
write path for every memory in 32-bit chunks through ``BULK_WDATA`` or the AXI-Stream
port ``s_axis__tdata``/``s_axis__tvalid``/``s_axis__tready`` (one chunk per cycle),
output read-back through ``BULK_RDATA``, and ``irq`` (``STATUS.DONE`` and ``IRQ_ENABLE``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from hwq.config import CoreConfig
from hwq.layout import regmap
from hwq.layout.words import KIND_POOL, MEMORY_IDS, core_words
from hwq.rtl.addrgen import AddressGenerator
from hwq.rtl.axil import RegisterBlock, axil_signature
from hwq.rtl.dma import Dma, axi4_signature
from hwq.rtl.fetch import ActFetch, WeightFetch, group_side_layout
from hwq.rtl.maxpool import MaxPool
from hwq.rtl.pe import MacArray
from hwq.rtl.requant import Requant
from hwq.rtl.words import struct_layout
from hwq.rtl.writeback import Writeback

if TYPE_CHECKING:
    from hwq.layout.program import Program

__all__ = ["Core", "axis_signature"]


def axis_signature() -> wiring.Signature:
    """AXI-Stream of 32-bit bulk chunks, master side (``tdata``/``tvalid`` out, ``tready`` in).

    Verilog ports ``s_axis__tdata`` etc.: cocotbext-axi ``AxiStreamBus.from_prefix(dut,
    "s_axis_")`` finds them. No ``tlast``/``tkeep``: words are counted by the core.
    """
    return wiring.Signature({"tdata": Out(32), "tvalid": Out(1), "tready": In(1)})


class Core(wiring.Component):
    """One accelerator core for ``config``.

    Parameters
    ----------
    config : CoreConfig
    program : Program, optional
        preload the descriptor, weight and parameter memories with its images (for
        Amaranth's simulator; :func:`hwq.rtl.generate.generate` elaborates the core empty
        and writes a program's images into the Verilog text, so that generation does not
        grow with memory depth).
    act_init : dict of int to int, optional
        activation memory words to preload, address -> word.

    Ports: ``s_axil`` (AXI4-Lite slave), ``s_axis`` (AXI-Stream of 32-bit bulk chunks),
    ``irq``; with ``config.ext_bits``, ``m_axi`` (AXI4 master, :mod:`hwq.rtl.dma`).
    """

    def __init__(self, *, config: CoreConfig, program: Program | None = None,
                 act_init: dict[int, int] | None = None) -> None:
        if not isinstance(config, CoreConfig):
            raise TypeError(f"Config must be a CoreConfig, not {config!r}")
        if program is not None:
            program.check_config(config)
        self.config = config
        self.program = program
        self.act_init = dict(act_init or {})
        self.words = core_words(config)
        ports = {
            "s_axil": In(axil_signature()),
            "s_axis": In(axis_signature()),
            "irq": Out(1),
        }
        if config.external:
            ports["m_axi"] = Out(axi4_signature(config.ext_bits))
        super().__init__(ports)

    def _memories(self, m: Module) -> dict[str, memory.Memory]:
        cfg, w = self.config, self.words
        depth = cfg.depths
        mems = {}
        for name, lay in w.memories.items():
            init = [0] * depth[name]
            if self.program is not None and name in self.program.images:
                for i, v in enumerate(lay.to_ints(self.program.images[name])):
                    init[i] = v
            if name == "act":
                for addr, v in self.act_init.items():
                    init[addr] = v
            # ``no_rw_check``: a read and a write of one address in the same cycle never
            # happens (the host writes desc/weight/param only while the core is idle, and a
            # layer reads one ping-pong activation region while it writes the other), so
            # synthesis need not emulate the read-old-data collision rule: without it Yosys
            # puts a bypass mux after every block RAM output (the RAM's ~5.8 ns clock-to-out
            # then shares a cycle with a LUT) and registers every write address and data bit
            mems[name] = m.submodules[f"{name}_mem"] = memory.Memory(
                shape=unsigned(lay.width), depth=depth[name], init=init if any(init) else [],
                attrs={"no_rw_check": True})
        return mems

    def elaborate(self, platform):
        m = Module()
        ports = self._ports(m)
        dp = self._datapath(m, ports)
        seq = self._sequencer(m, ports, dp)
        bulk = self._bulk_path(m, ports, dp, seq)
        self._registers(m, ports, seq, bulk)
        return m

    def _ports(self, m: Module) -> SimpleNamespace:
        """The memories' ports and the AXI4-Lite register block."""
        cfg = self.config
        mems = self._memories(m)
        desc_rd = mems["desc"].read_port()
        weight_rd = mems["weight"].read_port()
        param_rd = mems["param"].read_port()
        act_rd = mems["act"].read_port()
        # K packing: the activation fetch's second word (Yosys builds the memory twice, one
        # copy per read port, both written together)
        act_rd2 = mems["act"].read_port() if cfg.pack else None
        act_wr = mems["act"].write_port(granularity=cfg.act_bits)
        host_wr = {name: mems[name].write_port() for name in ("desc", "weight", "param")}

        m.submodules.regs = regs = RegisterBlock(read_strobes=("BULK_RDATA",))
        wiring.connect(m, wiring.flipped(self.s_axil), regs.s_axil)
        ext_base = Signal(32)     # the external image's address (read back by every core)
        with m.If(regs.ext_base_we):
            m.d.sync += ext_base.eq(regs.ext_base_w)
        m.d.comb += regs.ext_base_r.eq(ext_base)

        return SimpleNamespace(desc_rd=desc_rd, weight_rd=weight_rd, param_rd=param_rd,
                               act_rd=act_rd, act_rd2=act_rd2, act_wr=act_wr, host_wr=host_wr,
                               regs=regs, ext_base=ext_base)

    def _datapath(self, m: Module, p: SimpleNamespace) -> SimpleNamespace:
        """Descriptor -> address generator -> weight and activation fetch -> MAC array or
        max pool -> requant -> write-back."""
        cfg, w = self.config, self.words
        desc_rd, weight_rd, param_rd, act_rd = p.desc_rd, p.weight_rd, p.param_rd, p.act_rd
        desc = struct_layout(w.desc)(desc_rd.data)
        # a registered copy for the consumers that first use a field cycles after START (the
        # fetch stages, the array's decoders, requant, write-back): their fan-out then starts
        # at a register of its own, not at the descriptor memory
        layer = Signal(struct_layout(w.desc), reset_less=True)
        m.d.sync += layer.eq(desc)
        side = group_side_layout(cfg)
        m.submodules.addrgen = ag = AddressGenerator(config=cfg)
        m.submodules.wfetch = wf = WeightFetch(config=cfg)
        m.submodules.afetch = af = ActFetch(config=cfg)
        m.submodules.mac = mac = MacArray(config=cfg, side=_mac_side(cfg))
        m.submodules.requant = rq = Requant(config=cfg, side=side)
        m.submodules.writeback = wb = Writeback(config=cfg)
        m.submodules.maxpool = mp = MaxPool(config=cfg, side=side)
        pool = layer.kind == KIND_POOL
        m.d.comb += ag.desc.eq(desc)
        wiring.connect(m, ag.o, wf.i)
        wiring.connect(m, wf.o, af.i)
        m.d.comb += [weight_rd.addr.eq(wf.rd_addr), weight_rd.en.eq(wf.rd_en),
                     wf.rd_data.eq(weight_rd.data),
                     af.kind.eq(layer.kind), af.p_base.eq(layer.p_base),
                     af.in_h.eq(layer.in_h), af.in_w.eq(layer.in_w),
                     param_rd.addr.eq(af.param_addr), param_rd.en.eq(af.param_en),
                     af.param_data.eq(param_rd.data), af.act_data.eq(act_rd.data)]
        if cfg.pack:
            m.d.comb += [p.act_rd2.addr.eq(af.act_addr2), p.act_rd2.en.eq(af.act_en),
                         af.act_data2.eq(p.act_rd2.data)]
        f = af.o.payload
        m.d.comb += [
            mac.i.valid.eq(af.o.valid & ~pool), mp.i.valid.eq(af.o.valid & pool),
            af.o.ready.eq(Mux(pool, mp.i.ready, mac.i.ready)),
            mac.i.payload.w.eq(f.w), mac.i.payload.a.eq(f.a), mac.i.payload.shift.eq(f.shift),
            mac.i.payload.neg.eq(f.neg), mac.i.payload.glast.eq(f.glast),
            mac.i.payload.side.param.eq(f.param), mac.i.payload.side.group.eq(f.group),
            mp.i.payload.a.eq(f.a), mp.i.payload.first.eq(f.pool_first),
            mp.i.payload.last.eq(f.pool_last), mp.i.payload.side.eq(f.group),
        ]
        if cfg.depthwise:       # the depthwise mode's window (:mod:`hwq.layout.dwmode`)
            m.d.comb += [af.dw.eq(layer.dw), af.stride_w.eq(layer.stride_w),
                         mac.i.payload.dw.eq(f.dw), mac.i.payload.al.eq(af.al)]
        if cfg.pe == "multiply":
            m.d.comb += [mac.table.eq(layer.table), mac.fmt.eq(layer.fmt)]
        ms = mac.o.payload
        m.d.comb += [
            rq.i.valid.eq(mac.o.valid), mac.o.ready.eq(rq.i.ready),
            rq.i.payload.acc.eq(ms.acc), rq.i.payload.bias.eq(ms.side.param.bias),
            rq.i.payload.m.eq(ms.side.param.m), rq.i.payload.s.eq(ms.side.param.s),
            rq.i.payload.side.eq(ms.side.group), rq.lo.eq(layer.lo), rq.hi.eq(layer.hi),
        ]
        wiring.connect(m, rq.o, wb.i)
        m.d.comb += [wb.out_ct.eq(layer.out_lim if cfg.external else layer.out_ct),
                     mp.o.ready.eq(1)]
        if cfg.pool_words:
            # the fused pool's running maxima: read without a clock (distributed RAM); the
            # write-back writes them back from its register, a cycle after the comparison
            m.submodules.pool_mem = pool_mem = memory.Memory(
                shape=unsigned(cfg.simd * cfg.act_bits), depth=cfg.pool_words, init=[])
            pool_rd = pool_mem.read_port(domain="comb")
            pool_wr = pool_mem.write_port(granularity=cfg.act_bits)
            m.d.comb += [wb.fuse.eq(layer.fuse), pool_rd.addr.eq(wb.pool_raddr),
                         wb.pool_rdata.eq(pool_rd.data), pool_wr.addr.eq(wb.pool_waddr),
                         pool_wr.data.eq(wb.pool_wdata), pool_wr.en.eq(wb.pool_wen)]

        return SimpleNamespace(desc=desc, layer=layer, pool=pool, ag=ag, af=af, mp=mp, wb=wb)

    def _sequencer(self, m: Module, p: SimpleNamespace, dp: SimpleNamespace) -> SimpleNamespace:
        """One START runs every layer's descriptor in turn; cycle counters per layer."""
        cfg, w = self.config, self.words
        regs, desc_rd = p.regs, p.desc_rd
        desc, pool, ag, mp, wb = dp.desc, dp.pool, dp.ag, dp.mp, dp.wb
        busy = Signal()
        done = Signal()
        irq_en = Signal()
        idx = Signal(w.desc_addr_bits)
        cycles = Signal(32)
        layer_cycles = Signal(32)
        layers_done = Signal(w.desc_addr_bits + 1)
        layer_sel = Signal(w.desc_addr_bits)
        ctrl = regmap.register("CTRL")
        start = regs.ctrl_we & ctrl.field("START").get(regs.ctrl_w)
        start_ag = Signal()     # high exactly in state START, from a register of its own
        m.d.comb += ag.start.eq(start_ag)
        layer_done = Mux(pool, mp.o.valid & mp.o.payload.side.llast, wb.done)
        m.submodules.cycle_mem = cyc_mem = memory.Memory(shape=unsigned(32),
                                                        depth=cfg.desc_depth, init=[])
        cyc_wr = cyc_mem.write_port()
        cyc_rd = cyc_mem.read_port()
        m.d.comb += [desc_rd.addr.eq(idx), cyc_rd.addr.eq(layer_sel),
                     cyc_wr.addr.eq(idx), cyc_wr.data.eq(layer_cycles + 1),
                     self.irq.eq(done & irq_en)]
        with m.If(busy):
            m.d.sync += [cycles.eq(cycles + 1), layer_cycles.eq(layer_cycles + 1)]
        dma = self._loader(m, p, desc, busy) if cfg.external else None
        stall_cycles = Signal(32)
        ext_beats = Signal(32)

        def finish_layer():
            m.d.comb += cyc_wr.en.eq(1)
            m.d.sync += [layers_done.eq(layers_done + 1), layer_cycles.eq(0)]
            with m.If(desc.last):
                m.d.sync += [busy.eq(0), done.eq(1)]
                m.next = "IDLE"
            with m.Else():
                m.d.sync += idx.eq(idx + 1)
                m.next = "DESC"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [busy.eq(1), done.eq(0), idx.eq(0), cycles.eq(0),
                                 layer_cycles.eq(0), layers_done.eq(0),
                                 stall_cycles.eq(0), ext_beats.eq(0)]
                    m.next = "DESC"
            with m.State("DESC"):                       # descriptor read
                if dma is None:
                    m.d.sync += start_ag.eq(1)
                    m.next = "START"
                else:
                    m.next = "CHECK"
            if dma is not None:
                with m.State("CHECK"):                  # wait for the load; start our own
                    loads = desc.ld_len != 0
                    stores = desc.st_len != 0
                    with m.If((desc.wait | loads | stores) & dma.busy):
                        m.d.sync += stall_cycles.eq(stall_cycles + 1)
                    with m.Else():
                        m.d.comb += [dma.start.eq(loads), dma.st_start.eq(stores)]
                        with m.If(stores):
                            m.next = "STORE"
                        with m.Elif(desc.nop):
                            finish_layer()
                        with m.Else():
                            m.d.sync += start_ag.eq(1)
                            m.next = "START"
                with m.State("STORE"):                  # until every write is acknowledged
                    with m.If(~dma.storing):
                        finish_layer()
            with m.State("START"):                      # address generator setup
                m.d.sync += start_ag.eq(0)
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(layer_done):
                    finish_layer()
        if dma is not None:
            with m.If(dma.beat):
                m.d.sync += ext_beats.eq(ext_beats + 1)
        with m.If(regs.ctrl_we & ctrl.field("CLEAR_DONE").get(regs.ctrl_w)):
            m.d.sync += done.eq(0)

        return SimpleNamespace(busy=busy, done=done, irq_en=irq_en, cycles=cycles,
                               layers_done=layers_done, layer_sel=layer_sel, cyc_rd=cyc_rd,
                               dma=dma, stall_cycles=stall_cycles, ext_beats=ext_beats)

    def _loader(self, m: Module, p: SimpleNamespace, desc, busy) -> Dma:
        """The DMA on ``m_axi``, its requests from the descriptor, ``EXT_BASE``."""
        m.submodules.dma = dma = Dma(config=self.config)
        wiring.connect(m, wiring.flipped(self.m_axi), dma.m_axi)
        m.d.comb += [dma.src.eq(desc.ld_src), dma.dst.eq(desc.ld_dst),
                     dma.length.eq(desc.ld_len), dma.to_act.eq(desc.ld_act),
                     dma.st_src.eq(desc.st_src), dma.st_dst.eq(desc.st_dst),
                     dma.st_len.eq(desc.st_len), dma.base.eq(p.ext_base),
                     dma.rd_data.eq(p.act_rd.data)]
        return dma

    def _bulk_path(self, m: Module, p: SimpleNamespace, dp: SimpleNamespace,
                   seq: SimpleNamespace) -> SimpleNamespace:
        """Host writes: images in 32-bit chunks (AXI4-Lite or AXI4-Stream) into the memories,
        the activation read-back, the control registers, and the activation memory's
        arbitration (the core while busy, the host while idle)."""
        cfg, w = self.config, self.words
        regs, act_rd, act_wr, host_wr = p.regs, p.act_rd, p.act_wr, p.host_wr
        af, mp, wb, pool = dp.af, dp.mp, dp.wb, dp.pool
        busy, irq_en, layer_sel = seq.busy, seq.irq_en, seq.layer_sel
        bulk_sel = Signal(2)
        bulk_addr = Signal(32)
        chunks = {name: lay.chunks for name, lay in w.memories.items()}
        max_chunks = max(chunks.values())
        buf = Signal(32 * max_chunks)
        chunk = Signal(range(max_chunks + 1))
        rchunk = Signal(range(chunks["act"] + 1))
        use_axil = regs.bulk_wdata_we
        m.d.comb += self.s_axis.tready.eq(~use_axil)
        beat = use_axil | self.s_axis.tvalid
        beat_data = Mux(use_axil, regs.bulk_wdata_w, self.s_axis.tdata)
        n_chunks = Signal(range(max_chunks + 1))
        for name, mid in MEMORY_IDS.items():
            with m.If(bulk_sel == mid):
                m.d.comb += n_chunks.eq(chunks[name])
        # a beat is registered before it is used (the chunk strobes fan out to the whole
        # word buffer and the write ports to block RAMs all over the device): ``load`` the
        # one-hot buffer slot of a chunk, ``commit`` the word's last chunk
        last = chunk == n_chunks - 1
        with m.If(beat):
            m.d.sync += chunk.eq(Mux(last, 0, chunk + 1))
        data_r = Signal(32)
        chunk_r = Signal.like(chunk)
        load = Signal(max_chunks)
        commit = Signal()
        m.d.sync += [data_r.eq(beat_data), chunk_r.eq(chunk), commit.eq(beat & last),
                     load.eq(Mux(beat & ~last, 1 << chunk, 0))]
        for i in range(max_chunks):
            with m.If(load[i]):
                m.d.sync += buf.word_select(i, 32).eq(data_r)
        word = Signal(32 * max_chunks)
        m.d.comb += word.eq(buf)
        m.d.comb += word.word_select(chunk_r, 32).eq(data_r)
        for name, port in host_wr.items():
            m.d.comb += [port.addr.eq(bulk_addr), port.data.eq(word),
                         port.en.eq(commit & (bulk_sel == MEMORY_IDS[name]))]
        if seq.dma is not None:                 # the loader writes the weights while busy
            dma, port = seq.dma, host_wr["weight"]
            with m.If(busy):
                m.d.comb += [port.addr.eq(dma.wr_addr), port.data.eq(dma.wr_data),
                             port.en.eq(dma.wr_en & ~dma.wr_act)]
        with m.If(commit):
            m.d.sync += bulk_addr.eq(bulk_addr + 1)
        # read-back of the activation memory, one chunk per BULK_RDATA read
        act_bits = w.act.width
        # registered copy of the RAM output for the read-back (a block RAM's clock-to-out
        # leaves no time for the register mux after it); the register block samples
        # BULK_RDATA at least three cycles after its previous read, or a BULK_ADDR write,
        # moved the address
        act_word = Signal(32 * chunks["act"])
        m.d.sync += act_word.eq(act_rd.data)
        with m.If(regs.bulk_rdata_re):
            with m.If(rchunk == chunks["act"] - 1):
                m.d.sync += [rchunk.eq(0), bulk_addr.eq(bulk_addr + 1)]
            with m.Else():
                m.d.sync += rchunk.eq(rchunk + 1)
        with m.If(regs.bulk_addr_we):
            m.d.sync += [bulk_addr.eq(regs.bulk_addr_w), chunk.eq(0), rchunk.eq(0)]
        with m.If(regs.bulk_sel_we):
            m.d.sync += bulk_sel.eq(regs.bulk_sel_w)
        with m.If(regs.irq_enable_we):
            m.d.sync += irq_en.eq(regs.irq_enable_w)
        with m.If(regs.layer_sel_we):
            m.d.sync += layer_sel.eq(regs.layer_sel_w)

        # activation memory: core when busy, host when idle
        host_act = ~busy & commit & (bulk_sel == MEMORY_IDS["act"])
        m.d.comb += [
            act_rd.addr.eq(Mux(busy, af.act_addr, bulk_addr)),
            act_rd.en.eq(Mux(busy, af.act_en, 1)),
            act_wr.addr.eq(Mux(busy, Mux(pool, mp.o.payload.side.out, wb.wr_addr), bulk_addr)),
            act_wr.data.eq(Mux(busy, Mux(pool, mp.o.payload.y.as_value(), wb.wr_data),
                               word[:act_bits])),
            act_wr.en.eq(Mux(busy, Mux(pool, Mux(mp.o.valid, (1 << cfg.simd) - 1, 0),
                                       wb.wr_en),
                             Mux(host_act, (1 << cfg.simd) - 1, 0))),
        ]
        if seq.dma is not None:
            # the DMA's activation transfers run in descriptors that compute nothing: a
            # store reads through the read port, a load writes through the write port
            dma = seq.dma
            with m.If(busy & dma.storing):
                m.d.comb += [act_rd.addr.eq(dma.rd_addr), act_rd.en.eq(dma.rd_en)]
            with m.If(busy & dma.wr_en & dma.wr_act):
                m.d.comb += [act_wr.addr.eq(dma.wr_addr), act_wr.data.eq(dma.wr_data[:act_bits]),
                             act_wr.en.eq((1 << cfg.simd) - 1)]

        return SimpleNamespace(bulk_sel=bulk_sel, bulk_addr=bulk_addr, act_word=act_word,
                               rchunk=rchunk)

    def _registers(self, m: Module, p: SimpleNamespace, seq: SimpleNamespace,
                   bulk: SimpleNamespace) -> None:
        """What the register block reads: identity, status, counters, the bulk state."""
        cfg, regs = self.config, p.regs
        busy, done, irq_en, cycles = seq.busy, seq.done, seq.irq_en, seq.cycles
        layer_sel, cyc_rd, layers_done = seq.layer_sel, seq.cyc_rd, seq.layers_done
        bulk_sel, bulk_addr, act_word, rchunk = (bulk.bulk_sel, bulk.bulk_addr, bulk.act_word,
                                                 bulk.rchunk)
        lo, hi = regmap.fingerprint_words(cfg.fingerprint())
        config0, config1, config2 = regmap.config_words(cfg)
        m.d.comb += [
            regs.id_r.eq(regmap.CORE_ID),
            regs.version_r.eq(regmap.version_word()),
            regs.fingerprint_lo_r.eq(lo),
            regs.fingerprint_hi_r.eq(hi),
            regs.status_r.eq(regmap.register("STATUS").pack(BUSY=busy, DONE=done)),
            regs.irq_enable_r.eq(irq_en),
            regs.cycles_r.eq(cycles),
            regs.layer_sel_r.eq(layer_sel),
            regs.layer_cycles_r.eq(cyc_rd.data),
            regs.layers_done_r.eq(layers_done),
            regs.bulk_sel_r.eq(bulk_sel),
            regs.bulk_addr_r.eq(bulk_addr),
            regs.bulk_rdata_r.eq(act_word.word_select(rchunk, 32)),
            regs.config0_r.eq(config0),
            regs.config1_r.eq(config1),
            regs.config2_r.eq(config2),
            regs.stall_cycles_r.eq(seq.stall_cycles),
            regs.ext_beats_r.eq(seq.ext_beats),
        ]


def _mac_side(config: CoreConfig) -> data.StructLayout:
    """What travels through the MAC array with each group: its parameters and write-back."""
    return data.StructLayout({"param": struct_layout(core_words(config).param),
                              "group": group_side_layout(config)})
