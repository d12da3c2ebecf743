"""The work counts behind hwq flow's MAC-array utilization."""

import numpy as np

import hwq.ir as ir
from hwq.config import CoreConfig
from hwq.sim.flow import _network_ops

CONFIG = CoreConfig(pe="bit_serial", lanes=2, simd=2, weight_bits=8)


def _linear(w):
    c = w.shape[0]
    rq = ir.Requant(bias=np.zeros(c, np.int64), M=np.ones(c, np.int64), S=np.ones(c, np.int64),
                    lo=-128, hi=127)
    return ir.Linear(name="l", weight=w, spec=ir.WeightSpec(kind="int", bits=np.asarray(8)),
                     requant=rq)


def test_counts_nonzero_macs_and_narrowest_code_bits():
    w = np.array([[1, -1, 0, 5, -8, 127]], dtype=np.int64)
    net = ir.QuantizedNetwork(input_shape=(6,), act_bits=8, input_scale=1.0, ops=[_linear(w)])
    # codes: 1 -> 01, -1 -> 1, 5 -> 0101, -8 -> 1000, 127 -> 01111111
    assert _network_ops(net, CONFIG) == (5, 1 + 1 + 2 + 1 + 7)


def test_conv_counts_every_output_position():
    w = np.zeros((2, 1, 3, 3), dtype=np.int64)
    w[0, 0, 1, 1] = 3   # 011: two planes
    w[1, 0, 0, 0] = -2  # 10: one plane
    rq = ir.Requant(bias=np.zeros(2, np.int64), M=np.ones(2, np.int64), S=np.ones(2, np.int64),
                    lo=0, hi=127)
    conv = ir.Conv2d(name="c", weight=w, spec=ir.WeightSpec(kind="int", bits=np.asarray(4)),
                     requant=rq, padding=1)
    net = ir.QuantizedNetwork(input_shape=(1, 5, 5), act_bits=8, input_scale=1.0, ops=[conv])
    assert _network_ops(net, CONFIG) == (25 * 2, 25 * 3)


def test_flow_report_flag_adds_the_hardware_report(monkeypatch, capsys):
    import json

    import hwq.rtl.report as rtl_report
    from hwq.cli import main
    from hwq.sim import flow

    core = {"pe": "shift_add", "lanes": 8, "simd": 8}
    fake = {"ok": True, "core": core, "timings": {}, "mismatches": 0}
    monkeypatch.setattr(flow, "flow", lambda **kw: dict(fake))
    monkeypatch.setattr(flow, "format_report", lambda r: "flow text")
    seen = []
    monkeypatch.setattr(rtl_report, "report", lambda cfg: seen.append(cfg) or {"fmax_mhz": 71.4})
    monkeypatch.setattr(rtl_report, "format_report", lambda r: f"fmax {r['fmax_mhz']}")
    assert main(["flow", "--report", "--json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hardware"] == {"fmax_mhz": 71.4}
    assert [c.pe for c in seen] == ["shift_add"] and seen[0].lanes == 8
