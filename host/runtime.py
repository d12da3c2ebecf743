"""The host runtime: load a Program onto a core, run inferences, read results and cycles.

One async API over every :class:`~hwq.host.device.Device`::

    rt = Runtime(device)
    await rt.load(program)            # checks the core's identity and config fingerprint
    result = await rt.infer(x_int)    # (N, *input_shape) integers -> outputs + cycles
    result.check(golden_outputs)      # bit-for-bit, raises CheckFailed with the first mismatch

Inputs go into the activation memory through the bulk path, ``CTRL.START`` runs every layer
of the program, and the host waits for ``DONE`` (the core runs from its own memories).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hwq.errors import CheckFailed
from hwq.golden._checks import signed_range
from hwq.golden.memory import schedule
from hwq.host.device import Device, DeviceError
from hwq.layout.program import Program
from hwq.layout.regmap import ADDR

#: Extra cycles allowed over the cycle model before a run counts as hung.
TIMEOUT_SLACK_CYCLES = 10_000


@dataclass
class InferenceResult:
    """Outputs and cycle counters of a batch of inferences.

    Attributes
    ----------
    outputs : numpy.ndarray
        int64 ``(N, *program.output.shape)``.
    cycles : numpy.ndarray
        int64 ``(N,)``: the ``CYCLES`` register after each run.
    layer_cycles : numpy.ndarray
        int64 ``(N, layers)``: ``LAYER_CYCLES`` of every layer after each run.
    model_layer_cycles : numpy.ndarray
        int64 ``(layers,)``: the cycle model's figure of each layer (``Program.layers``).
    layer_names : list of str
        the layers' names, in descriptor order.
    stall_cycles, ext_beats : numpy.ndarray
        int64 ``(N,)``: ``STALL_CYCLES`` (cycles descriptors waited for weight loads) and
        ``EXT_BEATS`` (``m_axi`` read beats) after each run; zeros on a program with every
        weight on chip.
    model_is_bound : bool
        the model is a lower bound, not exact: external weights on a memory whose timing
        is not the fixed latency of :mod:`hwq.golden.memory` (each layer must then take at
        least its model's cycles).
    """

    outputs: np.ndarray
    cycles: np.ndarray
    layer_cycles: np.ndarray
    model_layer_cycles: np.ndarray
    layer_names: list[str] = field(default_factory=list)
    stall_cycles: np.ndarray | None = None
    ext_beats: np.ndarray | None = None
    model_is_bound: bool = False

    def mismatches(self, expected: np.ndarray) -> int:
        """Number of output values that differ from ``expected`` (exact integer compare).

        Raises
        ------
        ValueError
            ``expected`` does not have the shape of :attr:`outputs`.
        """
        expected = np.asarray(expected)
        if expected.shape != self.outputs.shape:
            raise ValueError(f"Expected outputs of shape {self.outputs.shape}, "
                             f"not {expected.shape}")
        return int((self.outputs != expected).sum())

    def check(self, expected: np.ndarray) -> None:
        """Raise :class:`~hwq.errors.CheckFailed` naming the first differing output.

        Raises
        ------
        CheckFailed
            some output differs from ``expected`` (the count and the first index).
        ValueError
            ``expected`` does not have the shape of :attr:`outputs`.
        """
        bad = self.mismatches(expected)
        if bad:
            first = tuple(int(i) for i in np.argwhere(self.outputs != np.asarray(expected))[0])
            raise CheckFailed(
                f"{bad} output value(s) differ from the golden model; first at {first}: "
                f"device {int(self.outputs[first])}, golden {int(np.asarray(expected)[first])}"
            )

    def cycle_model_mismatches(self) -> list[str]:
        """Names of the layers whose measured cycles differ from the model in any run (are
        below it, when the model is a bound)."""
        return cycle_model_mismatches(self.layer_cycles, self.model_layer_cycles,
                                      self.layer_names, bound=self.model_is_bound)


def cycle_model_mismatches(layer_cycles: np.ndarray, model_layer_cycles: np.ndarray,
                           layer_names: list[str], *, bound: bool = False) -> list[str]:
    """Names of the layers whose measured cycles (``(N, layers)``) differ from the cycle
    model's (``(layers,)``) in any run; with ``bound``, those below it."""
    measured, model = np.asarray(layer_cycles), np.asarray(model_layer_cycles)[None]
    diff = (measured < model if bound else measured != model).any(axis=0)
    return [layer_names[i] for i in np.flatnonzero(diff)]


def _external_span(program: Program, tensor, words: np.ndarray | None = None):
    """A tensor in external memory: its byte offset in the image and, with ``words``
    (``(count, act chunks)``), the chunks to write there (each word zero-padded to whole
    beats); without, the chunks per word."""
    w = program.words
    per = w.ext_act_beats * program.config.ext_bits // 32
    offset = tensor.external * per * 4
    if words is None:
        return offset, per
    padded = np.zeros((words.shape[0], per), np.uint32)
    padded[:, :words.shape[1]] = words
    return offset, padded.reshape(-1)


def model_layer_cycles(program: Program, latency: int | None) -> np.ndarray:
    """Each descriptor's cycles by the model: with external weights, the waits for loads
    on a memory of fixed ``latency`` (:func:`hwq.golden.memory.schedule`), or none when the
    latency is not fixed (``None``: the figures are then lower bounds)."""
    cfg = program.config
    if program.images["ext"].shape[0] and latency is not None:
        return np.array(schedule(program.layers, beats=program.words.ext_beats,
                                 burst=cfg.ext_burst, outstanding=cfg.ext_outstanding,
                                 latency=latency, act_beats=program.words.ext_act_beats),
                        dtype=np.int64)
    return np.array([int(layer["cycles"]) for layer in program.layers], dtype=np.int64)


class Runtime:
    """Drive one core through a :class:`Device`.

    Parameters
    ----------
    device : Device
    timeout_s : float
        wall-clock limit of one inference (devices that count cycles use the cycle model
        plus :data:`TIMEOUT_SLACK_CYCLES` instead).
    """

    def __init__(self, device: Device, *, timeout_s: float = 10.0) -> None:
        if not isinstance(device, Device):
            raise TypeError(f"Runtime needs a hwq.host.Device, not {type(device).__name__}")
        if not timeout_s > 0:
            raise ValueError(f"Timeout must be a positive number of seconds, not {timeout_s!r}")
        self.device = device
        self.timeout_s = float(timeout_s)
        self.program: Program | None = None

    async def load(self, program: Program, *, preloaded: bool = False) -> None:
        """Check the core matches ``program``'s config, then write its memory images.

        ``preloaded=True``: the core's memories already hold the images (a bitstream or a
        simulation initialized with them); only the core is checked.

        Raises
        ------
        TypeError
            ``program`` is not a :class:`~hwq.layout.program.Program`.
        ValueError
            an image has more words than its memory holds.
        DeviceError
            the device is not an hwq core, speaks another register map major version, or
            its core config fingerprint is not the program's.
        """
        if not isinstance(program, Program):
            raise TypeError(f"Runtime.load needs a hwq Program, not {type(program).__name__}")
        cfg = program.config
        depth = {name: d for name, d in cfg.depths.items() if name != "act"}   # host images
        for memory, image in program.images.items():
            if memory == "ext":
                continue
            if memory not in depth:
                raise ValueError(f"Program image must be one of {', '.join(depth)}, "
                                 f"not {memory!r}")
            if image.shape[0] > depth[memory]:
                raise ValueError(f"Program {memory} image has {image.shape[0]} words, the "
                                 f"core's {memory} memory holds {depth[memory]}")
        ident = await self.device.identify()
        ident.check()
        if ident.fingerprint != program.fingerprint:
            raise DeviceError(
                f"Program was compiled for core config {program.fingerprint} (pe={cfg.pe}, "
                f"lanes={cfg.lanes}, simd={cfg.simd}, act_bits={cfg.act_bits}, "
                f"weight_bits={cfg.weight_bits}) but the device's core is {ident.fingerprint} "
                f"({ident.describe()}); recompile the network for this core"
            )
        # a half-written program must not run: forget the old one first
        self.program = None
        for memory in ("desc", "weight", "param"):
            image = program.images[memory]
            if len(image) and not preloaded:
                await self.device.write_words(memory, 0, image)
        ext = program.images["ext"]
        if ext.shape[0]:
            base = await self.device.write_external(ext)
            align = cfg.ext_burst * cfg.ext_bits // 8
            if base % align:
                raise DeviceError(f"The external image is at byte {base:#x}, which is not "
                                  f"aligned to {align} bytes (ext_burst beats of ext_bits)")
            await self.device.write_reg(ADDR.EXT_BASE, base)
        self.program = program

    async def infer(
        self, x: object, *, progress: Callable[[int], None] | None = None
    ) -> InferenceResult:
        """Run every sample of ``x``, one ``START`` each, and read outputs and counters.

        Parameters
        ----------
        x : array_like of int
            ``(N, *program.input.shape)`` integers in the core's signed ``act_bits`` range,
            ``N >= 1``.
        progress : callable, optional
            ``progress(i)`` is called after sample ``i`` finished (for a progress bar).

        Returns
        -------
        InferenceResult

        Raises
        ------
        RuntimeError
            no program loaded.
        TypeError, ValueError
            ``x`` is not an integer array of that shape and range.
        DeviceTimeout
            the core did not raise DONE within ``timeout_s``.
        DeviceError
            the core is busy, or reports another number of finished layers than the
            program has.
        """
        program = self._loaded()
        packed = self._pack(program, x)
        out_t = program.output
        chunks = program.words.act.chunks
        n_layers = len(program.layers)
        external = bool(program.images["ext"].shape[0])
        latency = self.device.memory_latency
        model = model_layer_cycles(program, latency)
        # a load takes at least a cycle per beat: allow each beat 64 on a slow memory
        beats = program.images["ext"].shape[0] * program.words.ext_beats
        timeout_cycles = int(model.sum()) + 64 * beats + TIMEOUT_SLACK_CYCLES
        outs, totals, layers, stalls, ext_beats = [], [], [], [], []
        in_t = program.input
        for i in range(packed.shape[0]):
            if in_t.external is None:
                await self.device.write_words("act", in_t.base, packed[i])
            else:
                await self.device.write_external_at(*_external_span(program, in_t, packed[i]))
            await self.device.start()
            await self.device.wait_done(timeout_s=self.timeout_s, timeout_cycles=timeout_cycles)
            done = await self.device.read_reg(ADDR.LAYERS_DONE)
            if done != n_layers:
                raise DeviceError(f"The core finished {done} layer(s) of the program's "
                                  f"{n_layers} ({self.device.name} device)")
            if out_t.external is None:
                outs.append(await self.device.read_words("act", out_t.base, out_t.words,
                                                         chunks))
            else:
                offset, per = _external_span(program, out_t)
                got = await self.device.read_external(offset, out_t.words * per)
                outs.append(got.reshape(out_t.words, per)[:, :chunks])
            total, per_layer = await self.device.cycles(n_layers)
            totals.append(total)
            layers.append(per_layer)
            stalls.append(await self.device.read_reg(ADDR.STALL_CYCLES) if external else 0)
            ext_beats.append(await self.device.read_reg(ADDR.EXT_BEATS) if external else 0)
            if progress is not None:
                progress(i)
        return InferenceResult(
            outputs=program.unpack_output(np.stack(outs)),
            cycles=np.array(totals, dtype=np.int64),
            layer_cycles=np.array(layers, dtype=np.int64).reshape(len(outs), n_layers),
            model_layer_cycles=model,
            layer_names=[str(layer["name"]) for layer in program.layers],
            stall_cycles=np.array(stalls, dtype=np.int64),
            ext_beats=np.array(ext_beats, dtype=np.int64),
            model_is_bound=external and latency is None,
        )

    @staticmethod
    def _pack(program: Program, x: object) -> np.ndarray:
        xa = np.asarray(x)
        if xa.dtype.kind not in "iu":
            raise TypeError(f"Network input must be an integer array, not dtype {xa.dtype}")
        want = "(N, " + ", ".join(map(str, program.input.shape)) + ")"
        if xa.shape[1:] != program.input.shape or xa.shape[0] < 1:
            raise ValueError(f"Network input must have shape {want} with N >= 1, "
                             f"not {xa.shape}")
        bits = program.config.act_bits
        lo, hi = signed_range(bits)
        if int(xa.min()) < lo or int(xa.max()) > hi:
            bad = int(xa.min()) if int(xa.min()) < lo else int(xa.max())
            raise ValueError(f"Network input values must be in {lo}..{hi} ({bits}-bit signed "
                             f"activations), not {bad}")
        return program.pack_input(xa)

    def _loaded(self) -> Program:
        if self.program is None:
            raise RuntimeError("No program loaded: call Runtime.load(program) first")
        return self.program
