"""Shared helpers of the host tests: small random networks for every PE type and format."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import numpy as np

from hwq.config import CoreConfig
from hwq.layout import Program, compile
from hwq.testing import random_inputs, random_network

#: channels not a multiple of lanes, stride 2, padding, an odd pool, flatten + linear
ARCH = (("conv", 3, 3, 1, 1, True), ("conv", 5, 3, 2, 1, True), ("pool",), ("flatten",),
        ("linear", 3, False))
SMALL = dict(act_depth=256, weight_depth=512, param_depth=16, desc_depth=8)


def case(pe: str, kind: str, *, seed: int = 0, lanes: int = 4, simd: int = 4,
         shape: tuple[int, ...] = (3, 6, 6), arch: tuple = ARCH, n: int = 2,
         **config: Any) -> tuple[Any, Program, np.ndarray]:
    """``(network, program, inputs)`` of a random network with mixed widths, sparse tiles."""
    rng = np.random.default_rng(seed)
    net = random_network(rng, input_shape=shape, arch=arch, kind=kind, bits=[2, 3, 4],
                         per_channel_bits=True, zero_tile_fraction=0.3,
                         zero_tile=(lanes, simd))
    program = compile(net, CoreConfig(pe=pe, lanes=lanes, simd=simd, **config))
    return net, program, random_inputs(rng, net, n)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def unmapped() -> tuple[int, ...]:
    """Word offsets with no register: a hole inside the map, the word past its last
    register and the window's last word."""
    from hwq.layout.regmap import REGISTERS

    offsets = {r.offset for r in REGISTERS}
    hole = next(o for o in range(0, max(offsets), 4) if o not in offsets)
    return hole, max(offsets) + 4, 0xFC


def unmapped_message(offset: int) -> str:
    """The one error every device gives for an access to ``offset`` (unmapped)."""
    from hwq.layout.regmap import REGISTERS

    offsets = sorted(r.offset for r in REGISTERS)
    holes = [o for o in range(0, offsets[-1], 4) if o not in offsets]
    where = f"0x00..{offsets[-1]:#04x}" + (" except " + ", ".join(f"{o:#04x}" for o in holes)
                                            if holes else "")
    return f"Register offset must be a mapped register ({where}), not {offset:#04x} (unmapped)"
