"""Registered multipliers: ``a * b`` with a register at each end, inferred or as ECP5 blocks.

:func:`registered_product` is the one multiplier of the datapath (multiply PEs, requant
partial products). Latency 2 either way (operands registered, then the product), every
register enabled by the same ``en``:

* ``dsp="inferred"``: Amaranth ``*`` between fabric registers. Portable; Yosys maps the
  multiply to a DSP block (or LUTs with ``-nodsp``) but leaves the registers in the fabric,
  and on ECP5 the routing from those registers into the DSP row and back costs ~6 ns.
* ``dsp="ecp5"``: one ``MULT18X18D`` instance with its A, B and output registers enabled
  (``REG_INPUTA/B_CLK``, ``REG_OUTPUT_CLK`` on ``CLK0``, enable ``CE0``, synchronous reset
  ``RST0``), signed 18x18 operands. Synthesizes for ECP5 only. For simulation and lint,
  :func:`sim_models` gives hwq's behavioural model of that block (the part of it hwq uses),
  written from the block's documented behaviour: the same registers and the same product.
"""

from __future__ import annotations

import os
from pathlib import Path

from amaranth.hdl import ClockSignal, Const, Instance, Module, ResetSignal, Signal, Value, signed

from hwq.config import DSP_KINDS

__all__ = ["MODEL_FILE", "OPERAND_BITS", "registered_product", "sim_models",
           "write_sim_models"]

#: Operand width of a MULT18X18D (signed).
OPERAND_BITS = 18


def registered_product(m: Module, a: object, b: object, en: object, *, name: str,
                       dsp: str) -> Value:
    """``a * b`` (exact, Amaranth's product shape) two enabled clock edges later.

    With ``dsp="ecp5"`` both operands must fit an 18-bit signed operand (signed up to 18
    bits, unsigned up to 17).
    """
    a, b = Value.cast(a), Value.cast(b)
    if dsp not in DSP_KINDS:
        raise ValueError(f"DSP kind must be one of {', '.join(DSP_KINDS)}, not {dsp!r}")
    if dsp == "inferred":
        from hwq.rtl.pe import register  # pe imports this module

        ra = register(m, a, en, f"{name}_a")
        rb = register(m, b, en, f"{name}_b")
        return register(m, ra * rb, en, name)
    for label, v in (("a", a), ("b", b)):
        need = v.shape().width + (0 if v.shape().signed else 1)
        if need > OPERAND_BITS:
            raise ValueError(f"Multiplier operand {label} of {name!r} ({v.shape()}) does not "
                             f"fit a {OPERAND_BITS}-bit signed MULT18X18D operand")
    shape = (a * b).shape()
    sa = Signal(signed(OPERAND_BITS), name=f"{name}_a18")
    sb = Signal(signed(OPERAND_BITS), name=f"{name}_b18")
    p = Signal(signed(2 * OPERAND_BITS), name=f"{name}_p36")
    m.d.comb += [sa.eq(a), sb.eq(b)]
    ports = {f"i_A{i}": sa[i] for i in range(OPERAND_BITS)}
    ports |= {f"i_B{i}": sb[i] for i in range(OPERAND_BITS)}
    ports |= {f"i_C{i}": Const(0, 1) for i in range(OPERAND_BITS)}
    ports |= {f"o_P{i}": p[i] for i in range(2 * OPERAND_BITS)}
    regs = {}
    for reg in ("INPUTA", "INPUTB", "OUTPUT"):
        regs |= {f"p_REG_{reg}_CLK": "CLK0", f"p_REG_{reg}_CE": "CE0",
                 f"p_REG_{reg}_RST": "RST0"}
    m.submodules[name] = Instance(
        "MULT18X18D", **regs, p_REG_PIPELINE_CLK="NONE", p_REG_INPUTC_CLK="NONE",
        p_GSR="DISABLED", p_RESETMODE="SYNC", p_MULT_BYPASS="DISABLED",
        i_CLK0=ClockSignal("sync"), i_CE0=en, i_RST0=ResetSignal("sync"),
        i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1), i_SOURCEA=Const(0, 1),
        i_SOURCEB=Const(0, 1), **ports)
    product = Signal(shape, name=name)
    m.d.comb += product.eq(p[:shape.width])
    return product


#: File name of the behavioural model :func:`sim_models` returns.
MODEL_FILE = "MULT18X18D.v"


