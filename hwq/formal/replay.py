"""Counterexample replay: a failed proof's inputs become a concrete test vector.

:func:`replay` drives the block's wrapper (:mod:`hwq.formal.blocks`, the same RTL classes the
proof used) with the trace's input values in Amaranth's simulator, cycle by cycle, and
compares what it produces with :mod:`hwq.golden` (formats, dot products, requantize, the
register map), the same terms as the block tests. It returns the mismatches, one line each;
an empty list means the trace shows no difference from the golden model.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hwq.formal.blocks import Proof, Wrapped, wrap
from hwq.golden.formats import CodebookFormat, IntFormat, PotFormat
from hwq.golden.gemm import int_matmul
from hwq.golden.requant import requantize_reference

__all__ = ["replay", "simulate"]


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def simulate(wrapped: Wrapped, steps: list[dict[str, int]]) -> list[dict[str, int]]:
    """Run the wrapper with the inputs of ``steps`` (raw bits per cycle; a missing input is
    0); the outputs of each cycle, read before its clock edge, and the block's registers
    (``"reg.<name>"``, where the wrapper names them)."""
    top = Module()
    top.domains.sync = ClockDomain()
    top.submodules.w = wrapped.m
    seen: list[dict[str, int]] = []

    async def tb(ctx):
        for step in steps:
            for name, sig in wrapped.inputs.items():
                raw = int(step.get(name, 0))
                width = len(sig)
                ctx.set(sig, _signed(raw, width) if sig.shape().signed else
                        raw & ((1 << width) - 1))
            seen.append({name: int(ctx.get(v)) for name, v in wrapped.outputs.items()}
                        | {f"reg.{name}": int(ctx.get(v)) for name, v in wrapped.regs.items()})
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return seen


def _val(steps: list[dict], t: int, name: str, wrapped: Wrapped) -> int:
    sig = wrapped.inputs[name]
    raw = int(steps[t].get(name, 0))
    return _signed(raw, len(sig)) if sig.shape().signed else raw


def replay(proof: Proof, steps: list[dict[str, int]]) -> list[str]:
    """Mismatches between the block and hwq.golden on the counterexample ``steps``."""
    wrapped = wrap(proof)
    outs = simulate(wrapped, steps)
    fn = {"pe": _pe, "mac_array": _groups, "requant": _groups, "maxpool": _groups,
          "writeback": _writeback, "axil": _axil}[proof.kind]
    return fn(proof, wrapped, steps, outs)


def _pe_golden(proof: Proof, steps: list, t: int, prefix: str = "code") -> int:
    """hwq.golden's dot product of the PE inputs of cycle ``t``."""
    w = proof.widths
    s = w["simd"]
    pe_type, fmt = proof.variant.split("/")
    a = np.array([[_signed(int(steps[t].get(f"a{j}", 0)), w["act"]) for j in range(s)]])
    if pe_type == "bit_serial":
        plane = np.array([[(steps[t].get("plane", 0) >> j) & 1 for j in range(s)]])
        coef = (-1 if steps[t].get("neg", 0) else 1) << steps[t].get("shift", 0)
        return int(coef * int_matmul(a, plane.T)[0, 0])
    codes = [int(steps[t].get(f"{prefix}{j}", 0)) for j in range(s)]
    if fmt == "pot":
        vals = PotFormat(w["w"]).decode(codes)
    elif fmt == "int":
        vals = IntFormat(w["w"]).decode(codes)
    else:
        table = [_signed(int(steps[t].get(f"table{i}", 0)), w["table"])
                 for i in range(1 << w["w"])]
        vals = CodebookFormat(w["w"], table=tuple(table), table_bits=w["table"]).decode(codes)
    return int(int_matmul(a, np.asarray(vals).reshape(1, -1).T)[0, 0])


def _pe(proof: Proof, wrapped: Wrapped, steps: list, outs: list) -> list[str]:
    from hwq.formal.properties import latency

    n = latency("pe")
    bad = []
    for t in range(n, len(steps)):
        for name, prefix in (("out", "code"), ("out2", "code2_")):
            if name not in outs[t]:
                continue
            want = _pe_golden(proof, steps, t - n, prefix)
            if outs[t][name] != want:
                bad.append(f"cycle {t}: {name} {outs[t][name]} != golden dot {want} of the "
                           f"inputs of cycle {t - n}")
    return bad


