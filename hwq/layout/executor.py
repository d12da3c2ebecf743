"""A NumPy executor of a :class:`~hwq.layout.program.Program`: the layout's own proof.

:func:`run_images` is the core's sequencer in NumPy: it decodes the packed memory images
(descriptors, weight micro-ops, requant parameters) with the same word layouts the RTL
uses and runs them exactly as the core does: descriptor by descriptor until the one with
``last``, per output position, micro-op by micro-op into ``lanes`` accumulators, requant
at the end of each group, write-back into the activation memory (a fused max pool: the
maximum over the window's conv positions). It looks at nothing but
the memories, so the register-level model :class:`hwq.host.golden.GoldenDevice` runs it on
whatever the host loaded, and it reports each layer's cycles from the descriptor and its
micro-ops with the formulas of :mod:`hwq.golden.cycles` (what the core's counters show).

:func:`execute` runs a :class:`Program` on a batch of inputs with it. Its output must equal
``hwq.golden.run(network, x)``; it does not look at the network. Vectorized over the batch
and the output positions; the loop is over micro-ops.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from hwq.config import CoreConfig
from hwq.golden import cycles as cyc
from hwq.golden.formats import IntFormat, PotFormat
from hwq.golden.memory import store_cycles
from hwq.golden.requant import requantize
from hwq.hardware import FUSED_WRITE_STAGES, LOAD_CHECK_STAGES, LOAD_DESCRIPTOR_CYCLES
from hwq.layout.dwmode import SLOTS, window_macs, window_step
from hwq.layout.program import Program
from hwq.layout.words import FMT_CODEBOOK, KIND_POOL, CoreWords, core_words

__all__ = ["LayerRun", "UnterminatedProgram", "execute", "layer_cycles", "run_images"]


class UnterminatedProgram(ValueError):
    """The descriptor memory has no descriptor with ``last`` set: the core would never stop."""


@dataclass(frozen=True)
class LayerRun:
    """What one descriptor did: the facts the core's counters report.

    Attributes
    ----------
    index : int
        descriptor number (``LAYER_SEL`` value).
    kind : {"matmul", "pool", "load"}
    positions : int
        output positions (``out_h * out_w``); a matmul with a fused pool: the conv positions
        it computes (times the window's taps).
    steps : tuple of int
        micro-ops of each output-channel group, as stored (matmul; empty for a pool).
    cycles : int
        model cycles of the layer (:func:`layer_cycles`), without waiting for loads.
    wait, ld_words, ld_src, ld_act : bool, int, int, bool
        a core with external memory: whether the descriptor waits for the load in flight,
        and the load it starts (of activation words with ``ld_act``);
    st_words, st_dst : int
        the activation words it stores (:func:`hwq.golden.memory.schedule` times them all).
    """

    index: int
    kind: str
    positions: int
    steps: tuple[int, ...]
    cycles: int
    wait: bool = False
    ld_words: int = 0
    ld_src: int = 0
    ld_act: bool = False
    st_words: int = 0
    st_dst: int = 0

    def transfer(self) -> dict[str, int]:
        """The fields :func:`hwq.golden.memory.schedule` reads."""
        return {"cycles": self.cycles, "wait": int(self.wait), "ld_words": self.ld_words,
                "ld_src": self.ld_src, "ld_act": int(self.ld_act), "st_words": self.st_words,
                "st_dst": self.st_dst}


def execute(program: Program, x: object) -> np.ndarray:
    """Run ``program`` on integer inputs ``x``.

    Parameters
    ----------
    program : Program
    x : array_like of int
        inputs of shape ``(N, *program.input.shape)`` in the activation range.

    Returns
    -------
    numpy.ndarray
        int64 outputs ``(N, *program.output.shape)``.
    """
    cfg = program.config
    words = program.words
    packed = program.pack_input(x)
    n = packed.shape[0]
    mem = np.zeros((n, cfg.act_depth, cfg.simd), dtype=np.int64)
    t, out = program.input, program.output
    ext_act = None
    if cfg.external:        # external activation words: what the descriptors and tensors reach
        reach = max([_ext_reach(words, program.images["desc"]),
                     *(u.external + u.words for u in (t, out) if u.external is not None)])
        ext_act = np.zeros((n, reach, cfg.simd), dtype=np.int64)
    where, at = (mem, t.base) if t.external is None else (ext_act, t.external)
    where[:, at:at + t.words] = words.act.unpack(
        packed.reshape(-1, words.act.chunks))["a"].reshape(n, t.words, cfg.simd)
    run_images(cfg, program.images, mem, ext_act)
    where, at = (mem, out.base) if out.external is None else (ext_act, out.external)
    region = where[:, at:at + out.words]
    return program.unpack_output(words.act.pack(region.size // cfg.simd,
                                                a=region.reshape(-1, cfg.simd))
                                 .reshape(n, out.words, -1))


def run_images(config: CoreConfig, images: Mapping[str, np.ndarray],
               act: np.ndarray, ext_act: np.ndarray | None = None) -> list[LayerRun]:
    """Run the program held in memory images on activation memories, as the core does.

    Parameters
    ----------
    config : CoreConfig
    images : mapping of str to numpy.ndarray
        ``desc``, ``weight`` and ``param`` memory contents, uint32 ``(words, chunks)`` from
        address 0 (a Program's images, or a whole memory).
    act : numpy.ndarray
        int64 activation memories ``(N, depth, simd)`` (one per sample, element ``s`` of a
        word is channel ``ct*simd + s``); updated in place.
    ext_act : numpy.ndarray, optional
        a core with external memory: its activation words ``(N, words, simd)`` int64 (word
        ``i`` the external activation word ``i``), which stores write and activation loads
        read; updated in place. Default: zeros as large as the descriptors reach.

    Returns
    -------
    list of LayerRun
        one per descriptor run, descriptor 0 up to the first with ``last``.

    Raises
    ------
    UnterminatedProgram
        no descriptor in ``images["desc"]`` has ``last`` set.
    ValueError
        an image of the wrong word shape, ``act`` of the wrong shape, a descriptor whose
        micro-ops or parameters lie outside their image, or a layer that writes an activation
        word it reads.
    """
    words = core_words(config)
    if act.ndim != 3 or act.shape[2] != config.simd:
        raise ValueError(f"Activation memories must have shape (N, depth, {config.simd}), "
                         f"not {act.shape}")
    desc_img = images["desc"]
    loads = _Loads(config, words, images, act, ext_act) if config.external else None
    if loads is not None:
        images = {**images, "weight": loads.weight}
    runs = []
    for i in range(desc_img.shape[0]):
        d = {k: v[0] for k, v in words.desc.unpack(desc_img[i:i + 1]).items()}
        if loads is not None:
            loads.start(i, d)
        if loads is not None and d["nop"]:
            runs.append(LayerRun(index=i, kind="store" if d["st_len"] else "load",
                                 positions=0, steps=(), cycles=layer_cycles(config, d)))
        elif d["kind"] == KIND_POOL:
            if d["kernel_h"] < 1 or d["kernel_w"] < 1:
                raise ValueError(f"Descriptor {i}: a pool window of {d['kernel_h']}x"
                                 f"{d['kernel_w']} taps (at least 1x1)")
            _check_disjoint(i, *_pool_accesses(d))
            _pool(act, d, config.act_bits)
            positions = int(d["out_h"] * d["out_w"])
            runs.append(LayerRun(index=i, kind="pool", positions=positions, steps=(),
                                 cycles=layer_cycles(config, d)))
        elif d.get("dw", 0):
            progs, params = _dw_words(config, words, images, d, i)
            reads = _matmul_accesses(d, _join(progs), config)[0]
            groups = max(int(prog["glast"].sum()) for prog in progs)
            _check_disjoint(i, reads, (_matmul_walk(d)[3][:, None] + np.arange(groups)).ravel())
            _dw_matmul(act, d, progs, params, config)
            steps = tuple(len(prog["glast"]) for prog in progs)
            runs.append(LayerRun(index=i, kind="matmul", positions=int(d["out_h"] * d["out_w"]),
                                 steps=steps, cycles=layer_cycles(config, d, steps)))
        else:
            micro, params = _layer_words(config, words, images, d, i)
            _check_disjoint(i, *_matmul_accesses(d, micro, config))
            _matmul(act, d, micro, params, config)
            group_steps = _group_steps(micro["glast"])
            runs.append(LayerRun(index=i, kind="matmul",
                                 positions=int(d["out_h"] * d["out_w"]) * _fused_taps(d),
                                 steps=group_steps,
                                 cycles=layer_cycles(config, d, group_steps)))
        if loads is not None:
            loads.issue(i, d)
            runs[-1] = replace(runs[-1], wait=bool(d["wait"]), ld_words=int(d["ld_len"]),
                               ld_src=int(d["ld_src"]), ld_act=bool(d["ld_act"]),
                               st_words=int(d["st_len"]), st_dst=int(d["st_dst"]))
        if d["last"]:
            return runs
    raise UnterminatedProgram(
        f"No descriptor of the {desc_img.shape[0]} in the descriptor memory has 'last' set: "
        "the core would run forever")


class _Loads:
    """The weight buffer of a core with external memory, and its DMA's transfers.

    A load starts with its descriptor and may still run while the descriptors after it
    work: it is applied at once here, and a descriptor that reads words of a load in flight
    without waiting for it (``wait``) is refused, as is a load into the words its own
    descriptor reads (the core would read them while they change). Activation loads
    (``ld_act``) and stores run only in ``nop`` descriptors (the array is idle while the DMA
    uses an activation memory port); a store ends with its descriptor, and every descriptor
    that computes waits for an activation load in flight.
    """

    def __init__(self, config: CoreConfig, words: CoreWords, images: Mapping[str, np.ndarray],
                 act: np.ndarray, ext_act: np.ndarray | None) -> None:
        self.ext = images.get("ext", np.zeros((0, words.ext_chunks), np.uint32))
        chunks = words.weight.chunks
        given = images["weight"]
        if given.shape == (config.weight_depth, chunks):     # a whole memory: load into it
            self.weight = given
        else:
            self.weight = np.zeros((config.weight_depth, chunks), np.uint32)
            self.weight[:min(len(given), config.weight_depth)] = given[:config.weight_depth]
        self.act = act
        if ext_act is None:
            ext_act = np.zeros((act.shape[0], _ext_reach(words, images["desc"]), config.simd),
                               np.int64)
        self.ext_act = ext_act
        self.flight: tuple[int, int] | None = None          # weight words being loaded
        self.act_flight = False                              # activation words being loaded

    def start(self, i: int, d: dict) -> None:
        if d["wait"] or d["ld_len"] or d["st_len"]:
            self.flight = None
            self.act_flight = False
        computes = not d["nop"]
        if self.act_flight and computes:
            raise ValueError(f"Descriptor {i}: reads the activation memory while a load into "
                             "it is in flight (it must wait)")
        if (d["ld_act"] or d["st_len"]) and computes:
            raise ValueError(f"Descriptor {i}: activation loads and stores run only in "
                             "descriptors that compute nothing (nop)")
        if d["st_len"] and d["ld_len"]:
            raise ValueError(f"Descriptor {i}: stores and loads at once; give each its own "
                             "descriptor")
        if self.flight is not None and computes and d["kind"] != KIND_POOL:
            lo, hi = self.flight
            ranges = [("w_base", "w_last")] + ([("w_base2", "w_last2")] if d.get("dw") else [])
            for first, last in ranges:      # a depthwise descriptor: both programs
                if d[first] <= hi and lo <= d[last]:
                    raise ValueError(f"Descriptor {i}: reads weight words {d[first]}.."
                                     f"{d[last]} while a load into {lo}..{hi} is in flight "
                                     "(it must wait)")

    def _span(self, i: int, what: str, first: int, n: int, size: int, where: str) -> None:
        if first + n > size:
            raise ValueError(f"Descriptor {i}: {what} {first}..{first + n - 1} is outside "
                             f"{where} ({size} words)")

    def issue(self, i: int, d: dict) -> None:
        depth = self.act.shape[1]
        if d["st_len"]:
            n, src, dst = int(d["st_len"]), int(d["st_src"]), int(d["st_dst"])
            self._span(i, "a store of activation words", src, n, depth, "the activation memory")
            self._span(i, "a store to external activation words", dst, n,
                       self.ext_act.shape[1], "the external activation words")
            self.ext_act[:, dst:dst + n] = self.act[:, src:src + n]
        n, src, dst = int(d["ld_len"]), int(d["ld_src"]), int(d["ld_dst"])
        if not n:
            return
        if d["ld_act"]:
            self._span(i, "a load of external activation words", src, n,
                       self.ext_act.shape[1], "the external activation words")
            self._span(i, "a load into activation words", dst, n, depth,
                       "the activation memory")
            self.act[:, dst:dst + n] = self.ext_act[:, src:src + n]
            self.act_flight = True
            return
        if src + n > self.ext.shape[0] or dst + n > self.weight.shape[0]:
            raise ValueError(f"Descriptor {i}: a load of {n} words from external word {src} "
                             f"to weight word {dst} is outside the external image "
                             f"({self.ext.shape[0]} words) or the weight memory "
                             f"({self.weight.shape[0]} words)")
        if not d["nop"] and d["kind"] != KIND_POOL and \
                d["w_base"] < dst + n and dst <= d["w_last"]:
            raise ValueError(f"Descriptor {i}: loads weight words {dst}..{dst + n - 1}, which "
                             f"it reads itself ({d['w_base']}..{d['w_last']})")
        self.weight[dst:dst + n] = self.ext[src:src + n, :self.weight.shape[1]]
        self.flight = (dst, dst + n - 1)


def _ext_reach(words: CoreWords, desc_img: np.ndarray) -> int:
    """External activation words the descriptors' loads and stores reach."""
    d = words.desc.unpack(desc_img)
    return int(max([0, *(d["st_dst"] + d["st_len"]),
                    *((d["ld_src"] + d["ld_len"]) * (d["ld_act"] != 0))]))


def layer_cycles(config: CoreConfig, desc: Mapping[str, object],
                 group_steps: tuple[int, ...] | list[int] = ()) -> int:
    """Model cycles of one layer from its decoded descriptor and its micro-ops per group.

    Parameters
    ----------
    config : CoreConfig
    desc : mapping
        one decoded descriptor (field name -> value, see :func:`hwq.layout.words.core_words`).
    group_steps : sequence of int
        matmul: the micro-ops stored for each output-channel group, in order (the compiler's
        padding included); a depthwise descriptor (``dw``): the micro-ops of a row's first
        position and of the others; ignored for a pool.

    Returns
    -------
    int
        :func:`hwq.golden.cycles.matmul_cycles` or :func:`~hwq.golden.cycles.maxpool_cycles`
        of the layer; equal to the compiler's ``Program.layers[i]["cycles"]``.
    """
    positions = int(desc["out_h"]) * int(desc["out_w"])
    if int(desc["kind"]) != KIND_POOL:
        positions *= _fused_taps(desc)
    check = LOAD_CHECK_STAGES if config.external else 0
    if config.external and desc["nop"]:
        if desc["st_len"]:          # a store: its time at the smallest latency
            ab = core_words(config).ext_act_beats
            return LOAD_DESCRIPTOR_CYCLES + store_cycles(
                int(desc["st_dst"]) * ab, int(desc["st_len"]) * ab, burst=config.ext_burst,
                outstanding=config.ext_outstanding, latency=1)
        return LOAD_DESCRIPTOR_CYCLES
    if int(desc["kind"]) == KIND_POOL:
        # ceil(C / simd) words per position is the descriptor's in_ct
        return cyc.maxpool_cycles(channels=int(desc["in_ct"]) * config.simd,
                                  out_positions=positions, simd=config.simd,
                                  taps=int(desc["kernel_h"]) * int(desc["kernel_w"]),
                                  overheads=cyc.core_overheads(config.pack)) + check
    if desc.get("dw", 0):               # the depthwise mode: a row's first position, the others
        row, steady = group_steps
        return cyc.depthwise_cycles(out_h=int(desc["out_h"]), out_w=int(desc["out_w"]),
                                    row_steps=row, steps=steady,
                                    overheads=cyc.core_overheads(config.pack)) + check
    if desc.get("fuse", 0):             # a fused pool's registered write
        check += FUSED_WRITE_STAGES
    return cyc.matmul_cycles(positions=positions, steps=list(group_steps), lanes=config.lanes,
                             simd=config.simd, overheads=cyc.core_overheads(config.pack)) + check


def _group_steps(glast: np.ndarray) -> tuple[int, ...]:
    ends = np.flatnonzero(glast) + 1
    return tuple(int(v) for v in np.diff(np.concatenate([[0], ends])))


def _layer_words(config: CoreConfig, words: CoreWords, images: Mapping[str, np.ndarray],
                 d: dict, i: int) -> tuple[dict, dict]:
    """Decoded micro-ops and parameter words of matmul descriptor ``i``."""
    w_base, w_last, p_base = int(d["w_base"]), int(d["w_last"]), int(d["p_base"])
    weight, param = images["weight"], images["param"]
    if not w_base <= w_last < weight.shape[0]:
        raise ValueError(f"Descriptor {i}: micro-ops {w_base}..{w_last} are not within the "
                         f"{weight.shape[0]} words of the weight image")
    micro = words.weight.unpack(weight[w_base:w_last + 1])
    groups = int(micro["glast"].sum())
    if p_base + groups > param.shape[0]:
        raise ValueError(f"Descriptor {i}: parameters {p_base}..{p_base + groups - 1} are not "
                         f"within the {param.shape[0]} words of the parameter image")
    params = words.param.unpack(param[p_base:p_base + groups])
    return micro, params


def _positions(d: dict) -> tuple[np.ndarray, np.ndarray]:
    oh, ow = np.meshgrid(np.arange(int(d["out_h"])), np.arange(int(d["out_w"])), indexing="ij")
    return oh.ravel(), ow.ravel()


def _fused_taps(d: dict) -> int:
    """Conv positions per output position: the pool window's taps of a fused matmul, else 1."""
    return int(d["kernel_h"]) * int(d["kernel_w"]) if d.get("fuse", 0) else 1


def _matmul_walk(d: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The conv positions a matmul descriptor computes: input address of its tap (0, 0),
    top-left input row and column, and output address, each ``(taps * positions,)``, tap
    major. Without ``fuse`` one tap; with it, the pool window's taps of each pooled output
    position, all with the pooled output's address."""
    oh, ow = _positions(d)
    pos = d["pos0"] + oh * d["row_step"] + ow * d["col_step"]
    ih0, iw0 = oh * d["stride_h"] - d["pad_t"], ow * d["stride_w"] - d["pad_l"]
    out = d["out_base"] + (oh * d["out_w"] + ow) * d["out_ct"]
    if not d.get("fuse", 0):
        return pos, ih0, iw0, out
    u, v = np.meshgrid(np.arange(int(d["kernel_h"])), np.arange(int(d["kernel_w"])),
                       indexing="ij")
    u, v = u.ravel()[:, None], v.ravel()[:, None]
    taps = u.size
    return ((pos + u * d["dy_step"] + v * d["dx_step"]).ravel(),
            (ih0 + u * d["tap_sh"]).ravel(), (iw0 + v * d["tap_sw"]).ravel(),
            np.tile(out, taps))


def _check_disjoint(i: int, reads: np.ndarray, writes: np.ndarray) -> None:
    """A layer must not write an activation word it reads: the core's memories leave a read
    and a write of one word in the same cycle undefined (``no_rw_check``, see
    :mod:`hwq.rtl.core`), and the core reads and writes a layer's words interleaved."""
    both = np.intersect1d(reads, writes)
    if both.size:
        raise ValueError(f"Descriptor {i}: writes {both.size} activation words it also reads "
                         f"(first: {int(both[0])}); a layer's input and output must not "
                         "overlap in the activation memory")


def _pool_taps(d: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per window tap: the word address of channel tile 0 at each output position, and
    whether the tap is inside the input (a tap in the padding is not read)."""
    oh, ow = _positions(d)
    base = d["pos0"] + oh * d["row_step"] + ow * d["col_step"]
    ih0, iw0 = oh * d["stride_h"] - d["pad_t"], ow * d["stride_w"] - d["pad_l"]
    taps = []
    for u in range(int(d["kernel_h"])):
        for v in range(int(d["kernel_w"])):
            inb = (ih0 + u >= 0) & (ih0 + u < d["in_h"]) & (iw0 + v >= 0) & (iw0 + v < d["in_w"])
            taps.append((base + u * d["dy_step"] + v * d["dx_step"], inb))
    return taps


def _pool_accesses(d: dict) -> tuple[np.ndarray, np.ndarray]:
    """Activation words a pool descriptor reads and writes."""
    oh, ow = _positions(d)
    out = d["out_base"] + (oh * d["out_w"] + ow) * d["out_ct"]
    t = np.arange(int(d["in_ct"]))
    reads = [(addr[inb][:, None] + t).ravel() for addr, inb in _pool_taps(d)]
    return np.concatenate(reads), (out[:, None] + t).ravel()


def _matmul_accesses(d: dict, micro: dict, config: CoreConfig) -> tuple[np.ndarray, np.ndarray]:
    """Activation words a matmul descriptor reads (in-bounds taps only: a padding tap reads
    word 0 and discards it) and writes."""
    p, s = config.lanes, config.simd
    pos, ih0, iw0, out = _matmul_walk(d)
    out = np.unique(out)
    reads = []
    for k in range(micro["glast"].shape[0]):
        for off, u, v in _words_read(micro, k):
            inb = _inside(d, ih0 + u, iw0 + v)
            reads.append((pos + off)[inb])
    groups = np.arange(int(micro["glast"].sum()))
    if p >= s:
        cts = (groups[:, None] * (p // s) + np.arange(p // s)).ravel()
        cts = cts[cts < _out_lim(d)]
    else:
        cts = np.unique(groups // (s // p))
    return np.concatenate(reads), (out[:, None] + cts).ravel()


def _out_lim(d: dict) -> int:
    """Output channel tiles a matmul descriptor writes (``out_lim`` on a core with external
    memory, whose tiles write part of a tensor; else all ``out_ct``)."""
    return int(d.get("out_lim", d["out_ct"]))


def _pool(mem: np.ndarray, d: dict, act_bits: int) -> None:
    oh, ow = _positions(d)
    out = d["out_base"] + (oh * d["out_w"] + ow) * d["out_ct"]
    low = -(1 << (act_bits - 1))                 # a tap in the padding never wins
    taps = _pool_taps(d)
    for t in range(int(d["in_ct"])):
        vals = [np.where(inb[None, :, None], mem[:, np.where(inb, addr + t, 0)], low)
                for addr, inb in taps]
        mem[:, out + t] = np.maximum.reduce(vals)


def _decode(config: CoreConfig, d: dict, micro: dict, k: int) -> np.ndarray:
    """Weight values ``(lanes, simd)`` of micro-op ``k`` (bit_serial: the scaled plane)."""
    w = micro["w"][k].reshape(config.lanes, config.simd)
    if config.pe == "bit_serial":
        shift = int(micro["shift"][k])
        return w * (-(1 << shift) if micro["neg"][k] else 1 << shift)
    if config.pe == "shift_add":
        return PotFormat(config.weight_bits).decode(w)
    if d["fmt"] == FMT_CODEBOOK:
        return d["table"][w]
    return IntFormat(config.weight_bits).decode(w)


def _inside(d: dict, ih: np.ndarray, iw: np.ndarray) -> np.ndarray:
    """Whether input rows ``ih`` and columns ``iw`` are inside the input (not padding)."""
    return (ih >= 0) & (ih < d["in_h"]) & (iw >= 0) & (iw < d["in_w"])


def _words_read(micro: dict, k: int) -> list[tuple[int, int, int]]:
    """``(off, u, v)`` of the activation words micro-op ``k`` reads: A, and on a core with
    K packing B (``off2``, ``u2``, ``v2``; read even when ``split`` is 0, as the core does)."""
    reads = [(int(micro["off"][k]), int(micro["u"][k]), int(micro["v"][k]))]
    if "split" in micro:
        reads.append((int(micro["off2"][k]), int(micro["u2"][k]), int(micro["v2"][k])))
    return reads


def _word(mem: np.ndarray, d: dict, pos: np.ndarray, ih0: np.ndarray, iw0: np.ndarray,
          off: int, u: int, v: int) -> np.ndarray:
    """The activation word at ``pos + off`` of every position ``(N, positions, simd)``, 0
    where tap ``(u, v)`` is in the padding."""
    inb = _inside(d, ih0 + u, iw0 + v)
    return mem[:, np.where(inb, pos + off, 0)] * inb[None, :, None]


def _matmul(mem: np.ndarray, d: dict, micro: dict, params: dict, config: CoreConfig) -> None:
    """One matmul descriptor; ``micro`` and ``params`` are its own words (from index 0)."""
    p, s = config.lanes, config.simd
    pos, ih0, iw0, out = _matmul_walk(d)
    taps = _fused_taps(d)
    out = out[:out.size // taps]
    n = mem.shape[0]
    acc = np.zeros((n, pos.size, p), dtype=np.int64)
    half = 1 << (config.acc_bits - 1)
    mask = (1 << config.acc_bits) - 1
    g = 0
    lane = np.arange(s)
    for k in range(micro["glast"].shape[0]):
        reads = _words_read(micro, k)
        a = _word(mem, d, pos, ih0, iw0, *reads[0])
        split = int(micro["split"][k]) if len(reads) > 1 else 0
        if split:                   # K packing: lanes from ``split`` up are B's, shifted up
            b = _word(mem, d, pos, ih0, iw0, *reads[1])
            a = np.where(lane < split, a, b[:, :, np.maximum(lane - split, 0)])
        acc += a @ _decode(config, d, micro, k).T
        acc = ((acc + half) & mask) - half  # the accumulator wraps at acc_bits
        if not micro["glast"][k]:
            continue
        y = requantize(acc.reshape(-1, p), params["bias"][g], params["m"][g], params["s"][g],
                       lo=int(d["lo"]), hi=int(d["hi"])).reshape(n, taps, -1, p)
        y = y.max(axis=1)                   # a fused pool: the maximum over its window
        if p >= s:
            for j in range(p // s):
                ct = g * (p // s) + j
                if ct < _out_lim(d):
                    mem[:, out + ct] = y[:, :, j * s:(j + 1) * s]
        else:
            r = s // p
            mem[:, out + g // r, (g % r) * p:(g % r + 1) * p] = y
        acc[:] = 0
        g += 1


def _dw_words(config: CoreConfig, words: CoreWords, images: Mapping[str, np.ndarray],
              d: dict, i: int) -> tuple[list[dict], dict]:
    """Decoded micro-ops of a depthwise descriptor's two programs (a row's first position:
    ``w_base .. w_last``; the others: ``w_base2 .. w_last2``) and its parameter words."""
    if d.get("fuse", 0):
        raise ValueError(f"Descriptor {i}: the depthwise mode (dw) and a fused pool (fuse) "
                         "cannot be combined")
    progs, groups = [], 1
    for lo, hi in (("w_base", "w_last"), ("w_base2", "w_last2")):
        micro, params = _layer_words(config, words, images,
                                     {**d, "w_base": d[lo], "w_last": d[hi]}, i)
        if not micro["glast"][-1]:
            raise ValueError(f"Descriptor {i}: a depthwise program ({lo} .. {hi}) must end "
                             "with glast (a group does not span output positions)")
        progs.append(micro)
        if int(micro["glast"].sum()) > groups:
            groups = int(micro["glast"].sum())
    p_base, param = int(d["p_base"]), images["param"]
    return progs, words.param.unpack(param[p_base:p_base + groups])


def _join(progs: list[dict]) -> dict:
    """Both programs' micro-op fields as one (for the accesses they make)."""
    return {k: np.concatenate([p[k] for p in progs]) for k in progs[0]}


def _dw_matmul(mem: np.ndarray, d: dict, progs: list[dict], params: dict,
               config: CoreConfig) -> None:
    """One depthwise descriptor (:mod:`hwq.layout.dwmode`): the output rows side by side,
    column by column; per micro-op the window's update, then the array's products of it."""
    p, s = config.lanes, config.simd
    oh_n, ow_n = int(d["out_h"]), int(d["out_w"])
    n = mem.shape[0]
    rows = np.arange(oh_n)
    window = np.zeros((n, oh_n, SLOTS, s), np.int64)
    acc = np.zeros((n, oh_n, p), np.int64)
    half = 1 << (config.acc_bits - 1)
    mask = (1 << config.acc_bits) - 1
    ih0 = rows * d["stride_h"] - d["pad_t"]
    for ow in range(ow_n):
        micro = progs[0] if ow == 0 else progs[1]
        pos = d["pos0"] + rows * d["row_step"] + ow * d["col_step"]
        iw0 = np.full(oh_n, ow * d["stride_w"] - d["pad_l"])
        out = d["out_base"] + (rows * d["out_w"] + ow) * d["out_ct"]
        g = 0
        for k in range(micro["glast"].shape[0]):
            writes = [(u, v, _word(mem, d, pos, ih0, iw0, off, u, v))
                      for off, u, v in _words_read(micro, k)]
            window_step(window, first=k == 0, row_first=ow == 0, stride_w=int(d["stride_w"]),
                        writes=writes)
            acc += window_macs(window, _decode(config, d, micro, k), int(micro["hi"][k]))
            acc = ((acc + half) & mask) - half  # the accumulator wraps at acc_bits
            if not micro["glast"][k]:
                continue
            y = requantize(acc.reshape(-1, p), params["bias"][g], params["m"][g],
                           params["s"][g], lo=int(d["lo"]), hi=int(d["hi"])).reshape(n, oh_n, p)
            if g < _out_lim(d):
                mem[:, out + g] = y
            acc[:] = 0
            g += 1
