"""The modular-arithmetic data set and each run's train/test split and batch order."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Dataset(NamedTuple):
    """Every (a, b) pair of the task and its label; the same for all runs."""

    a: np.ndarray  # [n_pairs] int32
    b: np.ndarray  # [n_pairs] int32
    label: np.ndarray  # [n_pairs] int32, (a op b) mod m; x2xyy2 is a^2 + ab + b^2


def make_dataset(m: int, op: str) -> Dataset:
    """All pairs in row-major order (a major); ``div`` omits b = 0 and needs a prime m."""
    a, b = (x.ravel() for x in np.meshgrid(np.arange(m), np.arange(m), indexing="ij"))
    if op == "div":
        a, b = a[b != 0], b[b != 0]
    if op == "add":
        label = (a + b) % m
    elif op == "sub":
        label = (a - b) % m
    elif op == "mul":
        label = (a * b) % m
    elif op == "div":
        label = (a * np.array([pow(int(x), -1, m) for x in b])) % m
    elif op == "x2xyy2":
        label = (a * a + a * b + b * b) % m
    else:
        raise ValueError(f"unknown op {op!r}")
    return Dataset(a.astype(np.int32), b.astype(np.int32), label.astype(np.int32))


def batch_schedule(key: jax.Array, n_train: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """One epoch's minibatches as positions into the train set, like a shuffled DataLoader.

    Returns ``positions`` [steps, batch_size] and ``weights`` [steps, batch_size]: the
    last batch is partial (drop_last=False); its padding slots get weight 0 so that a
    weighted mean over a batch equals the plain mean over its real examples.
    Full batch (``batch_size == n_train``) keeps the natural order.
    """
    steps = -(-n_train // batch_size)
    order = jnp.arange(n_train) if steps == 1 else jax.random.permutation(key, n_train)
    padding = steps * batch_size - n_train
    positions = jnp.concatenate([order, jnp.zeros(padding, order.dtype)]).reshape(steps, batch_size)
    weights = (jnp.arange(steps * batch_size) < n_train).astype(jnp.float32).reshape(steps, batch_size)
    return positions, weights


def random_subset(key: jax.Array, n: int, k: int) -> jax.Array:
    """``k`` distinct positions out of ``n`` in random order: distributed as the first
    batch of a fresh shuffled pass, at a fraction of a full permutation's cost."""
    if k == n:
        return jnp.arange(n)
    return jax.lax.top_k(jax.random.uniform(key, (n,)), k)[1]
