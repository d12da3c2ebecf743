"""The proof harnesses: a wrapped block (:mod:`hwq.formal.blocks`), free inputs, and the
properties, with expected values from :mod:`hwq.formal.spec` (never from the RTL).

* ``pe``: every cycle (enable held), the PE's ``dot + carry`` equals the golden dot product
  of the codes and activations it took :data:`~hwq.rtl.pe.DOT_STAGES` cycles earlier.
* ``requant``: for every accumulator, bias, ``M``, ``S`` and clamp bounds (reduced widths:
  ``|bias|`` and ``M`` assumed small), the output ``REQUANT_STAGES`` cycles later equals the
  golden requant.
* stream blocks (``mac_array``, ``requant``/stream, ``maxpool``): under any valid/ready
  pattern, the output beats are the input groups in order, none lost or duplicated (each
  group's ``side`` is its number, counted mod 256), a tracked group (any one) has the golden
  value, a refused output holds its payload, and the latency is the cycle model's; the
  pipelines (:data:`SPLIT`) in two halves, see :func:`_stream`.
* ``writeback``: each taken group is written as the golden words, one per cycle. Fused
  max pool (the ``fused`` variants): the proof keeps its own copy of the pool buffer, in
  which each taken word's elements become the word (the window's first conv position) or
  their maximum with the copy (later positions); the buffer equals the copy in every cycle,
  and a window's last position writes the copy's new word one cycle later, at the pooled
  address; with ``fuse`` low the block writes as without the buffer.
* ``axil``: AXI4-Lite handshake rules, reads and writes of the register map, SLVERR
  for a word with no register, OKAY for one with.

Every proof is a k-induction (SBY ``prove``); the invariants it needs are assertions here,
on the harness's own state and the block's registers (:attr:`Wrapped.regs`), never in the
RTL.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cat, Const, Cover, Mux, Signal, Value, signed

from hwq.formal import spec
from hwq.formal.bench import Bench
from hwq.formal.blocks import Proof, Wrapped, wrap

__all__ = ["harness", "latency"]


def latency(kind: str) -> int:
    """Cycles from an input beat (the last of its group) to its output beat: the constants
    :data:`hwq.golden.cycles.OVERHEADS` is built from."""
    from hwq.rtl.pe import DOT_STAGES
    from hwq.rtl.requant import REQUANT_STAGES

    return {"pe": DOT_STAGES, "mac_array": DOT_STAGES + 1, "requant": REQUANT_STAGES,
            "maxpool": 1}[kind]


def harness(proof: Proof) -> tuple[Bench, Wrapped]:
    """The proof harness of ``proof``: its bench (``bench.m`` is the design to prove)."""
    wr = wrap(proof)
    b = Bench()
    b.m.submodules.block = wr.m
    for name, sig in wr.inputs.items():
        free = b.const(name, sig.shape()) if name in wr.constants else b.seq(name, sig.shape())
        b.m.d.comb += sig.eq(free)
    {"pe": _pe, "mac_array": _stream, "requant": _requant, "maxpool": _stream,
     "writeback": _writeback, "axil": _axil}[proof.kind](b, wr, proof)
    return b, wr


def pe_golden_expr(proof: Proof, inp: dict, second: bool = False) -> Value:
    """The golden dot product of one PE beat (inputs by their wrapper names)."""
    w = proof.widths
    s = w["simd"]
    pe_type, fmt = proof.variant.split("/")
    acts = [inp[f"a{j}"] for j in range(s)]
    if pe_type == "bit_serial":
        plane = [inp["plane"][j] for j in range(s)]
        return spec.plane_coefficient(inp["shift"], inp["neg"]) * spec.dot(plane, acts)
    prefix = "code2_" if second else "code"
    codes = [inp[f"{prefix}{j}"] for j in range(s)]
    if fmt == "pot":         # the shift-add form of the golden dot product
        return spec.sum_of([spec.pot_term(c, x, w["w"]) for c, x in zip(codes, acts,
                                                                         strict=True)])
    if fmt == "int":
        vals = [spec.int_value(c, w["w"]) for c in codes]
    else:
        table = [inp[f"table{i}"] for i in range(1 << w["w"])]
        vals = [spec.codebook_value(table, c) for c in codes]
    return spec.dot(vals, acts)


def _pe(b: Bench, wr: Wrapped, proof: Proof) -> None:
    m, inp, out = b.m, b.inputs, wr.outputs
    n = latency("pe")
    filled = b.delay(Const(1), n, "filled")
    checks = [("out", pe_golden_expr(proof, inp))]
    if "out2" in out:
        checks.append(("out2", pe_golden_expr(proof, inp, second=True)))
    if "table0" in inp:
        # hwq.golden's CODEBOOK tables hold an exact zero
        m.d.comb += Assume(Cat(*[inp[f"table{i}"] == 0
                                 for i in range(1 << proof.widths["w"])]).any())
    for name, want in checks:
        want_d = b.delay(want, n, f"want_{name}")
        with m.If(filled):
            m.d.comb += Assert(out[name] == want_d)
            m.d.comb += [Cover(out[name] < 0), Cover(out[name] > 0)]
    if proof.variant.startswith("bit_serial"):
        # the top plane of an 8-bit weight, a full plane
        top = b.delay((inp["shift"] == 7) & inp["neg"] & inp["plane"].all(), n, "top")
        m.d.comb += Cover(filled & top & (out["out"] != 0))


def _requant_want(wr: Wrapped, inp: dict, lane: int) -> Value:
    return spec.requant(inp[f"i_acc_{lane}"], inp[f"i_bias_{lane}"], inp[f"i_m_{lane}"],
                        inp[f"i_s_{lane}"], inp["lo"], inp["hi"])


def _requant_assumptions(b: Bench, wr: Wrapped, proof: Proof) -> None:
    """Reduced widths: ``|bias| < 2**bias``, ``1 <= M < 2**m``, ``S`` in 1..62, lo <= hi."""
    w, inp, m = proof.widths, b.inputs, b.m
    for lane in range(wr.cfg.lanes):
        bias, mm, s = inp[f"i_bias_{lane}"], inp[f"i_m_{lane}"], inp[f"i_s_{lane}"]
        m.d.comb += [Assume((bias >= -(1 << w["bias"])) & (bias < (1 << w["bias"]))),
                     Assume((mm >= 1) & (mm < (1 << w["m"]))), Assume((s >= 1) & (s <= 62))]
    m.d.comb += Assume(inp["lo"] <= inp["hi"])


def _requant(b: Bench, wr: Wrapped, proof: Proof) -> None:
    if proof.variant == "stream":
        _requant_assumptions(b, wr, proof)
        _stream(b, wr, proof)
        return
    m, inp, out = b.m, b.inputs, wr.outputs
    _requant_assumptions(b, wr, proof)
    m.d.comb += Assume(inp["o_ready"])
    n = latency("requant")
    valid_d = b.delay(inp["i_valid"], n, "valid")
    m.d.comb += Assert(out["o_valid"] == valid_d)
    for lane in range(wr.cfg.lanes):
        want = _requant_want(wr, inp, lane)
        raw = (inp[f"i_acc_{lane}"] + inp[f"i_bias_{lane}"]) * inp[f"i_m_{lane}"]
        want_d = b.delay(want, n, f"want{lane}")
        sat_d = b.delay(Cat(want == inp["hi"], want == inp["lo"], raw < 0,
                            inp["lo"] < inp["hi"]), n, f"cls{lane}")
        y = out[f"o_y_{lane}"]
        with m.If(valid_d):
            m.d.comb += [Assert(y == want_d), Cover(y < 0), Cover(y > 0),
                         Cover(sat_d[0] & sat_d[3] & (y > 0)),
                         Cover(sat_d[1] & sat_d[3] & sat_d[2] & (y < 0))]


#: Stream blocks proven in two halves (see :func:`_stream`): pipelines whose every register
#: is enabled by the one ``advance`` (= ``i.ready``) signal.
SPLIT = ("mac_array", "requant")


def _group_model(b: Bench, wr: Wrapped, proof: Proof,
                 take: Value) -> tuple[Value, dict, list]:
    """The golden value of the group that an input beat ends: ``(ends a group, {output
    field: expected value}, [(model register, block register, cycles)])``, with the model's
    running state updated on ``take``; the last list pairs each running state of the model
    with the block's register that holds the same value ``cycles`` cycles later (an
    invariant of the proof by induction)."""
    m, inp, cfg = b.m, b.inputs, wr.cfg
    if proof.kind == "requant":
        return Const(1), {f"o_y_{lane}": _requant_want(wr, inp, lane)
                          for lane in range(cfg.lanes)}, []
    if proof.kind == "maxpool":
        out, runs = {}, []
        for j in range(cfg.simd):
            a = inp[f"i_a_{j}"]
            run = Signal(signed(cfg.act_bits), name=f"model_max{j}")
            best = Mux(inp["i_first"] | (a > run), a, run)
            with m.If(take):
                m.d.sync += run.eq(best)
            out[f"o_y_{j}"] = best
            runs.append(run)
        return inp["i_last"], out, [(Cat(*runs), wr.regs["run"], 0)]
    # mac_array: per lane, the running golden dot product of the group (acc_bits, wrapping)
    from hwq.rtl.pe import DOT_STAGES

    p, s = cfg.lanes, cfg.simd
    pe_w = {"simd": s, "act": cfg.act_bits, "w": cfg.weight_bits, "table": cfg.table_bits}
    out, pairs = {}, []
    for lane in range(p):
        if cfg.pe == "bit_serial":
            beat = {f"a{j}": inp[f"i_a_{j}"] for j in range(s)}
            beat |= {"plane": Cat(*[inp[f"i_w_{lane * s + j}"] for j in range(s)]),
                     "shift": inp["i_shift"], "neg": inp["i_neg"]}
            variant = "bit_serial/int"
        else:
            beat = {f"a{j}": inp[f"i_a_{j}"] for j in range(s)}
            beat |= {f"code{j}": inp[f"i_w_{lane * s + j}"] for j in range(s)}
            beat |= {k: v for k, v in inp.items() if k.startswith("table")}
            variant = proof.variant
        dot = pe_golden_expr(Proof("pe", variant, pe_w, "bmc", 0), beat)
        acc = Signal(signed(cfg.acc_bits), name=f"model_acc{lane}")
        total = (acc + dot)[:cfg.acc_bits].as_signed()
        with m.If(take):
            m.d.sync += acc.eq(Mux(inp["i_glast"], 0, total))
        out[f"o_acc_{lane}"] = total
        # a beat reaches the block's accumulator DOT_STAGES cycles after the model's
        pairs.append((acc, wr.regs[f"acc{lane}"], DOT_STAGES))
    return inp["i_glast"], out, pairs


def _stream(b: Bench, wr: Wrapped, proof: Proof) -> None:
    """The stream contract, proven for every reachable state (k-induction).

    ``maxpool`` (one register stage) directly, under any valid/ready pattern. The
    pipelines of :data:`SPLIT` in two halves chosen by a free constant ``flow``, whose
    union is the contract: with ``flow = 0`` (any valid/ready pattern) a cycle whose input
    is refused (``~i.ready``: the output is refused) changes no register of the block, and
    ``i.ready == ~o.valid | o.ready``; with ``flow = 1`` (the output never refused: every
    cycle advances the pipeline) no beat is lost, duplicated or reordered, each group has
    the golden value and the latency is the cycle model's. A run with stalls is a run
    without them with frozen cycles inserted, so the two together give the contract under
    every pattern, for all time; each half alone is inductive at a depth of about the
    pipeline's length (a stall of any length leaves nothing to remember).
    """
    m, inp, out = b.m, b.inputs, wr.outputs
    side_bits = len(inp["i_side"])
    take = inp["i_valid"] & out["i_ready"]
    give = out["o_valid"] & inp["o_ready"]
    n = latency(proof.kind)
    n_in = Signal(8, name="n_in")        # groups taken (mod 256)
    n_out = Signal(8, name="n_out")      # output beats given (mod 256)
    inflight = Signal(8, name="inflight")
    m.d.comb += inflight.eq(n_in - n_out)
    if proof.kind == "mac_array" and wr.cfg.pe == "multiply":
        # the layer's table and format are set a cycle before its first beat
        m.d.comb += Assume(b.delay(Const(1), 1, "started") | ~inp["i_valid"])
        m.d.comb += Assume(inp["fmt"] == int(proof.variant.endswith("codebook")))
    if "shift" in proof.widths:         # bit-serial planes up to this shift
        m.d.comb += Assume(inp["i_shift"] <= proof.widths["shift"])
    ends, want, pairs = _group_model(b, wr, proof, take)
    m.d.comb += Assume(inp["i_side"] == n_in[:side_bits])     # each group tagged by its number
    with m.If(take & ends):
        m.d.sync += n_in.eq(n_in + 1)
    with m.If(give):
        m.d.sync += n_out.eq(n_out + 1)
    # the input is refused only while the output is
    m.d.comb += Assert(out["i_ready"] == (~out["o_valid"] | inp["o_ready"]))
    # a refused output holds
    held = b.delay(out["o_valid"] & ~inp["o_ready"], 1, "refused")
    payload = Cat(*[out[name] for name in want], out["o_side"])
    was = b.delay(payload, 1, "payload")
    with m.If(held):
        m.d.comb += [Assert(out["o_valid"]), Assert(payload == was)]
    if proof.kind in SPLIT:
        flow = b.const("flow", 1)
        m.d.comb += Assume(~flow | ~out["o_valid"] | inp["o_ready"])
        regs = Cat(*wr.regs.values())
        stalled = b.delay(~out["i_ready"], 1, "stalled")
        regs_was = b.delay(regs, 1, "regs_was")
        with m.If(~flow & stalled):
            m.d.comb += Assert(regs == regs_was)
        check = flow
    else:
        check = Const(1)
    ended = [b.delay(take & ends, i, f"ended{i}") for i in range(1, n + 1)]
    with m.If(check):
        # order, no loss, no duplicate, no beat out of nothing: the groups in flight are
        # those taken and not given (mod 256)
        with m.If(out["o_valid"]):
            m.d.comb += [Assert(out["o_side"] == n_out[:side_bits]), Assert(inflight != 0)]
        if proof.kind in SPLIT:
            # latency: a group's beat is out exactly L cycles after its last input beat
            m.d.comb += [Assert(out["o_valid"] == ended[-1]),
                         Assert(inflight == sum(ended))]
        else:
            m.d.comb += Assert(inflight == out["o_valid"])
            # latency: with the output never refused, L cycles after the last input beat
            ready_run = Signal(range(n + 1), name="ready_run")
            m.d.sync += ready_run.eq(Mux(inp["o_ready"], Mux(ready_run == n, n,
                                                             ready_run + 1), 0))
            with m.If(ready_run == n):
                m.d.comb += Assert(out["o_valid"] == ended[-1])
        # the model's running state is the block's, `cycles` later
        for model, reg, cycles in pairs:
            model_d = b.delay(model, cycles, f"{model.name}_was") if cycles else model
            m.d.comb += Assert(reg == model_d)
    # one tracked group (any): its output has the golden value
    k = Signal(8, name="tracked_k")
    m.d.comb += k.eq(b.const("tracked", 8))
    tracked = {name: Signal(v.shape(), name=f"tracked_{name}") for name, v in want.items()}
    with m.If(take & ends & (n_in == k)):
        m.d.sync += [tracked[name].eq(v) for name, v in want.items()]
    with m.If(check & out["o_valid"] & (n_out == k)):
        m.d.comb += [Assert(out[name] == tracked[name]) for name in want]
    # covers: values (where they are checked), several-cycle stalls, back-to-back beats
    first = next(iter(want))
    stall = b.delay(held, 2, "stall") & b.delay(held, 1, "stall1") & held
    m.d.comb += [Cover(check & give & (out[first] < 0)), Cover(check & give & (out[first] > 0)),
                 Cover(stall), Cover(check & give & b.delay(give, 1, "give"))]
    if proof.kind == "mac_array":
        m.d.comb += Cover(check & take & ends & ~b.delay(take & ends, 1, "prev_end")
                          & b.delay(take, 1, "prev_take"))       # a group of several beats
    if proof.kind == "requant":
        m.d.comb += Cover(check & give & (out[first] == inp["hi"]) & (inp["lo"] < inp["hi"]))


def _writeback(b: Bench, wr: Wrapped, proof: Proof) -> None:
    if "pool" in proof.widths:
        _writeback_fused(b, wr, proof)
        return
    m, inp, out, cfg = b.m, b.inputs, wr.outputs, wr.cfg
    p, s = cfg.lanes, cfg.simd
    take = inp["i_valid"] & out["i_ready"]
    act = cfg.act_bits
    if p >= s:
        beats = p // s
        # the group taken k cycles ago writes word k (k < beats) and nothing else writes
        words = []
        for k in range(beats):
            took = b.delay(take, k, f"took{k}") if k else take
            y = [b.delay(inp[f"i_y_{k * s + j}"], k, f"y{k}_{j}") if k else inp[f"i_y_{j}"]
                 for j in range(s)]
            base = [b.delay(inp[f"i_side_{f}"], k, f"{f}{k}") if k else inp[f"i_side_{f}"]
                    for f in ("out", "wct", "llast")]
            words.append((took, y, base))
        busy = Cat(*[w[0] for w in words[1:]]).any() if beats > 1 else Const(0)
        m.d.comb += Assert(out["i_ready"] == ~busy)
        for k, (took, y, (o, wct, llast)) in enumerate(words):
            ct = wct + k
            with m.If(took):
                m.d.comb += [Assert(out["wr_addr"] == (o + ct)[:len(out["wr_addr"])]),
                             Assert(out["wr_en"] == Mux(ct < inp["out_ct"], (1 << s) - 1, 0)),
                             Assert(out["done"] == (llast & (k == beats - 1)))]
                with m.If(ct < inp["out_ct"]):
                    m.d.comb += Assert(out["wr_data"] == Cat(*[v.as_unsigned() for v in y]))
        with m.If(~take & ~busy):
            m.d.comb += [Assert(out["wr_en"] == 0), Assert(~out["done"])]
        m.d.comb += [Cover(take & b.delay(take, beats, "again")),
                     Cover((out["wr_en"] != 0) & (out["wr_data"] != 0) & out["done"])]
    else:
        r = s // p
        m.d.comb += Assert(out["i_ready"])
        slot = inp["i_side_wslot"]
        with m.If(take):
            m.d.comb += [Assert(out["wr_addr"] == (inp["i_side_out"] + inp["i_side_wct"])
                                [:len(out["wr_addr"])]),
                         Assert(out["done"] == inp["i_side_llast"])]
            for k in range(r):
                en = out["wr_en"][k * p:(k + 1) * p]
                m.d.comb += Assert(en == Mux(slot == k, (1 << p) - 1, 0))
                with m.If(slot == k):
                    m.d.comb += Assert(out["wr_data"][k * p * act:(k + 1) * p * act] ==
                                       Cat(*[inp[f"i_y_{j}"].as_unsigned() for j in range(p)]))
        with m.Else():
            m.d.comb += [Assert(out["wr_en"] == 0), Assert(~out["done"])]
        m.d.comb += [Cover(take & (slot == r - 1) & (out["wr_data"] != 0)),
                     Cover(take & b.delay(take, 1, "again"))]


def _writeback_fused(b: Bench, wr: Wrapped, proof: Proof) -> None:
    """The write-back of a core with a pool buffer (see the module docstring)."""
    from amaranth.hdl import Array

    m, inp, out, cfg = b.m, b.inputs, wr.outputs, wr.cfg
    p, s, act, pool = cfg.lanes, cfg.simd, cfg.act_bits, proof.widths["pool"]
    fuse = inp["fuse"]
    take = inp["i_valid"] & out["i_ready"]
    # the word this cycle writes without fusing: e_valid, its buffer index (channel tile),
    # address, element enables, elements, done, and its group's window flags
    e_valid, e_done, e_first, e_last = (Signal(name=f"e_{n}") for n in
                                        ("valid", "done", "first", "last"))
    e_idx = Signal(len(inp["out_ct"]) + 1, name="e_idx")
    e_addr = Signal(len(out["wr_addr"]) + 1, name="e_addr")
    e_en = Signal(s, name="e_en")
    e_y = [Signal(signed(act), name=f"e_y{j}") for j in range(s)]
    side = ("out", "wct", "llast", "tfirst", "tlast")
    if p >= s:
        beats = p // s
        busy = Cat(*[b.delay(take, k, f"took{k}") for k in range(1, beats)]).any() \
            if beats > 1 else Const(0)
        m.d.comb += Assert(out["i_ready"] == ~busy)
        cond = m.If
        for k in range(beats):
            took = b.delay(take, k, f"took{k}") if k else take
            y = [b.delay(inp[f"i_y_{k * s + j}"], k, f"y{k}_{j}") if k else inp[f"i_y_{j}"]
                 for j in range(s)]
            o, wct, llast, tfirst, tlast = (
                b.delay(inp[f"i_side_{f}"], k, f"{f}{k}") if k else inp[f"i_side_{f}"]
                for f in side)
            with cond(took):
                ct = wct + k
                m.d.comb += [e_valid.eq(1), e_idx.eq(ct), e_addr.eq(o + ct),
                             e_en.eq(Mux(ct < inp["out_ct"], (1 << s) - 1, 0)),
                             e_done.eq(llast & (k == beats - 1)), e_first.eq(tfirst),
                             e_last.eq(tlast)] + [e_y[j].eq(y[j]) for j in range(s)]
            cond = m.Elif
        # the compiler sizes the buffer to the layer's channel tiles
        m.d.comb += Assume(~fuse | (inp["out_ct"] <= pool))
    else:
        r = s // p
        m.d.comb += Assert(out["i_ready"])
        slot = inp["i_side_wslot"]
        with m.If(take):
            m.d.comb += [e_valid.eq(1), e_idx.eq(inp["i_side_wct"]),
                         e_addr.eq(inp["i_side_out"] + inp["i_side_wct"]),
                         e_done.eq(inp["i_side_llast"]), e_first.eq(inp["i_side_tfirst"]),
                         e_last.eq(inp["i_side_tlast"])]
            m.d.comb += [e_y[j].eq(inp[f"i_y_{j % p}"]) for j in range(s)]
            m.d.comb += [e_en[k * p:(k + 1) * p].eq(Mux(slot == k, (1 << p) - 1, 0))
                         for k in range(r)]
        m.d.comb += Assume(~fuse | ~inp["i_valid"] | (inp["i_side_wct"] < pool))

    def element(word: Value, j: int) -> Value:
        return word[j * act:(j + 1) * act].as_signed()

    # the proof's copy of the buffer, and the words a fused write makes of it
    copy = [[Signal(signed(act), name=f"copy{i}_{j}") for j in range(s)] for i in range(pool)]
    new = []
    for j in range(s):
        old = Array([copy[i][j] for i in range(pool)])[e_idx]
        new.append(Mux(e_first, e_y[j], Mux(old > e_y[j], old, e_y[j])))
    for i in range(pool):
        for j in range(s):
            m.d.comb += Assert(element(out[f"pool_buf{i}"], j) == copy[i][j])
            with m.If(fuse & e_valid & (e_idx == i) & e_en[j]):
                m.d.sync += copy[i][j].eq(new[j])
    wr_bits = len(out["wr_addr"])
    with m.If(~fuse):
        with m.If(e_valid):
            m.d.comb += [Assert(out["wr_addr"] == e_addr[:wr_bits]),
                         Assert(out["wr_en"] == e_en), Assert(out["done"] == e_done)]
            for j in range(s):
                with m.If(e_en[j]):
                    m.d.comb += Assert(element(out["wr_data"], j) == e_y[j])
        with m.Else():
            m.d.comb += [Assert(out["wr_en"] == 0), Assert(~out["done"])]
    with m.Else():
        # a cycle later: the window's last position writes the new word, nothing else does
        d_valid = b.delay(e_valid, 1, "d_valid")
        d_addr = b.delay(e_addr[:wr_bits], 1, "d_addr")
        d_en = b.delay(Mux(e_last, e_en, 0), 1, "d_en")
        d_done = b.delay(e_done, 1, "d_done")
        d_new = [b.delay(new[j], 1, f"d_new{j}") for j in range(s)]
        with m.If(d_valid):
            m.d.comb += [Assert(out["wr_addr"] == d_addr), Assert(out["wr_en"] == d_en),
                         Assert(out["done"] == d_done)]
            for j in range(s):
                with m.If(d_en[j]):
                    m.d.comb += Assert(element(out["wr_data"], j) == d_new[j])
        with m.Else():
            m.d.comb += [Assert(out["wr_en"] == 0), Assert(~out["done"])]
        # a window of several positions whose maximum is not its first
        m.d.comb += Cover(d_valid & (d_en != 0) & ~b.delay(e_first, 1, "d_first")
                          & (element(out["wr_data"], 0) != b.delay(e_y[0], 1, "d_y0")))


def _axil(b: Bench, wr: Wrapped, proof: Proof) -> None:
    m, inp, out, dut = b.m, b.inputs, wr.outputs, wr.dut
    aw = inp["awvalid"] & out["awready"]
    wd = inp["wvalid"] & out["wready"]
    bh = out["bvalid"] & inp["bready"]
    ar = inp["arvalid"] & out["arready"]
    rh = out["rvalid"] & inp["rready"]
    # the block takes address and data together: one write request
    m.d.comb += [Assert(out["awready"] == out["wready"]), Assert(~aw | wd)]
    # one response per request, responses only after requests (at most one outstanding)
    w_out = Signal(2, name="writes_open")
    r_out = Signal(2, name="reads_open")
    m.d.sync += [w_out.eq(w_out + aw - bh), r_out.eq(r_out + ar - rh)]
    m.d.comb += [Assert(w_out <= 1), Assert(r_out <= 1),
                 Assert(~out["bvalid"] | (w_out == 1)), Assert(~out["rvalid"] | (r_out == 1)),
                 Assert(~aw | (w_out == 0)), Assert(~ar | (r_out == 0))]
    # and the responses' latency: a write is answered from the second cycle after its
    # handshake, a read from the third (these also make the proof inductive: an open
    # request is never invisible)
    aw1 = b.delay(aw, 1, "aw1")
    ar1, ar2 = b.delay(ar, 1, "ar1"), b.delay(ar, 2, "ar2")
    m.d.comb += [Assert(w_out == (out["bvalid"] | aw1)),
                 Assert(r_out == (out["rvalid"] | ar1 | ar2))]
    # the response: SLVERR for a word with no register of the map, OKAY otherwise
    w_bad = Signal(name="write_unmapped")
    with m.If(aw):
        m.d.sync += w_bad.eq(~_mapped(inp["awaddr"][2:]))
    with m.If(out["bvalid"]):
        m.d.comb += Assert(out["bresp"] == Mux(w_bad, SLVERR, OKAY))
    # a response holds until taken
    for v, r, pay in (("bvalid", "bready", "bresp"), ("rvalid", "rready", "rdata")):
        held = b.delay(out[v] & ~inp[r], 1, f"{v}_held")
        was = b.delay(out[pay], 1, f"{pay}_was")
        with m.If(held):
            m.d.comb += [Assert(out[v]), Assert(out[pay] == was)]
    # writes: a register's strobe fires the cycle after a write to its address, with the
    # AXI strobe semantics (bytes not enabled keep the old value); no other strobe fires
    word = inp["awaddr"][2:]
    mask = Cat(*[inp["wstrb"][i].replicate(8) for i in range(4)])
    for r in dut.registers:
        n = r.name.lower()
        if r.access not in ("rw", "wo"):
            continue
        hit = b.delay(aw & (word == r.offset >> 2), 1, f"hit_{n}")
        m.d.comb += Assert(out[f"{n}_we"] == hit)
        old = out[f"{n}_state"] if r.access == "rw" else Const(0, 32)
        new = b.delay((inp["wdata"] & mask) | (old & ~mask), 1, f"new_{n}")
        wd_ = len(out[f"{n}_w"])
        with m.If(hit):
            m.d.comb += Assert(out[f"{n}_w"] == new[:wd_])
    # reads: the value of the register (0 for unmapped or write-only) when sampled, the
    # cycle before the response
    raddr = Signal(len(inp["araddr"]) - 2, name="read_word")
    with m.If(ar):
        m.d.sync += raddr.eq(inp["araddr"][2:])
    value = Const(0, 32)
    for r in dut.registers:
        n = r.name.lower()
        src = out.get(f"{n}_state") if r.access == "rw" else inp.get(f"{n}_r")
        if src is not None:
            value = Mux(raddr == r.offset >> 2, src, value)
    rise = out["rvalid"] & ~b.delay(out["rvalid"], 1, "rvalid_was")
    sampled = b.delay(value, 1, "value")
    with m.If(rise):
        m.d.comb += Assert(out["rdata"] == sampled)
    with m.If(out["rvalid"]):
        m.d.comb += Assert(out["rresp"] == Mux(_mapped(raddr), OKAY, SLVERR))
    # covers: back-to-back writes (the next write taken the cycle after the response), a
    # written value read back, a held response, SLVERR for an unmapped read and write, OKAY
    # for a mapped write after an unmapped one
    m.d.comb += [Cover(aw & b.delay(bh, 1, "b1") & b.delay(aw, 3, "aw3")),
                 Cover(rise & (raddr == 0x20 >> 2) & (out["rdata"] != 0)),
                 Cover(out["bvalid"] & b.delay(out["bvalid"] & ~inp["bready"], 2, "bheld")),
                 Cover(rh & (out["rresp"] == SLVERR) & (raddr == 0x2c >> 2)),
                 Cover(rh & (out["rresp"] == SLVERR) & (raddr == 0xfc >> 2)),
                 Cover(bh & (out["bresp"] == SLVERR)),
                 Cover(bh & (out["bresp"] == OKAY) & b.delay(bh & (out["bresp"] == SLVERR),
                                                             3, "b_err"))]


#: AXI4-Lite response codes (the AMBA AXI specification's ``xRESP`` encoding).
OKAY, SLVERR = 0b00, 0b10


def _mapped(word: Value) -> Value:
    """1 when the word address ``word`` is a register of :data:`hwq.layout.regmap.REGISTERS`
    (the map itself, not the RTL's decode)."""
    from hwq.layout.regmap import REGISTERS

    return Cat(*[word == r.offset >> 2 for r in REGISTERS]).any()
