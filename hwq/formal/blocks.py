"""What each proof wraps: the block under proof with named inputs and outputs.

A :class:`Wrapped` is the block inside a module whose inputs are plain named signals, so the
same wrapper is driven by free inputs in a proof (:mod:`hwq.formal.properties`) and by a
counterexample's values in Amaranth's simulator (:mod:`hwq.formal.replay`). The RTL classes
are looked up in their modules when a wrapper is built, so a test can substitute a mutant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth.hdl import Fragment, Instance, Module, Signal, Value, signed, unsigned
from amaranth.lib import data

from hwq.config import CoreConfig

__all__ = ["PROOF_KINDS", "Proof", "Wrapped", "wrap"]

#: Block kinds with a proof.
PROOF_KINDS = ("pe", "mac_array", "requant", "maxpool", "writeback", "axil")


@dataclass(frozen=True)
class Proof:
    """One proof: ``kind`` (a :data:`PROOF_KINDS` entry), ``variant`` (PE type and format, e.g.
    ``"shift_add/pot"``), ``widths`` (parameter -> bits or count), SBY ``mode``
    (``"prove"``: k-induction, every reachable state; ``"bmc"``: ``depth`` cycles from
    reset) and ``depth``. ``slow`` proofs run with ``hwq prove --slow`` / ``pytest -m slow``.
    """

    kind: str
    variant: str
    widths: dict = field(hash=False)
    mode: str
    depth: int
    slow: bool = False
    engine: str = "smtbmc boolector"

    @property
    def name(self) -> str:
        w = "_".join(f"{k}{v}" for k, v in self.widths.items())
        return f"{self.kind}.{self.variant.replace('/', '.')}.{w}.{self.mode}{self.depth}"

    @property
    def width_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.widths.items())


@dataclass
class Wrapped:
    """The block in ``m``: ``inputs`` and ``outputs`` by name, ``dut`` the block itself and
    ``cfg`` its core config (None for PEs and the bus block)."""

    m: Module
    dut: object
    inputs: dict[str, Signal]
    outputs: dict[str, Value]
    cfg: CoreConfig | None = None
    #: inputs that are the same in every cycle (layer constants: tables, clamp bounds)
    constants: tuple[str, ...] = ()
    #: the block's registers by hierarchical name (``"pe0.term0"``), for the invariants a
    #: proof by induction needs (filled for the stream blocks, which are elaborated here)
    regs: dict[str, Signal] = field(default_factory=dict)


def elaborated(m: Module, dut: object, name: str = "dut") -> dict[str, Signal]:
    """Elaborate ``dut`` now, add it to ``m`` as ``name`` and return its registers (every
    signal its ``sync`` domain drives, by hierarchical name). Raises ValueError for a block
    with an instance (a DSP model): its registers would be invisible here."""
    frag = Fragment.get(dut, None)
    m.submodules[name] = frag
    return _registers(frag)


def _registers(frag: Fragment, path: str = "") -> dict[str, Signal]:
    out: dict[str, Signal] = {}
    for domain, stmts in frag.statements.items():
        if domain == "sync":
            for stmt in stmts:
                for sig in stmt._lhs_signals():
                    key = path + sig.name
                    while key in out and out[key] is not sig:   # two of one name
                        key += "'"
                    out[key] = sig
    for sub, name, *_ in frag.subfragments:
        if isinstance(sub, Instance):
            raise ValueError(f"A proof by induction needs every register of the block; "
                             f"{path}{name} is an instance ({sub.type}), not Amaranth")
        out.update(_registers(sub, f"{path}{name}."))
    return out


def _inputs(m: Module, spec: dict[str, object]) -> dict[str, Signal]:
    return {name: Signal(shape, name=name) for name, shape in spec.items()}


def wrap(proof: Proof) -> Wrapped:
    """The wrapper of ``proof``'s block (see the module docstring)."""
    return {"pe": _wrap_pe, "mac_array": _wrap_stream, "requant": _wrap_stream,
            "maxpool": _wrap_stream, "writeback": _wrap_writeback,
            "axil": _wrap_axil}[proof.kind](proof)


