"""Shared parts of the block-level cocotb testbenches (:mod:`hwq.sim.tb_array`, ``tb_requant``).

Inside the simulator:

* :class:`StreamSource` drives an Amaranth stream (``<name>__valid``, ``<name>__payload``)
  from a queue of payloads, with random stalls (a pause generator);
  :class:`StreamSink` takes beats from ``<name>__payload`` with random back-pressure on
  ``<name>__ready`` and hands each one to its callbacks (it is the monitor).
  Payloads are packed and unpacked through the ``amaranth.lib.data`` layout of the RTL port
  itself, so a payload's bit layout is defined once, in the RTL.
* :class:`Scoreboard` compares, in order and exactly, what the model expected with what the
  monitor saw, and counts both.
* :data:`TRAFFIC` names the stall/back-pressure profiles the testbenches are parametrized over.

On the host: :func:`build_component` converts an Amaranth component to Verilog and builds it
through :func:`hwq.sim.build.build` (cached); :func:`run_testbench` runs a testbench module on
the build with its parameters in :data:`PARAMS_ENV` (JSON) and returns the
:class:`~hwq.sim.build.TestResult`.

Timing: every coroutine writes its inputs just after a falling clock edge and reads the
handshake in the read-only phase of that same time step, when the combinational logic has
settled, so a beat counts as transferred exactly when the next rising edge will take it.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, FallingEdge, First, ReadOnly

__all__ = [
    "BREAK_ENV",
    "COUNTS_FILE",
    "FAST_COMPILE",
    "PARAMS_ENV",
    "TRAFFIC",
    "Scoreboard",
    "StreamSink",
    "StreamSource",
    "break_golden",
    "build_component",
    "load_params",
    "random_pauses",
    "record_counts",
    "reset_dut",
    "run_testbench",
    "start_clock",
    "to_bits",
    "traffic_generators",
    "seeded_rng",
    "wait_for_transactions",
]

#: Environment variable holding the testbench parameters (a JSON object).
PARAMS_ENV = "HWQ_TB_PARAMS"
#: Environment variable that, set to 1, makes the models perturb one expected value by +1.
BREAK_ENV = "HWQ_TB_BREAK_GOLDEN"
#: File in the simulator's working folder where each test appends its transaction counts.
COUNTS_FILE = "hwq_tb_counts.jsonl"
#: Verilator build arguments: compile the C++ model with two jobs.
FAST_COMPILE = ("-j", "2")
#: Clock period of the testbenches, in ns.
CLOCK_PERIOD_NS = 10

PauseGenerator = Iterator[bool]


# -- parameters --------------------------------------------------------------------------------


def load_params() -> dict[str, Any]:
    """Parameters of this simulation run, from :data:`PARAMS_ENV`.

    Raises
    ------
    RuntimeError
        If the variable is not set (the testbench was run without :func:`run_testbench`).
    """
    text = os.environ.get(PARAMS_ENV)
    if not text:
        raise RuntimeError(f"{PARAMS_ENV} is not set: run the testbench through run_testbench()")
    return json.loads(text)


def break_golden() -> bool:
    """True when :data:`BREAK_ENV` asks the model to perturb one expected value."""
    return os.environ.get(BREAK_ENV, "").strip() not in ("", "0")


def seeded_rng(*salt: str) -> np.random.Generator:
    """A NumPy generator seeded by cocotb's random seed and ``salt`` (e.g. the test name)."""
    seed = int(getattr(cocotb, "RANDOM_SEED", 0) or 0)
    return np.random.default_rng([seed, *(zlib.crc32(s.encode()) for s in salt)])


# -- stall and back-pressure generators --------------------------------------------------------


def random_pauses(rng: np.random.Generator, probability: float, burst: float = 0.0
                  ) -> PauseGenerator:
    """Yield True (pause this cycle) with ``probability``; a pause continues with ``burst``.

    ``burst = 0`` gives independent single-cycle pauses; ``burst`` close to 1 gives long runs.
    """
    paused = False
    while True:
        paused = bool(rng.random() < (burst if paused else probability))
        yield paused


def _never() -> PauseGenerator:
    while True:
        yield False


