"""The registered harness around a design: every timed path register to register.

:func:`design_verilog` gives the Verilog of a core (``hwq_core``) or of its bare
:class:`~hwq.rtl.pe.MacArray`; :func:`register_harness` wraps it in module
:data:`HARNESS_TOP` whose inputs come from one shift register and whose outputs are captured
in registers, so a synthesis and timing tool sees only register-to-register paths.
"""

from __future__ import annotations

import re

from hwq.config import CoreConfig

__all__ = ["ARRAY_TOP", "HARNESS_TOP", "array_verilog", "design_verilog", "register_harness",
           "verilog_ports"]

#: Top module of the registered harness that is synthesized.
HARNESS_TOP = "hwq_report_top"
#: Name of the bare MAC array module in :func:`array_verilog`.
ARRAY_TOP = "hwq_mac_array"

_PORT = re.compile(r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
                   r"(?:\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*)?(\\\S+|\w+)\s*;", re.M)


def verilog_ports(verilog: str, top: str) -> dict[str, tuple[str, int]]:
    """Ports of module ``top`` (non-ANSI declarations, as Yosys writes them).

    Escaped identifiers (``\\table``, a keyword) are returned without the backslash.

    Returns
    -------
    dict
        port name -> (``"input"``/``"output"``/``"inout"``, width in bits), in order.
    """
    match = re.search(rf"^module\s+{re.escape(top)}\s*\((.*?)^endmodule", verilog, re.M | re.S)
    if match is None:
        raise ValueError(f"Module {top!r} not found in the Verilog")
    header, _, body = match.group(1).partition(";")
    names = [n.strip().lstrip("\\") for n in header.rstrip().rstrip(")").split(",")]
    found: dict[str, tuple[str, int]] = {}
    for direction, hi, lo, name in _PORT.findall(body):
        name = name.lstrip("\\")
        if name in names and name not in found:  # not the inputs of functions inside
            found[name] = (direction, abs(int(hi) - int(lo)) + 1 if hi else 1)
    missing = [n for n in names if n and n not in found]
    if missing:
        raise ValueError(f"Module {top!r}: no declaration for port(s) {missing}")
    return found  # in declaration order (the harness's shift chain follows it)


def _ident(name: str) -> str:
    """``name`` as an escaped Verilog identifier (``\\table ``: ports may be keywords)."""
    return f"\\{name} "


def register_harness(verilog: str, top: str, *, name: str = HARNESS_TOP) -> str:
    """Wrap module ``top`` so that every path is register to register, with 3 pins.

    Inputs other than ``clk`` and ``rst`` are the bits of one shift register fed by the pin
    ``din`` (the input registers themselves, no extra logic); ``rst`` is registered once;
    every output is captured in a ``keep`` register (no pins, no extra logic). So the harness
    adds exactly ``sum(input widths) + sum(output widths)`` flip-flops (+1 with ``rst``)
    and no LUTs, and the design fits any package. A design without ``clk`` gets one.

    Returns
    -------
    str
        ``verilog`` followed by module ``name`` (ports ``clk``, ``din``, and ``rst`` if
        ``top`` has one).
    """
    ports = verilog_ports(verilog, top)
    bad = [p for p, (d, _) in ports.items() if d == "inout"]
    if bad:
        raise ValueError(f"Module {top!r} has inout ports {bad}; the harness takes none")
    has_rst = "rst" in ports
    ins = [(p, w) for p, (d, w) in ports.items() if d == "input" and p not in ("clk", "rst")]
    outs = [(p, w) for p, (d, w) in ports.items() if d == "output"]
    width = sum(w for _, w in ins)
    lines = [f"module {name}(clk, din{', rst' if has_rst else ''});",
             "  input clk;", "  input din;"]
    if has_rst:
        lines += ["  input rst;", "  reg rst_q;", "  always @(posedge clk) rst_q <= rst;"]
    conns = []
    if "clk" in ports:
        conns.append(".clk(clk)")
    if has_rst:
        conns.append(".rst(rst_q)")
    if width:
        lines.append(f"  reg [{width - 1}:0] chain;")
        shift = f"{{chain[{width - 2}:0], din}}" if width > 1 else "din"
        lines.append(f"  always @(posedge clk) chain <= {shift};")
    lo = 0
    for port, w in ins:
        conns.append(f".{_ident(port)}(chain[{lo + w - 1}:{lo}])")
        lo += w
    for port, w in outs:
        local = re.sub(r"\W", "_", port)
        lines += [f"  wire [{w - 1}:0] {local}_w;", f"  (* keep *) reg [{w - 1}:0] {local}_q;",
                  f"  always @(posedge clk) {local}_q <= {local}_w;"]
        conns.append(f".{_ident(port)}({local}_w)")
    lines.append(f"  {top} dut ({', '.join(conns)});")
    lines.append("endmodule")
    return verilog.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"


def array_verilog(config: CoreConfig) -> str:
    """Verilog of the bare :class:`~hwq.rtl.pe.MacArray` for ``config`` (module ``hwq_mac_array``).

    The module's ports are checked against the array's signature: ``clk``, ``rst`` and one
    port per flattened member (``i__payload``, ``o__ready``, ... with their widths).
    """
    from amaranth.back import rtlil
    from amaranth.hdl import Shape

    from hwq.rtl.generate import _yosys
    from hwq.rtl.pe import MacArray

    array = MacArray(config=config)
    expected = {"clk": ("input", 1), "rst": ("input", 1)}
    for path, member, _ in array.signature.flatten(array):
        direction = "input" if member.flow.name == "In" else "output"
        expected["__".join(str(p) for p in path)] = (direction, Shape.cast(member.shape).width)
    verilog = _yosys(rtlil.convert(array, name=ARRAY_TOP, emit_src=False))
    found = verilog_ports(verilog, ARRAY_TOP)
    if found != expected:
        raise RuntimeError(f"MacArray Verilog ports {found} differ from its signature "
                           f"{expected}")
    return verilog


def design_verilog(config: CoreConfig, *, array_only: bool = False) -> tuple[str, str]:
    """(Verilog, top module name) of the core ``hwq_core`` or, with ``array_only``, its array."""
    if not isinstance(config, CoreConfig):
        raise TypeError(f"Config must be a CoreConfig, not {config!r}")
    if array_only:
        return array_verilog(config), ARRAY_TOP
    from hwq.rtl.generate import TOP, cached_generate

    return cached_generate(config), TOP
