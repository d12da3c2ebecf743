"""hwq.host: the runtime that drives the accelerator (simulated, golden, or a real board).

:class:`Runtime` loads a :class:`~hwq.layout.program.Program` onto a core through a
:class:`Device` and runs inferences (:class:`InferenceResult`). Devices: :class:`GoldenDevice`
(the NumPy functional model, register for register), :class:`MmioDevice` (a board through
mmap), :class:`SerialDevice` (a board through its UART host link, pyserial imported when one
is opened), ``hwq.sim.device.SimDevice`` (the Verilated RTL inside cocotb) and
``hwq.sim.compiled.CompiledDevice`` (the Verilated RTL with a C++ host; neither imported here).
Pure Python and NumPy: nothing here imports Amaranth or cocotb.
"""

from hwq.host.device import CoreIdentity, Device, DeviceError, DeviceTimeout
from hwq.host.golden import GoldenDevice
from hwq.host.mmio import MmioDevice
from hwq.host.runtime import InferenceResult, Runtime
from hwq.host.serial import LinkError, SerialDevice

__all__ = ["CoreIdentity", "Device", "DeviceError", "DeviceTimeout", "GoldenDevice",
           "InferenceResult", "LinkError", "MmioDevice", "Runtime", "SerialDevice"]
