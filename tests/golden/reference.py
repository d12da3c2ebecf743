"""Naive pure-Python integer references: loops over Python ints, no NumPy arithmetic.

Slow and obviously correct; the golden model is checked against these.
"""

from __future__ import annotations


def linear(x: list[list[int]], w: list[list[int]]) -> list[list[int]]:
    return [[sum(xi * wi for xi, wi in zip(row, wc, strict=True)) for wc in w] for row in x]


def _pair(v):
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def _sides(padding):
    """int, (h, w) or (top, bottom, left, right) -> (top, bottom, left, right)."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    return tuple(padding)


def _dims(x):
    return len(x), len(x[0]), len(x[0][0]), len(x[0][0][0])


def conv2d(x, w, stride, padding, dilation=1, groups=1):
    """x[n][c][h][w], w[o][c][u][v] as nested lists of ints; PyTorch's conv2d without bias.

    stride, dilation: int or (h, w); padding: int, (h, w) or (top, bottom, left, right).
    """
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    top, bottom, left, right = _sides(padding)
    n_, c_in, h, wd = _dims(x)
    c_out, cg, kh, kw = _dims(w)
    og = c_out // groups
    ho = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + left + right - dw * (kw - 1) - 1) // sw + 1
    out = []
    for n in range(n_):
        out_n = []
        for o in range(c_out):
            g = o // og
            plane = []
            for i in range(ho):
                row = []
                for j in range(wo):
                    acc = 0
                    for c in range(cg):
                        for u in range(kh):
                            for v in range(kw):
                                hh = i * sh + u * dh - top
                                ww = j * sw + v * dw - left
                                if 0 <= hh < h and 0 <= ww < wd:
                                    acc += x[n][g * cg + c][hh][ww] * w[o][c][u][v]
                    row.append(acc)
                plane.append(row)
            out_n.append(plane)
        out.append(out_n)
    return out


def _windows(x, kernel, stride, padding):
    """For each output position, the list of input values its window covers (padding left out)."""
    kh, kw = _pair(kernel)
    sh, sw = _pair(kernel if stride is None else stride)
    top, bottom, left, right = _sides(padding)
    n_, c_, h, wd = _dims(x)
    ho = (h + top + bottom - kh) // sh + 1
    wo = (wd + left + right - kw) // sw + 1
    return [[[[[x[n][c][i * sh + u - top][j * sw + v - left]
                for u in range(kh) for v in range(kw)
                if 0 <= i * sh + u - top < h and 0 <= j * sw + v - left < wd]
               for j in range(wo)] for i in range(ho)] for c in range(c_)] for n in range(n_)]


def _map_windows(f, windows):
    return [[[[f(win) for win in row] for row in plane] for plane in xn] for xn in windows]


def maxpool2d(x, kernel=2, stride=None, padding=0):
    """Max over each window's input values (padding never wins); stride defaults to kernel."""
    return _map_windows(max, _windows(x, kernel, stride, padding))


def avgpool2d_sum(x, kernel, stride=None, padding=0):
    """Sum over each window, zero padding (the padded positions add nothing)."""
    return _map_windows(sum, _windows(x, kernel, stride, padding))


def global_avgpool_sum(x):
    return [[[[sum(v for row in plane for v in row)]] for plane in xn] for xn in x]


def add(a: int, b: int, ma: int, mb: int, s: int, lo: int, hi: int) -> int:
    """The residual add on one element, Python integers (``>>`` floors)."""
    return min(max((a * ma + b * mb + (1 << (s - 1))) >> s, lo), hi)


def add_multipliers(scale_a: float, scale_b: float, scale_out: float):
    """(ma, mb, s): s the largest shift in 1..62 with round(max ratio * 2**s) < 2**24."""
    ra, rb = scale_a / scale_out, scale_b / scale_out
    s = 62
    while s > 1 and round(max(ra, rb) * 2**s) >= 1 << 24:
        s -= 1
    return round(ra * 2**s), round(rb * 2**s), s


def int_value(code: int, bits: int) -> int:
    """Two's complement code -> value."""
    return code - (1 << bits) if code >= 1 << (bits - 1) else code


def pot_value(code: int, bits: int) -> int:
    k = code & ((1 << (bits - 1)) - 1)
    sign = -1 if code >> (bits - 1) else 1
    return 0 if k == 0 else sign * (1 << (k - 1))
