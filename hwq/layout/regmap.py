"""The core's register map, described once: RTL block, host constants and docs come from it.

Registers are 32 bits on AXI4-Lite (ports ``s_axil__*``), word aligned. Pure Python: the
host runtime imports this module; ``hwq.rtl.axil`` builds the Amaranth register block from
:data:`REGISTERS`; :func:`markdown` renders the table, :func:`python_constants` a
stand-alone constants module and :func:`c_header` the same as a C header.

Access kinds: ``ro`` (the core drives the value; a read may have a side effect, e.g.
``BULK_RDATA``), ``rw`` (stored in the block, byte enables honoured), ``wo`` (a write is a
command; reads return 0). Every access to a register answers OKAY; a word with no register
answers SLVERR (``BRESP``/``RRESP`` = 0b10; a read gives 0, a write does nothing), and the
host refuses such an offset before the access (``hwq.host.device.check_offset``).

How a host runs a network (see also ``hwq.host``)::

    check ID, VERSION, FINGERPRINT_LO/HI against the Program
    for each image (desc, weight, param) and the input activations:
        BULK_SEL = memory id; BULK_ADDR = first word
        write every word as ``chunks`` 32-bit chunks, LSB chunk first, to BULK_WDATA
        (or as beats on the AXI-Stream port s_axis__tdata/tvalid/tready, same order)
    CTRL = START                      (clears DONE; the core runs every layer)
    wait for STATUS.DONE (or the irq line, with IRQ_ENABLE = 1)
    BULK_SEL = act; BULK_ADDR = output base; read chunks from BULK_RDATA
    CYCLES, and LAYER_SEL = i / LAYER_CYCLES for each layer i
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from hwq.hardware import PE_TYPES
from hwq.layout.words import MEMORY_IDS

if TYPE_CHECKING:
    from hwq.config import CoreConfig

#: ``ID`` register value: ASCII "HWQC".
CORE_ID = 0x4857_5143
#: ``VERSION`` register value: register map major.minor as ``major << 16 | minor``.
MAP_VERSION = (1, 1)
#: ``CONFIG0.pe`` codes: the order of :data:`hwq.hardware.PE_TYPES`.
PE_CODES = {pe: code for code, pe in enumerate(PE_TYPES)}


@dataclass(frozen=True)
class BitField:
    """Bits ``lsb .. lsb + width - 1`` of a register."""

    name: str
    lsb: int
    width: int
    doc: str

    @property
    def mask(self) -> int:
        """The field's bits in place (``BIT.STATUS_DONE`` is STATUS's ``DONE`` mask)."""
        return ((1 << self.width) - 1) << self.lsb

    def get(self, word: Any) -> Any:
        """This field of ``word``: of an int, the field's value; of an Amaranth value, the
        slice of its bits (the RTL decodes with the same fields as the host)."""
        if isinstance(word, int):
            return word >> self.lsb & ((1 << self.width) - 1)
        return word[self.lsb:self.lsb + self.width]


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str
    doc: str
    fields: tuple[BitField, ...] = ()

    def __post_init__(self) -> None:
        if self.access not in ("ro", "rw", "wo"):
            raise ValueError(f"Register access must be ro, rw or wo, not {self.access!r}")
        if self.offset % 4:
            raise ValueError(f"Register offset must be word aligned, not {self.offset:#x}")

    def field(self, name: str) -> BitField:
        """The bit field ``name`` of this register."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"Register {self.name} has no field {name!r}; fields: "
                       f"{[f.name for f in self.fields]}")

    def pack(self, **values: Any) -> Any:
        """The register word with each named field set (the others 0).

        Ints give an int and must fit their field; Amaranth values give an Amaranth
        expression (each shifted to its field's place, or'ed together), for the RTL.

        >>> register("CONFIG0").pack(PE=2, LANES=8, SIMD=4) == 2 | 8 << 8 | 4 << 20
        True
        """
        word: Any = 0
        for name, value in values.items():
            f = self.field(name)
            if isinstance(value, int):
                if not 0 <= value < 1 << f.width:
                    raise ValueError(f"{self.name}.{name} must be in 0..{(1 << f.width) - 1} "
                                     f"({f.width} bits), not {value!r}")
                word |= value << f.lsb
            else:
                term = value << f.lsb if f.lsb else value
                word = term if isinstance(word, int) and word == 0 else word | term
        return word

    def unpack(self, word: int) -> dict[str, int]:
        """Every field's value in the register word ``word``.

        >>> register("STATUS").unpack(0b10)
        {'BUSY': 0, 'DONE': 1}
        """
        return {f.name: f.get(int(word)) for f in self.fields}