def _wrap_pe(proof: Proof) -> Wrapped:
    import hwq.rtl.pe as pe

    w = proof.widths
    s, ab = w["simd"], w["act"]
    pe_type, fmt = proof.variant.split("/")
    m = Module()
    ins = {f"a{j}": signed(ab) for j in range(s)}
    if pe_type == "bit_serial":
        ins |= {"plane": unsigned(s), "shift": unsigned(3), "neg": unsigned(1)}
    else:
        ins |= {f"code{j}": unsigned(w["w"]) for j in range(s)}
    if fmt == "codebook":
        ins |= {f"table{i}": signed(w["table"]) for i in range(1 << w["w"])}
    if pe_type == "pair":
        ins |= {f"code2_{j}": unsigned(w["w"]) for j in range(s)}
    sig = _inputs(m, ins)
    acts = [sig[f"a{j}"] for j in range(s)]
    outs: dict[str, Value] = {}
    if pe_type == "shift_add":
        m.submodules.dut = dut = pe.ShiftAddPE(simd=s, act_bits=ab, weight_bits=w["w"])
        m.d.comb += [dut.code[j].eq(sig[f"code{j}"]) for j in range(s)]
    elif pe_type == "bit_serial":
        m.submodules.dut = dut = pe.BitSerialPE(simd=s, act_bits=ab)
        m.d.comb += [dut.plane.eq(sig["plane"]), dut.shift.eq(sig["shift"]),
                     dut.neg.eq(sig["neg"])]
    else:
        def decoded(prefix: str, name: str) -> list[Value]:
            codes = [sig[f"{prefix}{j}"] for j in range(s)]
            if fmt == "int":
                m.submodules[name] = dec = pe.IntDecoder(bits=w["w"], count=s)
            else:
                m.submodules[name] = dec = pe.CodebookDecoder(bits=w["w"],
                                                              table_bits=w["table"], count=s)
                m.d.comb += [dec.table[i].eq(sig[f"table{i}"]) for i in range(1 << w["w"])]
            m.d.comb += [dec.code[j].eq(codes[j]) for j in range(s)]
            return [dec.value[j] for j in range(s)]

        vb = w["table"] if fmt == "codebook" else w["w"]
        if pe_type == "multiply":
            m.submodules.dut = dut = pe.MultiplyPE(simd=s, act_bits=ab, value_bits=vb)
            m.d.comb += [dut.w[j].eq(v) for j, v in enumerate(decoded("code", "dec"))]
        else:
            m.submodules.dut = dut = pe.MultiplyPairPE(simd=s, act_bits=ab, value_bits=vb)
            m.d.comb += [dut.w1[j].eq(v) for j, v in enumerate(decoded("code", "dec1"))]
            m.d.comb += [dut.w2[j].eq(v) for j, v in enumerate(decoded("code2_", "dec2"))]
            out2 = Signal(signed(dut.dot_bits + 1), name="out2")
            m.d.comb += out2.eq(dut.dot2 + dut.carry2)
            outs["out2"] = out2
    m.d.comb += [dut.en.eq(1)] + [dut.a[j].eq(acts[j]) for j in range(s)]
    dot = getattr(dut, "dot1" if pe_type == "pair" else "dot")
    carry = getattr(dut, "carry1" if pe_type == "pair" else "carry")
    out = Signal(signed(dut.dot_bits + 1), name="out")
    m.d.comb += out.eq(dot + carry)
    outs = {"out": out, **outs}
    consts = tuple(n for n in sig if n.startswith("table"))
    return Wrapped(m, dut, sig, outs, constants=consts)


def _flat(prefix: str, view: object, shape: object, into: dict, m: Module) -> None:
    """Name every leaf of a stream payload ``view`` (``prefix`` + field path) as an input."""
    if isinstance(shape, data.StructLayout):
        for name, f in shape:
            _flat(f"{prefix}{name}_" if prefix else f"{name}_", view[name], f.shape, into, m)
    elif isinstance(shape, data.ArrayLayout):
        for i in range(shape.length):
            _flat(f"{prefix}{i}_", view[i], shape.elem_shape, into, m)
    else:
        name = prefix.rstrip("_")
        sig = Signal(shape, name=name)
        into[name] = sig
        m.d.comb += Value.cast(view).eq(sig)


def _stream_cfg(proof: Proof) -> CoreConfig:
    w = proof.widths
    pe_type = proof.variant.split("/")[0] if proof.kind == "mac_array" else "multiply"
    return CoreConfig(pe=pe_type, lanes=w.get("lanes", 2), simd=w.get("simd", 2),
                      act_bits=w.get("act", 4), weight_bits=w.get("w", 2),
                      acc_bits=w.get("acc", 8), table_bits=w.get("table", 3))


