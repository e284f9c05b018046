"""Per-epoch metrics as pure functions of arrays (one run; vmapped by the caller).

Definitions follow the PyTorch study (see the README): the W1 metrics use fc1's
weight, a neuron is one row of PyTorch's ``fc1.weight`` (a column of the Flax kernel).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

# Epochs of fc1 gradients kept for grad_cosine_sim, as in the study.
GRAD_HISTORY = 5

# Floor for norms in cosines (torch.nn.functional.cosine_similarity's eps) and for the
# singular-value sum in feature_diversity: a zero vector, such as the gradient row of a
# dead ReLU neuron, has cosine 0 with everything.
NORM_FLOOR = 1e-8


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def cross_entropy_log1p(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy as log1p(sum over j != y of exp(z_j - z_y)), shifted
    by the largest z_j - z_y when that is positive so that nothing overflows. The usual form,
    logsumexp(z) - z_y, rounds a loss below float32's epsilon (about 6e-8) to exactly 0, and
    with it the gradient on the correct logit; this form keeps both to float32's relative
    precision, as Nanda et al.'s float64 loss does."""
    label_logit = jnp.take_along_axis(logits, labels[..., None], axis=-1)
    others = logits - label_logit  # z_j - z_y; 0 at the label
    shift = jnp.max(others, axis=-1)  # >= 0
    is_label = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
    rest = jnp.sum(jnp.where(is_label, 0.0, jnp.exp(others - shift[..., None])), axis=-1)
    # exp(-shift) + rest = 1 + (expm1(-shift) + rest): exact log1p(rest) when the label leads
    return shift + jnp.log1p(jnp.expm1(-shift) + rest)


def stablemax(x: jax.Array) -> jax.Array:
    """Prieto et al.'s replacement for exp: x + 1 for x >= 0, 1 / (1 - x) for x < 0. Each
    branch sees only the x where it applies (so neither sends an infinite gradient), through
    a ``where`` rather than a max or min, whose gradient at the tie x = 0 would be halved;
    the slope is 1 there from both sides."""
    positive = x >= 0
    return jnp.where(positive, jnp.where(positive, x, 0) + 1, 1 / (1 - jnp.where(positive, 0, x)))


def stablemax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example cross-entropy of StableMax, s(z) / sum s(z), at the label: the log of the
    sum minus the log of the label's term (no shift: s grows only linearly)."""
    s = stablemax(logits)
    return jnp.log(jnp.sum(s, axis=-1)) - jnp.log(jnp.take_along_axis(s, labels[..., None], axis=-1)[..., 0])


def softmax_collapsed(logits: jax.Array) -> jax.Array:
    """Per-example 1.0 where the softmax has collapsed in the logits' precision: every term
    exp(z_j - max z) but the largest rounds away, so their sum is exactly 1 and the
    softmax of the leading class exactly 1 (Prieto et al.'s measure)."""
    return (jnp.sum(jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True)), axis=-1) == 1).astype(logits.dtype)


def naive_loss_alignment(grads, params) -> jax.Array:
    """Cosine between the parameters and minus the loss gradient, over every parameter:
    1 when gradient descent would only scale the weights up (Prieto et al.'s naive loss
    minimisation direction), 0 when it is orthogonal to them."""
    def total(x, y):  # summed leaf by leaf: no concatenated copy of the parameters
        return sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))

    norms = jnp.sqrt(total(grads, grads)) * jnp.sqrt(total(params, params))
    return -total(grads, params) / jnp.maximum(norms, NORM_FLOOR**2)