REGISTERS: tuple[Register, ...] = (
    Register("ID", 0x00, "ro", f"Core identifier, always {CORE_ID:#010x} (\"HWQC\")."),
    Register("VERSION", 0x04, "ro", "Register map version: (major << 16) + minor."),
    Register("FINGERPRINT_LO", 0x08, "ro",
             "CoreConfig.fingerprint() (16 hex digits), low 32 bits."),
    Register("FINGERPRINT_HI", 0x0C, "ro", "CoreConfig.fingerprint(), high 32 bits."),
    Register("CTRL", 0x10, "wo", "Commands (write 1 to a bit).", (
        BitField("START", 0, 1, "run the program from descriptor 0; clears DONE"),
        BitField("CLEAR_DONE", 1, 1, "clear DONE (and the interrupt)"),
    )),
    Register("STATUS", 0x14, "ro", "Core state.", (
        BitField("BUSY", 0, 1, "a program is running"),
        BitField("DONE", 1, 1, "the last run finished (sticky until START or CLEAR_DONE)"),
    )),
    Register("IRQ_ENABLE", 0x18, "rw", "Interrupt enable.", (
        BitField("DONE", 0, 1, "raise irq while STATUS.DONE is set"),
    )),
    Register("CYCLES", 0x1C, "ro", "Cycles of the last run, START to DONE."),
    Register("LAYER_SEL", 0x20, "rw", "Layer index whose counter LAYER_CYCLES shows."),
    Register("LAYER_CYCLES", 0x24, "ro", "Cycles of layer LAYER_SEL in the last run."),
    Register("LAYERS_DONE", 0x28, "ro", "Layers finished in the current or last run."),
    Register("BULK_SEL", 0x30, "rw", "Memory of the bulk path: "
             + ", ".join(f"{v} = {k}" for k, v in MEMORY_IDS.items()) + "."),
    Register("BULK_ADDR", 0x34, "rw",
             "Word address of the bulk path; a write also restarts the chunk count. "
             "Advances by one after each whole word written or read."),
    Register("BULK_WDATA", 0x38, "wo",
             "Next 32-bit chunk of the word at BULK_ADDR (LSB chunk first); the last chunk "
             "of a word writes it."),
    Register("BULK_RDATA", 0x3C, "ro",
             "Next 32-bit chunk of the activation word at BULK_ADDR (act memory only, core "
             "idle)."),
    Register("CONFIG0", 0x40, "ro", "Core parameters.", (
        BitField("PE", 0, 2, "PE type: " + ", ".join(f"{v} = {k}" for k, v in PE_CODES.items())),
        BitField("LANES", 8, 9, "lanes P"),
        BitField("SIMD", 20, 9, "SIMD width S"),
    )),
    Register("CONFIG1", 0x44, "ro", "Core parameters.", (
        BitField("ACT_BITS", 0, 5, "activation bits"),
        BitField("WEIGHT_BITS", 8, 4, "weight code bits"),
        BitField("ACC_BITS", 16, 6, "accumulator bits"),
    )),
    Register("EXT_BASE", 0x48, "rw",
             "Byte address on the m_axi port of the external image (Program section ext), "
             "aligned to ext_burst beats (cores without the port only hold it)."),
    Register("EXT_BEATS", 0x4C, "ro", "m_axi read beats of the last run."),
    Register("STALL_CYCLES", 0x50, "ro",
             "Cycles the last run's descriptors waited for weight loads."),
    Register("CONFIG2", 0x54, "ro", "External memory port (0 without it).", (
        BitField("EXT_BITS", 0, 8, "m_axi data bits (0: no port)"),
        BitField("EXT_BURST", 8, 9, "most beats per read burst"),
        BitField("EXT_OUTSTANDING", 20, 5, "most read bursts in flight"),
    )),
)

