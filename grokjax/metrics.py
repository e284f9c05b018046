"""Per-epoch metrics as pure functions of arrays (one run; vmapped by the caller).

Definitions follow the PyTorch study (see the README): the W1 metrics use fc1's
weight, a neuron is one row of PyTorch's ``fc1.weight`` (a column of the Flax kernel).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

# The order in which metrics are stored; every name is a [runs, epochs] array in metrics.npz.
METRIC_NAMES = (
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "w1_norm",
    "w1_delta_norm",
    "grad_norm",
    "grad_cosine_sim",
    "feature_diversity",
    "neuron_grad_cosine",
    "node_similarity",
)

# The metrics of the hidden layer's geometry: by far the costliest to measure, so a sweep
# may measure them only every few epochs (SweepConfig.geometry_every).
GEOMETRY_METRICS = ("grad_cosine_sim", "feature_diversity", "neuron_grad_cosine", "node_similarity")

# Epochs of fc1 gradients kept for grad_cosine_sim, as in the study.
GRAD_HISTORY = 5

# Floor for norms in cosines (torch.nn.functional.cosine_similarity's eps) and for the
# singular-value sum in feature_diversity: a zero vector, such as the gradient row of a
# dead ReLU neuron, has cosine 0 with everything.
NORM_FLOOR = 1e-8


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def centred_mse(outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example squared error of the class-centred outputs against the centred one-hot
    target (one-hot - 1/m), summed over the m classes. (The sum, not the mean over classes:
    with coupled weight decay the loss scale matters, and the sum reproduces the grokking
    epochs measured with the Li2 network before: m 23, 40 % / 60 % train, near 2400 / 950.)"""
    return jnp.sum(jnp.square(output_residual("mse", outputs, labels)), axis=-1)


def per_example_loss(kind: str, outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """The training loss of each example: ``ce`` (cross-entropy) or ``mse`` (centred MSE)."""
    return cross_entropy(outputs, labels) if kind == "ce" else centred_mse(outputs, labels)


def output_residual(kind: str, outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """What the outputs miss, per example and class: target - prediction. For ``mse`` the
    centred one-hot minus the centred outputs; for ``ce`` one-hot minus softmax. Either
    way it is minus the gradient of the per-example loss (for mse: of half of it) with
    respect to the outputs."""
    target = jax.nn.one_hot(labels, outputs.shape[-1], dtype=outputs.dtype)
    if kind == "ce":
        return target - jax.nn.softmax(outputs, axis=-1)
    centred = lambda x: x - jnp.mean(x, axis=-1, keepdims=True)  # noqa: E731
    return centred(target) - centred(outputs)


def backprop_signal_norm(kind: str, outputs: jax.Array, labels: jax.Array, v: jax.Array, weights: jax.Array) -> jax.Array:
    """Frobenius norm of G_F = residual @ V^T over the examples with weight 1: the signal the
    output layer V [h, m] sends back to the hidden features (Li2's G_F = (Y - FV)V^T)."""
    return frobenius_norm(weights[:, None] * (output_residual(kind, outputs, labels) @ v.T))


def is_correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example 1.0 where the arg-max class is the label."""
    return (jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype)


def frobenius_norm(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(x)))


def mean_pairwise_cosine(vectors: jax.Array, valid: jax.Array | None = None, absolute: bool = False) -> jax.Array:
    """Mean cosine over distinct pairs i < j of the rows of ``vectors`` [n, d].

    ``valid`` [n] (bool) restricts the pairs to rows that are present; with fewer
    than two valid rows the result is 0. ``absolute`` averages |cos| instead.
    """
    n = vectors.shape[0]
    norms = jnp.maximum(jnp.linalg.norm(vectors, axis=1), NORM_FLOOR)
    cosine = (vectors @ vectors.T) / (norms[:, None] * norms[None, :])
    if absolute:
        cosine = jnp.abs(cosine)
    valid = jnp.ones(n, bool) if valid is None else valid
    pair = jnp.triu(jnp.ones((n, n), bool), k=1) & valid[:, None] & valid[None, :]
    count = jnp.sum(pair)
    return jnp.where(count > 0, jnp.sum(jnp.where(pair, cosine, 0.0)) / jnp.maximum(count, 1), 0.0)


def grad_cosine_sim(grad_history: jax.Array, n_kept: jax.Array) -> jax.Array:
    """Consistency of fc1's gradient over time: mean pairwise cosine among the kept
    epochs' flattened last-minibatch gradients (``grad_history`` [GRAD_HISTORY, ...],
    the first ``n_kept`` slots filled); 0 while fewer than two are kept."""
    flat = grad_history.reshape(grad_history.shape[0], -1)
    return mean_pairwise_cosine(flat, valid=jnp.arange(flat.shape[0]) < n_kept)


def neuron_grad_cosine(grad_w1: jax.Array) -> jax.Array:
    """Cross-neuron agreement of fc1's gradient: mean pairwise |cos| between the
    per-neuron gradient rows (columns of the [2h, h] kernel gradient)."""
    return mean_pairwise_cosine(grad_w1.T, absolute=True)


def node_similarity(w1: jax.Array) -> jax.Array:
    """Mean pairwise cosine between the hidden neurons' weight rows of fc1."""
    return mean_pairwise_cosine(w1.T)


def one_matrix_per_call(linalg_fn: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    """``linalg_fn`` of one matrix, looped (``lax.map``) rather than batched under ``vmap``.

    jaxlib's CPU LAPACK kernels split a batch of matrices across XLA's intra-op thread pool
    and wait for the pieces from inside that pool. When several host devices each run
    such a call at once, every pool thread can end up waiting for the others: the sweep
    deadlocks (one device per core is enough). With one matrix per call nothing is split,
    and each matrix's result is the same as in the batched call."""
    looped = jax.custom_batching.custom_vmap(linalg_fn)

    @looped.def_vmap
    def loop_over_batch(axis_size, in_batched, matrices):
        return (jax.lax.map(looped, matrices), True) if in_batched[0] else (looped(matrices), False)

    return looped


@one_matrix_per_call
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