def centred_mse(outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example squared error of the class-centred outputs against the centred one-hot
    target (one-hot - 1/m), summed over the m classes. (The sum, not the mean over classes:
    with coupled weight decay the loss scale sets the balance against the decay, so the
    choice changes when a run groks; results/li2-preset was made with the sum.)"""
    return jnp.sum(jnp.square(output_residual("mse", outputs, labels)), axis=-1)


LOSSES = {"ce": cross_entropy, "ce_log1p": cross_entropy_log1p, "stablemax": stablemax_cross_entropy, "mse": centred_mse}


def per_example_loss(kind: str, outputs: jax.Array, labels: jax.Array, dtype=None) -> jax.Array:
    """The training loss of each example, computed in ``dtype`` (default: the outputs'):
    ``ce`` (cross-entropy), ``ce_log1p`` (the same, kept precise when tiny), ``stablemax``
    (StableMax cross-entropy) or ``mse`` (centred MSE)."""
    return LOSSES[kind](outputs if dtype is None else outputs.astype(dtype), labels)


def output_residual(kind: str, outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """What the outputs miss, per example and class: target - prediction. For ``mse`` the
    centred one-hot minus the centred outputs; for ``ce`` one-hot minus softmax; for
    ``stablemax`` minus the gradient of its loss. Either way it is minus the gradient of the
    per-example loss (for mse: of half of it) with respect to the outputs."""
    target = jax.nn.one_hot(labels, outputs.shape[-1], dtype=outputs.dtype)
    if kind == "stablemax":
        return -jax.grad(lambda z: jnp.sum(stablemax_cross_entropy(z, labels)))(outputs)
    if kind != "mse":
        return target - jax.nn.softmax(outputs, axis=-1)
    centred = lambda x: x - jnp.mean(x, axis=-1, keepdims=True)  # noqa: E731
    return centred(target) - centred(outputs)


def backprop_signal_norm(kind: str, outputs: jax.Array, labels: jax.Array, v: jax.Array, weights: jax.Array) -> jax.Array:
    """Frobenius norm of G_F = residual @ V^T over the examples with weight 1: the signal the
    output layer V [h, m] sends back to the hidden features (Li2's G_F = (Y - FV)V^T)."""
    return frobenius_norm(weights[:, None] * (output_residual(kind, outputs, labels) @ v.T))


def weight_share(kernel: jax.Array, rows: jax.Array) -> jax.Array:
    """The share of ``kernel``'s squared norm ([inputs, h]) on the input rows marked 1 in
    ``rows``: for the parity network's first layer and its secret bits, the weight mass on
    the coordinates the label depends on (Barak et al.'s hidden progress), k / n_bits for
    weights spread evenly, 1 when only the secret bits are read."""
    per_row = jnp.sum(jnp.square(kernel), axis=1)
    return jnp.sum(per_row * rows) / jnp.sum(per_row)


def frobenius_norm(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(x)))


def mean_pairwise_cosine(vectors: jax.Array, valid: jax.Array | None = None, absolute: bool = False) -> jax.Array:
    """Mean cosine over distinct pairs i < j of the rows of ``vectors`` [n, d].

    ``valid`` [n] (bool) restricts the pairs to rows that are present; with fewer
    than two valid rows the result is 0. ``absolute`` averages |cos| instead.
    """
    return mean_pairwise_cosine_of_gram(vectors @ vectors.T, valid, absolute)


def mean_pairwise_cosine_of_gram(gram: jax.Array, valid: jax.Array | None = None, absolute: bool = False) -> jax.Array:
    """:func:`mean_pairwise_cosine` of vectors given by their Gram matrix [n, n] of dot products."""
    n = gram.shape[0]
    norms = jnp.maximum(jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0)), NORM_FLOOR)
    cosine = gram / (norms[:, None] * norms[None, :])
    if absolute:
        cosine = jnp.abs(cosine)
    valid = jnp.ones(n, bool) if valid is None else valid
    pair = jnp.triu(jnp.ones((n, n), bool), k=1) & valid[:, None] & valid[None, :]
    count = jnp.sum(pair)
    return jnp.where(count > 0, jnp.sum(jnp.where(pair, cosine, 0.0)) / jnp.maximum(count, 1), 0.0)


