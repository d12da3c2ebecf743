"""``joint``: sparsity and quantization learned together under a model-size budget.

Yang, Gui, Zhu, Liu, CVPR 2020, "Automatic neural network compression by sparsity-quantization
joint learning: a constrained optimization-based approach". The problem is

.. math::

    \\min_W f(W) \\quad \\text{s.t.} \\quad \\operatorname{size}(W) \\le S,

where every Conv2d/Linear layer ``l`` keeps ``nnz_l`` nonzero weights, each one of ``2**b_l``
learned levels (a per-layer 1-D k-means codebook) or an exact zero. The paper's size is
``sum_l b_l * nnz_l``; here ``size`` is **every stored bit** of the sparse encoding below
(values, indices, codebooks and per-layer headers), so a budget of ``32 * N / C`` bits is a
compression ratio ``C`` against fp32 weights that nobody has to take on trust.

ADMM on the split ``W`` (trained, dense) / ``V`` (in the constraint set), scaled dual ``Y``:

1. SGD on ``f`` with, after every optimizer step at learning rate ``eta``, the proximal step of
   ``rho/2 * ||W - V + Y||^2``: ``W <- (W + eta*rho*(V - Y)) / (1 + eta*rho)``;
2. once per epoch ``V <- Proj(W + Y)``, alternating (``proj_rounds`` times, starting from the
   previous bit widths, at first ``init_bits`` in every layer) two projections:

   * sparse (bits fixed), a 0-1 knapsack (:func:`knapsack_masks`): score every weight by
     ``w**2 / c_l`` with ``c_l = b_l + r_l`` the stored bits of one nonzero of layer ``l``
     (value code plus relative index; the paper's ``c_l = b_l``), keep the longest prefix of
     the descending order whose cost fits the budget left after codebooks and headers; then
     the exact size is checked and the lowest-scored survivors dropped until it fits;
   * bit widths (nonzeros fixed), a multiple-choice knapsack (:func:`choose_bits`): for each
     layer and ``b`` in ``b_min..b_max`` a k-means of the nonzeros of ``W + Y`` into ``2**b``
     centroids plus a fixed exact 0 (:func:`kmeans_zero`, <= 100 Lloyd iterations) gives the
     distortion ``d_l(b) = sum (x - Q_b(x))**2``; one ``b_l`` per layer minimizes
     ``sum_l d_l(b_l)`` subject to ``sum_l (b_l * nnz_l + 8 * min(2**b_l, nnz_l)) <= S - index
     bits - headers``;

   then one more sparse step at the chosen widths fills the budget they left, and
   ``V = Q_b(W + Y)`` with a final k-means per layer;
3. ``Y <- Y + W - V``.

The alternation is a block-coordinate descent: it settles near its starting widths (the
bit step cannot buy nonzeros, the sparse step cannot buy bits), so ``init_bits`` matters as the
official code's ``--bit_budget`` does. With ``snap_to_zero=False`` (the default) k-means gives
every kept weight one of the ``2**b`` nonzero levels (the zero is the mask's); with ``True``,
the paper's quantizer, kept weights nearer to 0 than to any level are zeroed too, which
leaves part of the budget unused (measured on digits at 50x: 61x achieved).

Options beyond the paper (the paper's behaviour is ``saliency="magnitude", distill=0``):
``saliency`` scores the sparse projection by a layer-normalized or Fisher-weighted ``w**2``;
``distill`` (default 0.9) trains both phases against the float model's soft targets
(Hinton et al. 2015) besides the labels.

Then masks and bit widths are fixed and ``W`` is fine-tuned through the k-means quantizer
with a straight-through estimator (forward ``Q(W * mask)``, identity gradient on the kept
weights; after every step ``W <- W * mask`` and one Lloyd update of the centroids).

Sparse encoding and size accounting (:func:`sparse_size`)
---------------------------------------------------------
Per layer, weights in PyTorch's row-major order (``(C_out, C_in, k, k)`` or ``(C_out, K)``):

* **values**: each nonzero stores a ``v``-bit index into the layer's table of its ``n``
  distinct nonzero integer levels, ``v = max(1, ceil(log2 n))`` (``<= b_l``); zero is not a
  table entry, the index stream encodes it;
* **relative index** (Deep Compression style, with an escape instead of filler weights): each
  nonzero is preceded by an ``r``-bit field holding its zero run ``z`` (zeros since the
  previous nonzero or the layer start) if ``z < 2**r - 1``; the field value ``2**r - 1`` is an
  escape meaning "``2**r - 1`` zeros, no weight". A run ``z`` costs ``floor(z / (2**r - 1))``
  escapes plus the run field of its weight; trailing zeros cost nothing (the header gives
  ``nnz``). ``r`` in 1..8 is chosen per layer to minimize the index bits
  ``r * (nnz + sum_i floor(z_i / (2**r - 1)))``;
* **table**: ``n`` entries of ``table_bits`` = 8 bits (the paper does not count codebooks; we
  do);
* **header**: ``ceil(log2(numel + 1))`` bits of ``nnz``, 3 bits of ``r - 1``, 8 bits of
  ``n - 1``.

Not counted, as for every hwq method (:class:`hwq.quant.api.QuantizeResult`): the per-layer
weight scale (folded into the requantization multipliers) and the biases (int32 after
integerization; :func:`sparse_size` reports their bits apart, ``bias_bits``, and the ratio
with biases on both sides).

Hardware format
---------------
The integer network stores every layer densely as ``CODEBOOK`` with a table of
``table_bits``-bit integers (``scale = max|centroid| / 127``, ``entry = round(centroid /
scale)``, 0 first, then the nonzero entries by decreasing use), so the IR index width is
``ceil(log2(n + 1))`` (``b_l + 1`` when all ``2**b_l`` levels survive): the sparse encoding
above is the storage/transfer format, the dense CODEBOOK the format the core's memories hold
(the layout compiler skips all-zero weight tiles; the bit-serial PE gets the table's INT
values). :func:`sparse_size` reports both (``total_bits`` and ``dense_ir_bits``).
"""

from hwq.quant.joint.admm import (
    BITS,
    DEFAULT_DISTILL,
    DEFAULT_EPOCHS,
    DEFAULT_FINETUNE_EPOCHS,
    DEFAULT_LR,
    DEFAULT_RHO,
    JointWeights,
    quantize_joint,
)
from hwq.quant.joint.encoding import (
    LayerSize,
    budget_from,
    index_bits,
    layer_size,
    sparse_size,
)
from hwq.quant.joint.kmeans import KMeansResult, kmeans_zero
from hwq.quant.joint.knapsack import (
    SALIENCIES,
    SOLVERS,
    choose_bits,
    knapsack_masks,
    layer_importance,
)

__all__ = [
    "BITS",
    "DEFAULT_DISTILL",
    "DEFAULT_EPOCHS",
    "DEFAULT_FINETUNE_EPOCHS",
    "DEFAULT_LR",
    "DEFAULT_RHO",
    "SALIENCIES",
    "SOLVERS",
    "JointWeights",
    "KMeansResult",
    "LayerSize",
    "budget_from",
    "choose_bits",
    "index_bits",
    "kmeans_zero",
    "knapsack_masks",
    "layer_importance",
    "layer_size",
    "quantize_joint",
    "sparse_size",
]