def _group_golden(proof: Proof, wrapped: Wrapped, steps: list,
                  outs: list) -> tuple[list, list]:
    """(golden groups, output beats): each a (side, {field: value}) in order."""
    cfg = wrapped.cfg
    want, got, run = [], [], None
    for t, o in enumerate(outs):
        if o["o_valid"] and steps[t].get("o_ready", 0):
            fields = {k: v for k, v in o.items() if k.startswith(("o_y_", "o_acc_"))}
            got.append((o["o_side"], fields))
        if not (steps[t].get("i_valid", 0) and o["i_ready"]):
            continue
        v = lambda name, t=t: _val(steps, t, name, wrapped)  # noqa: E731
        if proof.kind == "requant":
            y = {f"o_y_{i}": requantize_reference(v(f"i_acc_{i}"), v(f"i_bias_{i}"),
                                                  v(f"i_m_{i}"), v(f"i_s_{i}"), v("lo"),
                                                  v("hi")) for i in range(cfg.lanes)}
            want.append((v("i_side"), y))
        elif proof.kind == "maxpool":
            a = np.array([v(f"i_a_{j}") for j in range(cfg.simd)])
            run = a if v("i_first") or run is None else np.maximum(run, a)
            if v("i_last"):
                want.append((v("i_side"), {f"o_y_{j}": int(x) for j, x in enumerate(run)}))
        else:
            p, s = cfg.lanes, cfg.simd
            sub = dict(proof.widths, simd=s, table=cfg.table_bits, w=cfg.weight_bits,
                       act=cfg.act_bits)
            pe_proof = Proof("pe", proof.variant, sub, "bmc", 0)
            dots = []
            for lane in range(p):
                beat = {f"a{j}": steps[t].get(f"i_a_{j}", 0) for j in range(s)}
                if cfg.pe == "bit_serial":
                    beat |= {"plane": sum(steps[t].get(f"i_w_{lane * s + j}", 0) << j
                                          for j in range(s)),
                             "shift": steps[t].get("i_shift", 0),
                             "neg": steps[t].get("i_neg", 0)}
                else:
                    beat |= {f"code{j}": steps[t].get(f"i_w_{lane * s + j}", 0)
                             for j in range(s)}
                    beat |= {k: x for k, x in steps[t].items() if k.startswith("table")}
                dots.append(_pe_golden(pe_proof, [beat], 0))
            run = np.array(dots) + (0 if run is None else run)
            if v("i_glast"):
                acc = {f"o_acc_{i}": _signed(int(x), cfg.acc_bits) for i, x in enumerate(run)}
                want.append((v("i_side"), acc))
                run = None
    return want, got


def _groups(proof: Proof, wrapped: Wrapped, steps: list, outs: list) -> list[str]:
    want, got = _group_golden(proof, wrapped, steps, outs)
    bad = []
    for i, (side, fields) in enumerate(got):
        if i >= len(want):
            bad.append(f"output beat {i} (side {side}) has no input group: {fields}")
        elif (side, fields) != want[i]:
            bad.append(f"output beat {i}: side {side} {fields} != golden group {i}: "
                       f"side {want[i][0]} {want[i][1]}")
    for t in range(1, len(outs)):
        if outs[t - 1]["o_valid"] and not steps[t - 1].get("o_ready", 0):
            prev = {k: v for k, v in outs[t - 1].items() if k.startswith("o_")}
            if {k: outs[t][k] for k in prev} != prev:
                bad.append(f"cycle {t}: the refused output beat changed: {prev} -> "
                           f"{ {k: outs[t][k] for k in prev} }")
        if not outs[t - 1]["i_ready"]:
            # a refused input: the block stalls, its state (the beats in flight) holds
            moved = sorted(k[4:] for k in outs[t] if k.startswith("reg.")
                           and outs[t][k] != outs[t - 1][k])
            if moved:
                bad.append(f"cycle {t}: the block's registers {', '.join(moved)} changed while "
                           "it stalled (input refused, output held): a beat in flight is lost "
                           "or made up")
    return bad