#: Traffic profiles: name -> (input stall probability, stall burst, output back-pressure
#: probability, back-pressure burst). Names stay short identifiers: cocotb shows them in the
#: parametrized test names (``mac_array/traffic=both``).
TRAFFIC: dict[str, tuple[float, float, float, float]] = {
    "smooth": (0.0, 0.0, 0.0, 0.0),
    "stall": (0.4, 0.0, 0.0, 0.0),
    "backpress": (0.0, 0.0, 0.5, 0.0),
    "both": (0.3, 0.5, 0.25, 0.8),
}


def traffic_generators(name: str, rng: np.random.Generator
                       ) -> tuple[PauseGenerator, PauseGenerator]:
    """(source pause generator, sink pause generator) of traffic profile ``name``."""
    if name not in TRAFFIC:
        raise ValueError(f"Traffic profile must be one of {', '.join(TRAFFIC)}, not {name!r}")
    stall, stall_burst, press, press_burst = TRAFFIC[name]
    source = random_pauses(rng, stall, stall_burst) if stall else _never()
    sink = random_pauses(rng, press, press_burst) if press else _never()
    return source, sink


def to_bits(shape: Any, value: Any) -> int:
    """``value`` as the unsigned bit pattern of a port of ``shape`` (a layout or a shape)."""
    from amaranth.hdl import Shape

    if hasattr(shape, "const") and not isinstance(shape, Shape):
        return int(shape.const(value).as_bits())
    width = Shape.cast(shape).width
    return int(value) & ((1 << width) - 1)


# -- clock and reset ---------------------------------------------------------------------------


def start_clock(dut: Any) -> None:
    """Start the GPI clock on ``dut.clk``."""
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start()


async def reset_dut(dut: Any, cycles: int = 2) -> None:
    """Hold ``dut.rst`` high for ``cycles`` cycles; return just after a falling edge."""
    await FallingEdge(dut.clk)
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles, FallingEdge)
    dut.rst.value = 0


# -- bus models --------------------------------------------------------------------------------


