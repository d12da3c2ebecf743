"""``joint``: sparsity and quantization learned together under a model-size budget.

Yang, Gui, Zhu, Liu, CVPR 2020, "Automatic neural network compression by sparsity-quantization
joint learning: a constrained optimization-based approach". The problem is

.. math::

    \\min_W f(W) \\quad \\text{s.t.} \\quad \\operatorname{size}(W) \\le S,

where every Conv2d/Linear layer ``l`` keeps ``nnz_l`` nonzero weights, each one of ``2**b_l``
learned levels (a per-layer 1-D k-means codebook) or an exact zero. The paper's size is
``sum_l b_l * nnz_l``; here ``size`` is **every stored bit** of the sparse encoding below
(values, positions, codebooks and per-layer headers), so a budget of ``32 * N / C`` bits is a
compression ratio ``C`` against fp32 weights that nobody has to take on trust.

ADMM on the split ``W`` (trained, dense) / ``V`` (in the constraint set), scaled dual ``Y``:

1. SGD on ``f`` with, after every optimizer step at learning rate ``eta``, the proximal step of
   ``rho/2 * ||W - V + Y||^2``: ``W <- (W + eta*rho*(V - Y)) / (1 + eta*rho)``;
2. once per epoch ``V <- Proj(W + Y)``, alternating (``proj_rounds`` times, starting from the
   previous bit widths, at first ``init_bits`` in every layer) two projections:

   * sparse (bits fixed), a 0-1 knapsack: score every weight by ``w**2 / c_l`` with
     ``c_l = b_l + m_l`` the marginal stored bits of one more nonzero of layer ``l``: its
     value code plus the marginal cost ``m_l`` of the layer's shortest position code at the
     network's current density (:func:`hwq.quant.joint.stream.position_marginal`; the paper's
     ``c_l = b_l``), keep the longest prefix of the descending order whose cost fits the
     budget left after headers, codebooks and the position codes' intercepts; then the exact
     size is brought to the budget, dropping the lowest-scored survivors or adding the next
     ones. Every plan keeps a **live path**, one weight per layer reading the output channel
     of the previous layer's (:meth:`~hwq.quant.joint.projection._Projector.chain`), so no
     layer is ever empty or cut off; a budget that cannot hold it is refused before training
     with the minimum in bits and as a ratio
     (:func:`~hwq.quant.joint.projection.minimum_budget`). In a chain of layers no weight
     reading a channel that the previous layer left empty (a constant) is kept
     (``prune_dead_inputs``);
   * bit widths (nonzeros fixed), a multiple-choice knapsack (:func:`choose_bits`): for each
     layer and ``b`` in ``b_min..b_max`` a k-means of the nonzeros of ``W + Y`` into ``2**b``
     centroids plus a fixed exact 0 (:func:`kmeans_zero`, <= 100 Lloyd iterations) gives the
     distortion ``d_l(b) = sum (x - Q_b(x))**2``; one ``b_l`` per layer minimizes
     ``sum_l d_l(b_l)`` subject to ``sum_l (b_l * nnz_l + 8 * min(2**b_l, nnz_l)) <= S -
     position bits - headers``;

   then one more sparse step at the chosen widths fills the budget they left, and
   ``V = Q_b(W + Y)`` with a final k-means per layer;
3. ``Y <- Y + W - V``.

The alternation is a block-coordinate descent: it settles near its starting widths (the
bit step cannot buy nonzeros, the sparse step cannot buy bits), so ``init_bits`` matters as the
official code's ``--bit_budget`` does. With ``snap_to_zero=False`` (the default) k-means gives
every kept weight one of the ``2**b`` nonzero levels (the zero is the mask's); with ``True``,
the paper's quantizer, kept weights nearer to 0 than to any level are zeroed too, which
leaves part of the budget unused (measured on digits at 50x: 61x achieved).

Options beyond the paper (the paper's behaviour is ``saliency="magnitude", distill=0,
anneal_epochs=0``): ``saliency`` scores the sparse projection by a layer-normalized or
Fisher-weighted ``w**2``; ``distill`` (default 0.9) trains both phases against the float
model's soft targets (Hinton et al. 2015) besides the labels; ``anneal_epochs`` (default
half the ADMM epochs) projects onto a budget that starts ``anneal_from`` (10) times larger
and falls geometrically to the target, where the paper projects onto the target from the
first epoch (METHODS.md leaves the schedule open). On LeNet-5 at 1000x it is the difference
between 1.2 points under fp32 and none.

Then masks and bit widths are fixed and ``W`` is fine-tuned through the k-means quantizer
with a straight-through estimator (forward ``Q(W * mask)``, identity gradient on the kept
weights; after every step ``W <- W * mask`` and one Lloyd update of the centroids).

Sparse weight stream and size accounting (:func:`sparse_size`)
--------------------------------------------------------------
The size is the exact length of the sparse weight stream (:mod:`hwq.quant.joint.stream`):
per layer, in PyTorch's row-major order, a header (``nnz``; the position code and its
parameter, the table length and entry width), the table of distinct nonzero integers, the
positions (Golomb-Rice of the zero runs, Elias-Fano, or the relative index with escapes,
whichever is shortest for the layer, its parameter chosen per layer) and a
``ceil(log2 levels)``-bit table index per nonzero. Golomb-Rice with ``k`` is never longer
than Elias-Fano with ``L = k``, so Elias-Fano is taken on ties only. The paper does not count
codebooks, positions or headers; we do. :mod:`hwq.quant.joint.compressed` writes a network
with its weights as this stream and reads it back bit for bit. After training, a layer whose
output is the same for every training image (a dead ReLU path) is an error, never a result.

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