def _writeback(proof: Proof, wrapped: Wrapped, steps: list, outs: list) -> list[str]:
    cfg = wrapped.cfg
    p, s, act = cfg.lanes, cfg.simd, cfg.act_bits
    fused = bool(cfg.pool_words) and bool(steps and steps[0].get("fuse", 0) & 1)
    want, got = [], []
    buffer: dict[int, list[int]] = {}         # the fused pool's running maxima, golden
    for t, o in enumerate(outs):
        if o["wr_en"]:
            got.append((t, o["wr_addr"], o["wr_en"], o["wr_data"]))
        if not (steps[t].get("i_valid", 0) and o["i_ready"]):
            continue
        y = [int(steps[t].get(f"i_y_{j}", 0)) & ((1 << act) - 1) for j in range(p)]
        base = steps[t].get("i_side_out", 0) + steps[t].get("i_side_wct", 0)
        if p >= s:
            words = [(t + k, base + k, steps[t].get("i_side_wct", 0) + k, (1 << s) - 1,
                      [y[k * s + j] for j in range(s)]) for k in range(p // s)
                     if steps[t].get("i_side_wct", 0) + k < steps[t].get("out_ct", 0)]
        else:
            k = steps[t].get("i_side_wslot", 0)
            words = [(t, base, steps[t].get("i_side_wct", 0), ((1 << p) - 1) << (k * p),
                      [y[j % p] for j in range(s)])]
        for when, addr, idx, en, elems in words:
            if fused:   # max pool (golden: hwq.golden.maxpool2d's maximum) over the window
                old = buffer.setdefault(idx, [0] * s)
                first = steps[t].get("i_side_tfirst", 0) & 1
                for j in range(s):
                    if en >> j & 1:
                        v = _signed(elems[j], act)
                        old[j] = v if first else max(_signed(old[j], act), v)
                        old[j] &= (1 << act) - 1
                if not steps[t].get("i_side_tlast", 0) & 1:
                    continue
                when, elems = when + 1, list(old)
            want.append((when, addr, en, sum(e << (j * act) for j, e in enumerate(elems))))
    bad = []
    for i, g in enumerate(got):
        if i >= len(want):
            bad.append(f"write {g} has no input group")
            continue
        t, addr, en, word = want[i]
        mask = sum(((1 << act) - 1) << (j * act) for j in range(s) if en >> j & 1)
        if (g[0], g[1], g[2], g[3] & mask) != (t, addr, en, word & mask):
            bad.append(f"write {i}: cycle {g[0]} addr {g[1]} en {g[2]:b} data {g[3]:#x} != "
                       f"golden cycle {t} addr {addr} en {en:b} data {word:#x}")
    return bad


def _axil(proof: Proof, wrapped: Wrapped, steps: list, outs: list) -> list[str]:
    """Against the register map: responses one per request (SLVERR for a word with no
    register, OKAY otherwise), reads of the written value."""
    from hwq.layout.regmap import REGISTERS
    from hwq.rtl.axil import register_width

    regs = {r.offset >> 2: r for r in REGISTERS}
    state = {r.offset >> 2: 0 for r in REGISTERS if r.access == "rw"}
    history = []                     # the rw registers after each cycle's write
    bad, writes, pending = [], [], []
    for t, o in enumerate(outs):
        st = steps[t]
        if o["bvalid"] and not writes:
            bad.append(f"cycle {t}: write response offered without a write request")
        elif o["bvalid"] and o["bresp"] != _resp(writes[0], regs):
            bad.append(f"cycle {t}: write of {writes[0] * 4:#x} answered {o['bresp']:#04b}, "
                       f"the register map says {_resp(writes[0], regs):#04b}")
        if o["bvalid"] and st.get("bready", 0) and writes:
            writes.pop(0)
        if o["rvalid"] and not (t and outs[t - 1]["rvalid"]):
            if not pending:
                bad.append(f"cycle {t}: read response without a read request")
            else:
                # sampled the cycle before the response: writes taken up to two cycles
                # before it have taken effect
                word = pending.pop(0)
                r = regs.get(word)
                if r is None or r.access == "wo":
                    want = 0
                elif r.access == "rw":
                    want = history[t - 2][word] if t >= 2 else 0
                else:
                    want = steps[t - 1].get(f"{r.name.lower()}_r", 0)
                if o["rdata"] != want:
                    bad.append(f"cycle {t}: read of {word * 4:#x} gave {o['rdata']:#x}, "
                               f"the register map says {want:#x}")
                if o["rresp"] != _resp(word, regs):
                    bad.append(f"cycle {t}: read of {word * 4:#x} answered "
                               f"{o['rresp']:#04b}, the register map says "
                               f"{_resp(word, regs):#04b}")
        if st.get("awvalid", 0) and o["awready"] and st.get("wvalid", 0):
            word = st.get("awaddr", 0) >> 2
            writes.append(word)
            if word in state:
                mask = sum(0xFF << (8 * b) for b in range(4) if st.get("wstrb", 0) >> b & 1)
                wd = register_width(regs[word])
                state[word] = ((st.get("wdata", 0) & mask) | (state[word] & ~mask)) \
                    & ((1 << wd) - 1)
        history.append(dict(state))
        if st.get("arvalid", 0) and o["arready"]:
            pending.append(st.get("araddr", 0) >> 2)
    return bad


def _resp(word: int, regs: dict) -> int:
    """The AXI4-Lite response to an access of ``word``: OKAY (0) for a register of the map,
    SLVERR (0b10) otherwise."""
    return 0 if word in regs else 0b10