def _wrap_stream(proof: Proof) -> Wrapped:
    from hwq.rtl import maxpool, pe, requant

    cfg = _stream_cfg(proof)
    side = unsigned(proof.widths.get("side", 4))
    m = Module()
    cls = {"mac_array": pe.MacArray, "requant": requant.Requant,
           "maxpool": maxpool.MaxPool}[proof.kind]
    dut = cls(config=cfg, side=side)
    ins: dict[str, Signal] = {}
    _flat("i_", dut.i.payload, dut.i.payload.shape(), ins, m)
    for name in ("i_valid", "o_ready"):
        ins[name] = Signal(name=name)
    m.d.comb += [dut.i.valid.eq(ins["i_valid"]), dut.o.ready.eq(ins["o_ready"])]
    consts = []
    for port in ("lo", "hi", "fmt"):
        if hasattr(dut, port):
            ins[port] = Signal.like(getattr(dut, port), name=port)
            m.d.comb += getattr(dut, port).eq(ins[port])
            consts.append(port)
    if proof.kind == "mac_array" and cfg.pe == "multiply":
        for i in range(1 << cfg.weight_bits):
            ins[f"table{i}"] = Signal(signed(cfg.table_bits), name=f"table{i}")
            m.d.comb += dut.table[i].eq(ins[f"table{i}"])
            consts.append(f"table{i}")
    outs = {"i_ready": dut.i.ready, "o_valid": dut.o.valid}
    lay = dut.o.payload.shape()
    for name, f in lay:
        if isinstance(f.shape, data.ArrayLayout):
            for i in range(f.shape.length):
                outs[f"o_{name}_{i}"] = dut.o.payload[name][i]
        else:
            outs[f"o_{name}"] = dut.o.payload[name]
    regs = elaborated(m, dut)
    return Wrapped(m, dut, ins, outs, cfg=cfg, constants=tuple(consts), regs=regs)


def _wrap_writeback(proof: Proof) -> Wrapped:
    """The write-back; with ``pool`` in the widths (the fused max pool's variants), a core
    with ``pool_words = pool`` and its pool buffer beside the block as the core has it (read
    without a clock, written at it with element enables), as registers ``pool_buf<i>`` that
    the proof can compare with its own copy."""
    from amaranth.hdl import Array

    from hwq.rtl import writeback

    cfg = _stream_cfg(proof)
    pool = proof.widths.get("pool", 0)
    if pool:
        cfg = CoreConfig(**{**cfg.to_dict(), "pool_words": pool})
    m = Module()
    m.submodules.dut = dut = writeback.Writeback(config=cfg)
    ins: dict[str, Signal] = {}
    _flat("i_", dut.i.payload, dut.i.payload.shape(), ins, m)
    ins["i_valid"] = Signal(name="i_valid")
    ins["out_ct"] = Signal.like(dut.out_ct, name="out_ct")
    m.d.comb += [dut.i.valid.eq(ins["i_valid"]), dut.out_ct.eq(ins["out_ct"])]
    outs = {"i_ready": dut.i.ready, "wr_addr": dut.wr_addr, "wr_data": dut.wr_data,
            "wr_en": dut.wr_en, "done": dut.done}
    consts = ("out_ct",)
    if pool:
        ab = cfg.act_bits
        ins["fuse"] = Signal(name="fuse")
        buf = [Signal(cfg.simd * ab, name=f"pool_buf{i}") for i in range(pool)]
        m.d.comb += [dut.fuse.eq(ins["fuse"]), dut.pool_rdata.eq(Array(buf)[dut.pool_addr])]
        for i, word in enumerate(buf):
            for e in range(cfg.simd):
                with m.If((dut.pool_addr == i) & dut.pool_wen[e]):
                    m.d.sync += word[e * ab:(e + 1) * ab].eq(
                        dut.pool_wdata[e * ab:(e + 1) * ab])
            outs[f"pool_buf{i}"] = word
        consts += ("fuse",)
    return Wrapped(m, dut, ins, outs, cfg=cfg, constants=consts)


def _wrap_axil(proof: Proof) -> Wrapped:
    """The register block, with the core's side of each ``rw`` register (a register that a
    ``_we`` strobe loads from ``_w``, read back through ``_r``) so a write can be read back;
    ``ro`` values are inputs."""
    from hwq.rtl import axil

    m = Module()
    m.submodules.dut = dut = axil.RegisterBlock(read_strobes=("BULK_RDATA",))
    bus = dut.s_axil
    ins: dict[str, Signal] = {}
    outs: dict[str, Value] = {}
    for name, member in axil.axil_signature().members.items():
        port = getattr(bus, name)
        if member.flow.name == "Out":          # driven by the master: an input here
            ins[name] = Signal.like(port, name=name)
            m.d.comb += port.eq(ins[name])
        else:
            outs[name] = port
    for r in dut.registers:
        n = r.name.lower()
        if r.access == "rw":
            state = Signal.like(getattr(dut, f"{n}_r"), name=f"{n}_state")
            with m.If(getattr(dut, f"{n}_we")):
                m.d.sync += state.eq(getattr(dut, f"{n}_w"))
            m.d.comb += getattr(dut, f"{n}_r").eq(state)
            outs[f"{n}_state"] = state
        elif r.access == "ro":
            ins[f"{n}_r"] = Signal.like(getattr(dut, f"{n}_r"), name=f"{n}_r")
            m.d.comb += getattr(dut, f"{n}_r").eq(ins[f"{n}_r"])
        if r.access in ("rw", "wo"):
            outs[f"{n}_we"] = getattr(dut, f"{n}_we")
            outs[f"{n}_w"] = getattr(dut, f"{n}_w")
    consts = tuple(n for n in ins if n.endswith("_r"))
    return Wrapped(m, dut, ins, outs, constants=consts)
