"""Naive pure-Python integer references: loops over Python ints, no NumPy arithmetic.

Slow and obviously correct; the golden model is checked against these.
"""

from __future__ import annotations


def linear(x: list[list[int]], w: list[list[int]]) -> list[list[int]]:
    return [[sum(xi * wi for xi, wi in zip(row, wc, strict=True)) for wc in w] for row in x]


def conv2d(x, w, stride: int, padding: int):
    """x[n][c][h][w], w[o][c][u][v] as nested lists of ints."""
    n_, c_in, h, wd = len(x), len(x[0]), len(x[0][0]), len(x[0][0][0])
    c_out, k = len(w), len(w[0][0])
    ho = (h + 2 * padding - k) // stride + 1
    wo = (wd + 2 * padding - k) // stride + 1
    out = []
    for n in range(n_):
        out_n = []
        for o in range(c_out):
            plane = []
            for i in range(ho):
                row = []
                for j in range(wo):
                    acc = 0
                    for c in range(c_in):
                        for u in range(k):
                            for v in range(k):
                                hh = i * stride + u - padding
                                ww = j * stride + v - padding
                                if 0 <= hh < h and 0 <= ww < wd:
                                    acc += x[n][c][hh][ww] * w[o][c][u][v]
                    row.append(acc)
                plane.append(row)
            out_n.append(plane)
        out.append(out_n)
    return out


def maxpool2d(x):
    return [
        [
            [
                [max(p[2 * i][2 * j], p[2 * i][2 * j + 1], p[2 * i + 1][2 * j], p[2 * i + 1][2 * j + 1])
                 for j in range(len(p[0]) // 2)]
                for i in range(len(p) // 2)
            ]
            for p in xn
        ]
        for xn in x
    ]


def int_value(code: int, bits: int) -> int:
    """Two's complement code -> value."""
    return code - (1 << bits) if code >= 1 << (bits - 1) else code


def pot_value(code: int, bits: int) -> int:
    k = code & ((1 << (bits - 1)) - 1)
    sign = -1 if code >> (bits - 1) else 1
    return 0 if k == 0 else sign * (1 << (k - 1))
