"""Transforms of Transform Quantization (TQ): ELT, KLT, identity, and their coding gains.

A layer's weights are viewed as vectors along one *mixing axis* (Young et al., TPAMI 2021):

``row`` variant
    the input-channel axis: each (output channel, kernel tap) gives one row vector
    ``theta`` of length ``m = C_in``; the transform ``U`` (``m x m``) makes the coefficients
    ``t = theta U``, i.e. ``T = Theta U`` and ``Theta = T U^-1``.
``column`` variant
    the output-channel axis: vectors of length ``n = C_out``, ``T = U^T Theta``.

:func:`as_vectors` reshapes a weight tensor to ``(vectors, length)`` for either variant.
With ``X`` those vectors (weights) and ``G`` the matching gradients:

* weight covariance ``C_tt = X^T X / rows`` (not mean-removed, as in the paper);
* gradient covariance ``C_gg = E[G^T G] / rows`` (estimated in :mod:`hwq.quant.tq`).

Coefficient ``k`` of ``t = theta U`` has weight variance ``[U^T C_tt U]_kk`` and, since
``dy/dt = U^-1 dy/dtheta``, gradient variance ``[U^-1 C_gg U^-T]_kk``. At high rate the
output distortion of quantizing the coefficients at an average ``R`` bits with the optimal
allocation is proportional to ``(prod_k [U^T C_tt U]_kk [U^-1 C_gg U^-T]_kk)^(1/m) 2^(-2R)``,
hence the **coding gain** (:func:`coding_gain_db`)::

    G = 10 log10( GM(diag C_tt) / GM(diag U^T C_tt U) )            (weight term)
      + 10 log10( GM(diag C_gg) / GM(diag U^-1 C_gg U^-T) )        (gradient term)

(``GM`` the geometric mean), ``G / 6.02`` bits per weight saved. By Hadamard's inequality
the product of the diagonals is at least ``det(C_tt) det(C_gg)``, which the ELT reaches: the
ELT maximizes ``G``. The split into the two terms depends on how the columns of ``U`` are
scaled; the total does not.

Transforms (:func:`transform`), columns sorted by decreasing ``lambda``:

* ``elt`` -- generalized eigenvectors, ``U^T C_tt U = Lambda`` and ``U^T C_gg^-1 U = I``:
  ``C_gg + eps I = L L^T`` (Cholesky), ``L^T C_tt L = Q Lambda Q^T``, ``U = L Q``,
  ``U^-1 = Q^T L^-1``. The coefficients' gradient covariance is then exactly ``I``.
* ``klt`` -- eigenvectors of ``C_tt`` (orthonormal, ``U^-1 = U^T``).
* ``identity`` -- ``U = I``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "TRANSFORMS",
    "VARIANTS",
    "Transform",
    "as_vectors",
    "check_transform",
    "check_variant",
    "coding_gain_db",
    "covariance",
    "damp",
    "elt",
    "identity",
    "klt",
    "transform",
]

#: Transforms of :func:`transform`.
TRANSFORMS = ("elt", "klt", "identity")
#: Mixing axes: ``row`` (input channels, the paper's headline) or ``column`` (output channels).
VARIANTS = ("row", "column")


def check_transform(name: object) -> str:
    """``name`` if it is a TQ transform, else ``ValueError``.

    >>> check_transform("klt")
    'klt'
    """
    if not isinstance(name, str) or name not in TRANSFORMS:
        raise ValueError(f"TQ transform must be one of {', '.join(TRANSFORMS)}, not {name!r}")
    return name


def check_variant(name: object) -> str:
    """``name`` if it is a TQ variant, else ``ValueError``."""
    if not isinstance(name, str) or name not in VARIANTS:
        raise ValueError(f"TQ variant must be one of {', '.join(VARIANTS)}, not {name!r}")
    return name


@dataclass(frozen=True, eq=False)
class Transform:
    """An invertible transform of one layer's mixing axis.

    Attributes
    ----------
    name : {"elt", "klt", "identity"}
    U : float64 array (m, m)
        the analysis transform: coefficients ``t = theta U``.
    U_inv : float64 array (m, m)
        its inverse: ``theta = t U_inv``.
    values : float64 array (m,)
        ``lambda_k``: the generalized eigenvalues (ELT) or the eigenvalues of ``C_tt``
        (KLT), decreasing; ``diag C_tt`` for the identity (natural channel order).
    """

    name: str
    U: np.ndarray
    U_inv: np.ndarray
    values: np.ndarray

    @property
    def size(self) -> int:
        return int(self.U.shape[0])


def as_vectors(w: np.ndarray | torch.Tensor, variant: str) -> np.ndarray:
    """A conv ``(C_out, C_in, k, k)`` or linear ``(C_out, K)`` weight as ``(rows, m)`` float64.

    ``row``: ``m = C_in``, one row per (output channel, kernel tap); ``column``:
    ``m = C_out``, one row per (input channel, kernel tap).

    >>> w = np.arange(8.0).reshape(2, 2, 1, 2)
    >>> as_vectors(w, "row").tolist()
    [[0.0, 2.0], [1.0, 3.0], [4.0, 6.0], [5.0, 7.0]]
    >>> as_vectors(w, "column").shape
    (4, 2)
    """
    check_variant(variant)
    a = w.detach().double().numpy() if isinstance(w, torch.Tensor) else np.asarray(w, np.float64)
    if a.ndim == 2:
        a = a[:, :, None, None]
    if a.ndim != 4:
        raise ValueError(f"Weights must be (C_out, K) or (C_out, C_in, k, k), not {a.shape}")
    axes = (0, 2, 3, 1) if variant == "row" else (1, 2, 3, 0)
    a = a.transpose(axes)
    return a.reshape(-1, a.shape[-1])


def covariance(vectors: np.ndarray) -> np.ndarray:
    """``X^T X / rows`` of ``(rows, m)`` vectors (second moment, not mean-removed).

    >>> covariance(np.array([[1.0, 0.0], [1.0, 2.0]])).tolist()
    [[1.0, 1.0], [1.0, 2.0]]
    """
    x = np.asarray(vectors, dtype=np.float64)
    return x.T @ x / x.shape[0]


def damp(c_gg: np.ndarray, damping: float) -> np.ndarray:
    """``C_gg + eps I`` with ``eps = damping * trace(C_gg) / m`` (``damping >= 0``).

    A dead input channel (e.g. a ReLU output that is always 0) has an all-zero row and
    column in ``C_gg``; the damping makes the matrix positive definite so that the
    Cholesky factor of the ELT exists. With an all-zero ``C_gg`` the identity is returned.
    """
    if not (isinstance(damping, int | float) and not isinstance(damping, bool)
            and np.isfinite(damping) and damping >= 0):
        raise ValueError(f"TQ damping must be a finite number >= 0, not {damping!r}")
    c = np.asarray(c_gg, dtype=np.float64)
    c = (c + c.T) / 2
    scale = float(np.trace(c)) / c.shape[0]
    if scale <= 0:
        return np.eye(c.shape[0])
    return c + damping * scale * np.eye(c.shape[0])


def _sym(a: np.ndarray) -> np.ndarray:
    return (a + a.T) / 2


def elt(c_tt: np.ndarray, c_gg: np.ndarray) -> Transform:
    """The ELT of ``C_tt`` against an (already damped) positive definite ``C_gg``.

    ``C_gg = L L^T``, ``L^T C_tt L = Q Lambda Q^T`` (``Lambda`` decreasing), ``U = L Q``;
    then ``U^T C_tt U = Lambda`` and ``U^T C_gg^-1 U = I``.
    """
    c_tt, c_gg = _sym(np.asarray(c_tt, np.float64)), _sym(np.asarray(c_gg, np.float64))
    try:
        L = np.linalg.cholesky(c_gg)
    except np.linalg.LinAlgError:
        raise ValueError("ELT needs a positive definite gradient covariance; increase the "
                         "damping") from None
    lam, Q = np.linalg.eigh(_sym(L.T @ c_tt @ L))
    order = np.argsort(-lam, kind="stable")
    lam, Q = lam[order], Q[:, order]
    U = L @ Q
    U_inv = Q.T @ np.linalg.inv(L)
    return Transform("elt", U, U_inv, lam)


def klt(c_tt: np.ndarray) -> Transform:
    """The KLT: orthonormal eigenvectors of ``C_tt``, eigenvalues decreasing."""
    lam, Q = np.linalg.eigh(_sym(np.asarray(c_tt, np.float64)))
    order = np.argsort(-lam, kind="stable")
    lam, Q = lam[order], Q[:, order]
    return Transform("klt", Q, Q.T.copy(), lam)


def identity(c_tt: np.ndarray) -> Transform:
    """``U = I`` (channels in their natural order); ``values = diag C_tt``."""
    m = np.asarray(c_tt).shape[0]
    return Transform("identity", np.eye(m), np.eye(m), np.diag(c_tt).astype(np.float64))


def transform(name: str, c_tt: np.ndarray, c_gg: np.ndarray) -> Transform:
    """The transform ``name`` (:data:`TRANSFORMS`) of a layer; ``c_gg`` already damped."""
    check_transform(name)
    if name == "elt":
        return elt(c_tt, c_gg)
    if name == "klt":
        return klt(c_tt)
    return identity(c_tt)


def _log_gm(d: np.ndarray, floor: float) -> float:
    return float(np.mean(np.log(np.maximum(d, floor))))


def coding_gain_db(c_tt: np.ndarray, c_gg: np.ndarray, U: np.ndarray,
                   U_inv: np.ndarray | None = None) -> tuple[float, float, float]:
    """Coding gain of ``U`` in dB: ``(total, weight term, gradient term)``.

    ``weight = 10 log10(GM(diag C_tt) / GM(diag U^T C_tt U))``,
    ``gradient = 10 log10(GM(diag C_gg) / GM(diag U^-1 C_gg U^-T))``, ``total`` their sum
    (see the module docstring). Diagonal entries are floored at ``1e-12`` times the largest
    one of their matrix (a channel of all-zero weights would make the gain infinite).

    >>> c = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> total, weight, grad = coding_gain_db(c, np.eye(2), klt(c).U)
    >>> round(total, 4), round(weight, 4), abs(round(grad, 4))   # 10 log10(2 / sqrt(3))
    (0.6247, 0.6247, 0.0)
    """
    U = np.asarray(U, np.float64)
    U_inv = np.linalg.inv(U) if U_inv is None else np.asarray(U_inv, np.float64)
    terms = []
    for before, after in ((np.diag(c_tt), np.diag(U.T @ c_tt @ U)),
                          (np.diag(c_gg), np.diag(U_inv @ c_gg @ U_inv.T))):
        floor = 1e-12 * max(float(before.max()), float(after.max()), 1e-300)
        terms.append(10 / np.log(10) * (_log_gm(before, floor) - _log_gm(after, floor)))
    return float(terms[0] + terms[1]), float(terms[0]), float(terms[1])