def updated_gram(gram: jax.Array, history: jax.Array, new: jax.Array, slot: jax.Array) -> jax.Array:
    """The Gram matrix of the ring buffer ``history`` [k, ...] once ``new`` replaces its entry
    ``slot``: one row of k dot products, not a whole new Gram matrix of k x k."""
    dots = jnp.tensordot(history, new, axes=new.ndim).at[slot].set(jnp.vdot(new, new))
    return gram.at[slot, :].set(dots).at[:, slot].set(dots)


def grad_cosine_sim(grad_gram: jax.Array, n_kept: jax.Array) -> jax.Array:
    """Consistency of fc1's gradient over time: mean pairwise cosine among the kept
    epochs' flattened last-minibatch gradients, from their Gram matrix ``grad_gram``
    [GRAD_HISTORY, GRAD_HISTORY] (the first ``n_kept`` entries filled; see
    :func:`updated_gram`); 0 while fewer than two are kept."""
    return mean_pairwise_cosine_of_gram(grad_gram, valid=jnp.arange(grad_gram.shape[0]) < n_kept)


def neuron_grad_cosine(grad_w1: jax.Array) -> jax.Array:
    """Cross-neuron agreement of fc1's gradient: mean pairwise |cos| between the
    per-neuron gradient rows (columns of the [2h, h] kernel gradient)."""
    return mean_pairwise_cosine(grad_w1.T, absolute=True)


def node_similarity(w1: jax.Array) -> jax.Array:
    """Mean pairwise cosine between the hidden neurons' weight rows of fc1."""
    return mean_pairwise_cosine(w1.T)


def looped_on_cpu(fn: Callable) -> Callable:
    """``fn`` (of arrays), but looped over the batch (``lax.map``) rather than batched when
    it is vmapped on a CPU; batched as usual elsewhere. Results are the same either way.

    Looping serves two cases on a CPU. An evaluation over thousands of examples, looped,
    keeps one run's intermediate arrays in the cache instead of every run's at once. And
    jaxlib's CPU LAPACK kernels split a batch of matrices across XLA's intra-op thread
    pool and wait for the pieces from inside that pool: when several host devices each
    run such a call at once, every pool thread can end up waiting for another, and the
    sweep deadlocks. With one matrix per call nothing is split."""
    looped = jax.custom_batching.custom_vmap(fn)

    @looped.def_vmap
    def loop_over_batch(axis_size, in_batched, *args):
        leaves, tree = jax.tree.flatten(args)
        is_batched = jax.tree.leaves(in_batched)
        if not any(is_batched):
            out = looped(*args)
            return out, jax.tree.map(lambda _: False, out)
        if jax.default_backend() != "cpu":
            out = jax.vmap(fn, in_axes=jax.tree.unflatten(tree, [0 if b else None for b in is_batched]))(*args)
            return out, jax.tree.map(lambda _: True, out)

        def one(batched_leaves):
            batched = iter(batched_leaves)
            return looped(*jax.tree.unflatten(tree, [next(batched) if b else x for x, b in zip(leaves, is_batched)]))

        out = jax.lax.map(one, [x for x, b in zip(leaves, is_batched) if b])
        return out, jax.tree.map(lambda _: True, out)

    return looped


@looped_on_cpu  # one matrix per LAPACK call
def singular_values(matrix: jax.Array) -> jax.Array:
    """Singular values of a [rows, cols] matrix, in no promised order. A tall matrix (full batch:
    thousands of rows) goes through the eigenvalues of its cols x cols Gram matrix, many
    times cheaper than an SVD of the matrix itself."""
    rows, cols = matrix.shape
    if rows > cols:
        return jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(matrix.T @ matrix), 0.0))
    return jnp.linalg.svd(matrix, compute_uv=False)


def feature_diversity(features: jax.Array) -> jax.Array:
    """Entropy of the normalised singular values of a [batch, h] feature matrix:
    p = s / sum(s), -sum p log p (0 log 0 = 0)."""
    values = singular_values(features)
    p = values / jnp.maximum(jnp.sum(values), NORM_FLOOR)
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