#: Register offsets by name: ``ADDR.CTRL == 0x10``.
ADDR = SimpleNamespace(**{r.name: r.offset for r in REGISTERS})
#: Bit masks by ``REGISTER_FIELD`` name: ``BIT.CTRL_START == 1``.
BIT = SimpleNamespace(**{f"{r.name}_{f.name}": f.mask for r in REGISTERS for f in r.fields})
#: Bulk-path memory numbers: ``MEM.act == 3``.
MEM = SimpleNamespace(**MEMORY_IDS)
#: Bytes of address space the block decodes.
ADDR_WIDTH = 8


def register(name: str) -> Register:
    """The register ``name`` of :data:`REGISTERS`."""
    for r in REGISTERS:
        if r.name == name:
            return r
    raise KeyError(f"No register {name!r}; registers: {[r.name for r in REGISTERS]}")


def version_word() -> int:
    return MAP_VERSION[0] << 16 | MAP_VERSION[1]


def config_words(config: CoreConfig) -> tuple[int, int, int]:
    """``(CONFIG0, CONFIG1, CONFIG2)`` of a core ``config``."""
    ext = config.external
    return (register("CONFIG0").pack(PE=PE_CODES[config.pe], LANES=config.lanes,
                                     SIMD=config.simd),
            register("CONFIG1").pack(ACT_BITS=config.act_bits, WEIGHT_BITS=config.weight_bits,
                                     ACC_BITS=config.acc_bits),
            register("CONFIG2").pack(EXT_BITS=config.ext_bits,
                                     EXT_BURST=config.ext_burst if ext else 0,
                                     EXT_OUTSTANDING=config.ext_outstanding if ext else 0))


def fingerprint_words(fingerprint: str) -> tuple[int, int]:
    """``(FINGERPRINT_LO, FINGERPRINT_HI)`` of a 16-hex-digit fingerprint."""
    value = int(fingerprint, 16)
    return value & 0xFFFF_FFFF, value >> 32


def markdown() -> str:
    """The register table in Markdown."""
    lines = ["| offset | name | access | description |", "|---|---|---|---|"]
    for r in REGISTERS:
        doc = r.doc
        if r.fields:
            doc += " " + "; ".join(
                f"`{f.name}` [{f.lsb + f.width - 1}:{f.lsb}] {f.doc}" if f.width > 1
                else f"`{f.name}` [{f.lsb}] {f.doc}" for f in r.fields)
        lines.append(f"| `{r.offset:#04x}` | `{r.name}` | {r.access} | {doc} |")
    return "\n".join(lines) + "\n"


def c_header() -> str:
    """A C header with every offset, bit mask and memory id (the compiled simulation harness,
    firmware): ``HWQ_REG_<NAME>``, ``HWQ_BIT_<REGISTER>_<FIELD>``, ``HWQ_MEM_<NAME>``."""
    out = ["/* hwq core registers (generated by hwq.layout.regmap; do not edit). */",
           "#ifndef HWQ_REGS_H", "#define HWQ_REGS_H", ""]
    out.append(f"#define HWQ_CORE_ID {CORE_ID:#010x}u")
    out.append(f"#define HWQ_MAP_VERSION {version_word():#010x}u")
    out += [f"#define HWQ_REG_{r.name} {r.offset:#04x}u" for r in REGISTERS]
    out += [f"#define HWQ_BIT_{r.name}_{f.name} {f.mask:#x}u"
            for r in REGISTERS for f in r.fields]
    out += [f"#define HWQ_MEM_{k.upper()} {v}u" for k, v in MEMORY_IDS.items()]
    return "\n".join([*out, "", "#endif"]) + "\n"


def python_constants() -> str:
    """A stand-alone Python module with every offset and bit mask (for firmware scripts)."""
    out = ['"""hwq core registers (generated by hwq.layout.regmap; do not edit)."""', ""]
    out.append(f"CORE_ID = {CORE_ID:#010x}")
    out.append(f"MAP_VERSION = {version_word():#010x}")
    out += [f"{r.name} = {r.offset:#04x}" for r in REGISTERS]
    out += [f"{r.name}_{f.name} = {f.mask:#x}"
            for r in REGISTERS for f in r.fields]
    out += [f"MEM_{k.upper()} = {v}" for k, v in MEMORY_IDS.items()]
    return "\n".join(out) + "\n"