def _model_text() -> str:
    n = OPERAND_BITS
    a_ports = ", ".join(f"A{i}" for i in range(n))
    b_ports = ", ".join(f"B{i}" for i in range(n))
    c_ports = ", ".join(f"C{i}" for i in range(n))
    p_ports = ", ".join(f"P{i}" for i in range(2 * n))
    a_cat = ", ".join(f"A{i}" for i in reversed(range(n)))
    b_cat = ", ".join(f"B{i}" for i in reversed(range(n)))
    p_assign = "\n".join(f"  assign P{i} = p[{i}];" for i in range(2 * n))
    return f"""\
// Behavioural model of the ECP5 MULT18X18D multiplier block, for simulation and lint only
// (hwq.rtl.dsp; synthesis uses the real block). It covers what hwq instantiates: the A, B
// and output registers each either bypassed ("NONE") or on CLK0 with enable CE0 and
// synchronous reset RST0; SIGNEDA/SIGNEDB select signed operands; no pipeline register,
// no shift/cascade paths (SOURCEA/SOURCEB must be 0). Any other setting stops the
// simulation at time 0.
/* verilator lint_off UNUSEDSIGNAL */
/* verilator lint_off UNUSEDPARAM */
module MULT18X18D #(
  parameter REG_INPUTA_CLK = "NONE", parameter REG_INPUTA_CE = "CE0",
  parameter REG_INPUTA_RST = "RST0",
  parameter REG_INPUTB_CLK = "NONE", parameter REG_INPUTB_CE = "CE0",
  parameter REG_INPUTB_RST = "RST0",
  parameter REG_INPUTC_CLK = "NONE",
  parameter REG_PIPELINE_CLK = "NONE",
  parameter REG_OUTPUT_CLK = "NONE", parameter REG_OUTPUT_CE = "CE0",
  parameter REG_OUTPUT_RST = "RST0",
  parameter GSR = "ENABLED", parameter RESETMODE = "SYNC",
  parameter MULT_BYPASS = "DISABLED"
) (
  input {a_ports},
  input {b_ports},
  input {c_ports},
  input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0,
  output {p_ports}
);
  localparam REG_A = REG_INPUTA_CLK == "CLK0";
  localparam REG_B = REG_INPUTB_CLK == "CLK0";
  localparam REG_P = REG_OUTPUT_CLK == "CLK0";
  localparam OK_A = REG_INPUTA_CLK == "NONE"
                   || (REG_A && REG_INPUTA_CE == "CE0" && REG_INPUTA_RST == "RST0");
  localparam OK_B = REG_INPUTB_CLK == "NONE"
                   || (REG_B && REG_INPUTB_CE == "CE0" && REG_INPUTB_RST == "RST0");
  localparam OK_P = REG_OUTPUT_CLK == "NONE"
                   || (REG_P && REG_OUTPUT_CE == "CE0" && REG_OUTPUT_RST == "RST0");
  initial begin
    if (!OK_A || !OK_B || !OK_P || REG_PIPELINE_CLK != "NONE" || RESETMODE != "SYNC"
        || MULT_BYPASS != "DISABLED")
      $fatal(1, "MULT18X18D model (hwq): unsupported parameter setting");
  end
  wire [17:0] a_in = {{{a_cat}}};
  wire [17:0] b_in = {{{b_cat}}};
  reg [17:0] a_q, b_q;
  reg sa_q, sb_q;
  reg [35:0] p_q;
  initial begin  // power-on state: all registers 0
    a_q = 18'd0; b_q = 18'd0; sa_q = 1'b0; sb_q = 1'b0; p_q = 36'd0;
  end
  always @(posedge CLK0) begin
    if (RST0) begin
      a_q <= 18'd0; b_q <= 18'd0; sa_q <= 1'b0; sb_q <= 1'b0;
    end else if (CE0) begin
      a_q <= a_in; b_q <= b_in; sa_q <= SIGNEDA; sb_q <= SIGNEDB;
    end
  end
  wire [17:0] a_op = REG_A ? a_q : a_in;
  wire [17:0] b_op = REG_B ? b_q : b_in;
  wire a_signed = REG_A ? sa_q : SIGNEDA;
  wire b_signed = REG_B ? sb_q : SIGNEDB;
  wire signed [36:0] a_ext = {{{{19{{a_signed & a_op[17]}}}}, a_op}};
  wire signed [36:0] b_ext = {{{{19{{b_signed & b_op[17]}}}}, b_op}};
  wire signed [73:0] full = a_ext * b_ext;
  wire [35:0] product = full[35:0];
  always @(posedge CLK0) begin
    if (RST0) p_q <= 36'd0;
    else if (CE0) p_q <= product;
  end
  wire [35:0] p = REG_P ? p_q : product;
{p_assign}
  always @(posedge CLK0) begin
    if (SOURCEA || SOURCEB) $fatal(1, "MULT18X18D model (hwq): SOURCEA/SOURCEB must be 0");
  end
endmodule
"""


def sim_models(verilog: str) -> dict[str, str]:
    """Model files (name -> text) a simulator or linter needs besides ``verilog``.

    ``{MODEL_FILE: ...}`` when the design instantiates MULT18X18D (``dsp="ecp5"``), else empty.
    """
    return {MODEL_FILE: _model_text()} if "MULT18X18D" in verilog else {}


def write_sim_models(verilog: str, folder: str | os.PathLike[str]) -> list[Path]:
    """Write :func:`sim_models` of ``verilog`` into ``folder``; returns their paths."""
    paths = []
    for name, text in sim_models(verilog).items():
        path = Path(folder) / name
        path.write_text(text)
        paths.append(path)
    return paths