class _StreamEnd:
    """What a source and a sink share: the handles, the layout, the reset hook, callbacks."""

    def __init__(self, dut: Any, name: str, layout: Any, pause: PauseGenerator | None) -> None:
        self.dut = dut
        self.name = name
        self.clock = dut.clk
        self.layout = layout
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        width = len(self.payload)
        if width != layout.size:
            raise ValueError(f"Port {name}__payload is {width} bits wide, but its layout "
                             f"is {layout.size} bits: the build does not match the parameters")
        self.pause = pause if pause is not None else _never()
        self.count = 0
        self._callbacks: list[Callable[[Any], None]] = []
        self._task: Any = None

    def add_callback(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(beat)`` for every beat transferred."""
        self._callbacks.append(callback)

    def set_pause_generator(self, pause: PauseGenerator | None) -> None:
        """Replace the pause generator (None: never pause)."""
        self.pause = pause if pause is not None else _never()

    def _in_reset(self) -> bool:
        return bool(int(self.dut.rst.value))

    def _transferred(self, beat: Any) -> None:
        self.count += 1
        for callback in self._callbacks:
            callback(beat)

    def start(self) -> None:
        """Start driving (a cocotb task)."""
        if self._task is None:
            self._task = cocotb.start_soon(self._run())

    def stop(self) -> None:
        """Stop driving."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class StreamSource(_StreamEnd):
    """Drive stream ``name`` of ``dut`` from a queue; pause between beats when told.

    ``valid`` stays high from the cycle a beat is offered until ``ready`` takes it (stream
    rules); the pause generator is asked once per cycle while no beat is on offer. In reset,
    ``valid`` is low and nothing is taken from the queue (the reset hook).

    Parameters
    ----------
    dut : cocotb handle of the top module
    name : str
        Port name in Amaranth (``"i"`` drives ``i__valid``/``i__payload``, reads ``i__ready``).
    layout : amaranth.lib.data.Layout
        The payload's layout, as the RTL declares it.
    pause : iterator of bool, optional
        Stall generator; default never stalls.
    """

    def __init__(self, dut: Any, name: str, layout: Any, pause: PauseGenerator | None = None
                 ) -> None:
        super().__init__(dut, name, layout, pause)
        self.queue: deque[Any] = deque()
        self.stall_cycles = 0  # cycles with a beat on offer and ready low
        self._current: Any = None
        self._idle = Event()
        self._idle.set()
        self.valid.value = 0
        self.payload.value = 0

    def send_nowait(self, payload: Mapping[str, Any]) -> None:
        """Queue one beat; ``payload`` is anything ``layout.const()`` accepts."""
        self.queue.append(payload)
        self._idle.clear()

    async def send(self, payload: Mapping[str, Any]) -> None:
        """Queue one beat (the queue is unbounded: this never waits)."""
        self.send_nowait(payload)

    def idle(self) -> bool:
        """No beat queued or on offer."""
        return not self.queue and self._current is None

    async def wait(self) -> None:
        """Wait until every queued beat has been taken."""
        if not self.idle():
            await self._idle.wait()

    async def _run(self) -> None:
        while True:
            await FallingEdge(self.clock)
            if self._in_reset():
                self._current = None  # a beat on offer in reset is dropped
                self.valid.value = 0
                continue
            if self._current is None and self.queue and not next(self.pause):
                self._current = self.queue.popleft()
                self.payload.value = to_bits(self.layout, self._current)
            self.valid.value = int(self._current is not None)
            await ReadOnly()
            if self._current is None:
                continue
            if int(self.ready.value):
                beat, self._current = self._current, None
                self._transferred(beat)
                if not self.queue:
                    self._idle.set()
            else:
                self.stall_cycles += 1


class StreamSink(_StreamEnd):
    """Take beats from stream ``name`` of ``dut`` with random back-pressure (the monitor).

    Each cycle the pause generator decides ``ready``; a beat transferred (``valid`` and
    ``ready``) is unpacked with the layout (an ``amaranth.lib.data.Const``), appended to
    :attr:`queue` and passed to the callbacks. Nothing is taken in reset.
    """

    def __init__(self, dut: Any, name: str, layout: Any, pause: PauseGenerator | None = None
                 ) -> None:
        super().__init__(dut, name, layout, pause)
        self.queue: deque[Any] = deque()
        self.ready.value = 0

    async def _run(self) -> None:
        while True:
            await FallingEdge(self.clock)
            ready = not next(self.pause)
            self.ready.value = int(ready)
            await ReadOnly()
            if ready and int(self.valid.value) and not self._in_reset():
                beat = self.layout.from_bits(int(self.payload.value))
                self.queue.append(beat)
                self._transferred(beat)


# -- checking ----------------------------------------------------------------------------------


class Scoreboard:
    """In-order, exact comparison of expected transactions (from the model) with observed ones.

    Transactions are plain dicts of ints and lists of ints. A mismatch is logged and kept; the
    test calls :meth:`check` at the end, which raises ``AssertionError`` naming the first
    mismatch with its expected and observed values. Observed transactions with nothing
    expected are mismatches too.

    Parameters
    ----------
    name : str
        Shown in messages (the block and test).
    log : logging.Logger, optional
    """

    def __init__(self, name: str, log: Any = None) -> None:
        self.name = name
        self.log = log
        self.expected: deque[dict[str, Any]] = deque()
        self.expected_count = 0
        self.compared = 0
        self.matched = 0
        self.mismatches: list[str] = []
        self._target: int | None = None
        self._done = Event()

    def expect(self, transaction: dict[str, Any]) -> None:
        """Queue what the model predicts for the next observed transaction."""
        self.expected.append(transaction)
        self.expected_count += 1

    def observe(self, transaction: dict[str, Any]) -> None:
        """Compare an observed transaction with the oldest expected one."""
        index = self.compared
        self.compared += 1
        if not self.expected:
            self._mismatch(f"unexpected transaction {index}: got {transaction}, expected none")
        else:
            want = self.expected.popleft()
            if want == transaction:
                self.matched += 1
            else:
                self._mismatch(f"scoreboard mismatch at transaction {index}: "
                               f"expected {_show(want)}, got {_show(transaction)}")
        if self._target is not None and self.compared >= self._target:
            self._done.set()

    def _mismatch(self, text: str) -> None:
        self.mismatches.append(text)
        if self.log is not None:
            self.log.error("%s: %s", self.name, text)

    def done(self, count: int) -> Any:
        """A trigger that fires once ``count`` transactions have been observed."""
        self._target = count
        if self.compared >= count:
            self._done.set()
        return self._done.wait()

    def check(self, sent: int) -> None:
        """Assert that all ``sent`` transactions were expected, observed and equal.

        Raises
        ------
        AssertionError
            On the first mismatch, or when the counts differ (a run that checked nothing fails).
        """
        if self.mismatches:
            more = len(self.mismatches) - 1
            tail = f" (and {more} more mismatch(es))" if more else ""
            raise AssertionError(f"{self.mismatches[0]}{tail}; {self.matched} of {sent} matched")
        assert sent > 0, f"{self.name}: no transactions were sent, nothing was checked"
        assert self.expected_count == sent, (
            f"{self.name}: the model predicted {self.expected_count} transactions for {sent} sent")
        assert self.compared == sent, (
            f"{self.name}: {self.compared} transactions observed, {sent} sent "
            f"({len(self.expected)} still expected)")
        assert self.matched == sent, f"{self.name}: {self.matched} of {sent} matched"


def _show(transaction: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in transaction.items())


async def wait_for_transactions(dut: Any, scoreboard: Scoreboard, count: int, max_cycles: int,
                                settle: int = 16) -> None:
    """Wait for ``count`` observed transactions (at most ``max_cycles`` cycles), then
    ``settle`` more cycles so that a spurious extra output would be seen too.

    Raises
    ------
    AssertionError
        If the transactions do not all arrive in time.
    """
    await First(scoreboard.done(count), ClockCycles(dut.clk, max_cycles))
    assert scoreboard.compared >= count, (
        f"{scoreboard.name}: timed out after {max_cycles} cycles with {scoreboard.compared} "
        f"of {count} transactions observed")
    await ClockCycles(dut.clk, settle)


def record_counts(test: str, **counts: int) -> None:
    """Append ``{"test": test, **counts}`` to :data:`COUNTS_FILE` (read back by the host)."""
    with open(COUNTS_FILE, "a") as handle:
        handle.write(json.dumps({"test": test, **counts}) + "\n")


# -- host side ---------------------------------------------------------------------------------


def build_component(component: Any, name: str, *, cache_dir: str | os.PathLike[str] | None = None,
                    waves: bool | None = False) -> Any:
    """Convert an Amaranth component to Verilog (top ``name``) and build it for cocotb.

    Verilator's warnings on Yosys output are waived as :mod:`hwq.rtl.lint` documents. Only
    the top ports are public (``public="ports"``); the build is cached by content hash.

    Returns
    -------
    hwq.sim.build.VerilatorBuild
    """
    from amaranth.back import verilog

    from hwq.rtl.dsp import write_sim_models
    from hwq.rtl.lint import waiver_file

    from . import build as sim_build

    text = verilog.convert(component, name=name)
    with tempfile.TemporaryDirectory(prefix="hwq-tb-") as folder:
        source = Path(folder) / f"{name}.v"
        source.write_text(text)
        waivers = Path(folder) / f"{name}_waivers.vlt"  # hwq.rtl.lint's Yosys-output waivers
        waivers.write_text(waiver_file(source.name))
        models = write_sim_models(text, folder)  # behavioural DSP blocks (dsp="ecp5")
        return sim_build.build([waivers, source, *models], name, build_args=FAST_COMPILE,
                               public="ports", waves=waves, cache_dir=cache_dir)


def run_testbench(build: Any, module: str, params: Mapping[str, Any], *,
                  break_golden: bool = False, seed: int | None = None,
                  timeout: float | None = 120.0, test_dir: str | os.PathLike[str] | None = None,
                  waves: bool | None = None) -> Any:
    """Run cocotb module ``module`` on ``build`` with ``params`` in :data:`PARAMS_ENV`.

    Parameters
    ----------
    build : hwq.sim.build.VerilatorBuild
    module : str
        e.g. ``"hwq.sim.tb_array"``.
    params : mapping
        JSON-serializable testbench parameters.
    break_golden : bool
        Set :data:`BREAK_ENV`: the model perturbs one expected value, the run must fail.
    seed : int, optional
        cocotb's random seed (the stimulus depends on it).
    timeout : float, optional
        Wall-clock limit in seconds.
    test_dir : path-like, optional
        Folder to run in; it receives :data:`COUNTS_FILE`.

    Returns
    -------
    hwq.sim.build.TestResult
    """
    from . import build as sim_build

    env = {PARAMS_ENV: json.dumps(dict(params)), BREAK_ENV: "1" if break_golden else "0"}
    return sim_build.run_tests(build, module, extra_env=env, seed=seed, timeout=timeout,
                               test_dir=test_dir, waves=waves)
