"""The tasks' data sets (modular arithmetic, composition in the permutation group S5, sparse
parity) and each run's train/test split, corrupted labels and batch order."""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from grokjax.config import NONZERO_B_OPS, S5_OPS, SweepConfig


class Dataset(NamedTuple):
    """Every example of a task: its input tokens and its label. The arithmetic tasks' are
    every (a, b) pair, the same for all runs; the parity task's are drawn per run."""

    inputs: np.ndarray  # [n_pairs, width] int32: (a, b), or parity's n_bits bits (0 or 1)
    label: np.ndarray  # [n_pairs] int32, (a op b) mod m; x2xyy2 is a^2 + ab + b^2; S5: the composed permutation
    relevant: np.ndarray  # [width] 1.0 at the input positions the label depends on (parity's secret bits)

    @property
    def a(self):
        """Operand a of each pair."""
        return self.inputs[:, 0]

    @property
    def b(self):
        """Operand b of each pair."""
        return self.inputs[:, 1]


def permutations_of_5() -> np.ndarray:
    """The 120 elements of S5 as [120, 5] arrays p (p[i] is the image of i), in
    lexicographic order: element 0 is the identity. Power et al. number them so."""
    return np.array(list(itertools.permutations(range(5))), np.int32)


def s5_labels(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The S5 ops on element indices, composing left to right (``x∘y``: apply x, then y),
    as Power et al.'s code does: ``s5`` x∘y, ``s5conj`` x∘y∘x⁻¹, ``s5aba`` x∘y∘x."""
    perms = permutations_of_5()
    then = lambda first, second: np.take_along_axis(second, first, axis=1)  # noqa: E731  (second[first[i]])
    x, y = perms[a], perms[b]
    composed = {"s5": lambda: then(x, y), "s5conj": lambda: then(then(x, y), np.argsort(x, axis=1)),
                "s5aba": lambda: then(then(x, y), x)}[op]()
    index = {tuple(p): i for i, p in enumerate(perms.tolist())}
    return np.array([index[tuple(p)] for p in composed.tolist()], np.int32)


def make_dataset(m: int, op: str) -> Dataset:
    """All pairs in row-major order (a major); ``div`` and ``mul_nz`` omit b = 0 (``div``
    needs a prime m); the
    S5 ops need m = 120 (the tokens are the elements of :func:`permutations_of_5`)."""
    a, b = (x.ravel() for x in np.meshgrid(np.arange(m), np.arange(m), indexing="ij"))
    if op in S5_OPS:
        return pairs_dataset(a, b, s5_labels(op, a, b))
    if op in NONZERO_B_OPS:
        a, b = a[b != 0], b[b != 0]
    if op == "add":
        label = (a + b) % m
    elif op == "sub":
        label = (a - b) % m
    elif op in ("mul", "mul_nz"):
        label = (a * b) % m
    elif op == "div":
        label = (a * np.array([pow(int(x), -1, m) for x in b])) % m
    elif op == "x2xyy2":
        label = (a * a + a * b + b * b) % m
    else:
        raise ValueError(f"unknown op {op!r}")
    return pairs_dataset(a, b, label)


def pairs_dataset(a: np.ndarray, b: np.ndarray, label: np.ndarray) -> Dataset:
    return Dataset(np.stack([a, b], axis=1).astype(np.int32), label.astype(np.int32), np.ones(2, np.float32))


def parity_dataset(key: jax.Array, n_samples: int, n_bits: int, k: int) -> Dataset:
    """Sparse parity (Barak et al. 2022): ``n_samples`` inputs of ``n_bits`` uniform random
    bits, drawn independently (so two may coincide when 2^n_bits is not much larger than
    n_samples²), each labelled by the parity of the same ``k`` secret positions, also drawn
    with ``key``."""
    secret_key, bits_key = jax.random.split(key)
    secret = random_subset(secret_key, n_bits, k)
    bits = jax.random.bernoulli(bits_key, 0.5, (n_samples, n_bits)).astype(jnp.int32)
    return Dataset(bits, jnp.sum(bits[:, secret], axis=1) % 2, jnp.zeros(n_bits, jnp.float32).at[secret].set(1.0))


def task_dataset(config: SweepConfig, key: jax.Array | None = None) -> Dataset:
    """The examples of the configuration's task: the arithmetic table (the same for every run;
    ``key`` unused), or a run's parity samples drawn with ``key``."""
    if config.task == "parity":
        return parity_dataset(key, config.n_samples, config.n_bits, config.parity_k)
    return Dataset(*(jnp.asarray(x) for x in make_dataset(config.m, config.op)))


def corrupt_labels(key: jax.Array, labels: jax.Array, n_train: jax.Array, n_corrupted: jax.Array, classes: int
                   ) -> tuple[jax.Array, jax.Array]:
    """Doshi et al.'s label corruption of a run's training labels (``labels`` [n], of which the
    first ``n_train`` are the run's own): exactly ``n_corrupted`` of those, chosen uniformly,
    get a label drawn uniformly from the ``classes - 1`` wrong ones. Returns the labels and
    the corrupted mask."""
    choose_key, shift_key = jax.random.split(key)
    n = labels.shape[0]
    # the run's positions ranked in random order (the others last): the first n_corrupted are corrupted
    scores = jnp.where(jnp.arange(n) < n_train, jax.random.uniform(choose_key, (n,)), 2.0)
    corrupted = jnp.argsort(jnp.argsort(scores)) < n_corrupted
    wrong = (labels + jax.random.randint(shift_key, (n,), 1, classes)) % classes
    return jnp.where(corrupted, wrong, labels).astype(labels.dtype), corrupted


def epoch_order(key: jax.Array, n_train: jax.Array, sizes: tuple[int, ...]) -> jax.Array:
    """A shuffled pass over a run's own ``n_train`` training positions, padded to the largest
    of ``sizes`` (the static sizes ``n_train`` may take): exactly the run's order had it been
    trained alone, whatever the other sizes of its program (one permutation per size, the
    run's own selected)."""
    if len(sizes) == 1:
        return jax.random.permutation(key, sizes[0])
    padded = [jnp.pad(jax.random.permutation(key, size), (0, sizes[-1] - size)) for size in sizes]
    return jnp.select([n_train == size for size in sizes], padded)


def batch_schedule(
    key: jax.Array, n_train: jax.Array | int, batch_size: int, sizes: tuple[int, ...] | None = None
) -> tuple[jax.Array, jax.Array]:
    """One epoch's minibatches as positions into the train set, like a shuffled DataLoader.

    Returns ``positions`` [steps, batch_size] and ``weights`` [steps, batch_size]: the
    last batch is partial (drop_last=False); its padding slots get weight 0 so that a
    weighted mean over a batch equals the plain mean over its real examples.
    ``sizes`` are the static training-set sizes the run's ``n_train`` may take (default:
    ``n_train`` alone); the steps cover the largest, and a run with a smaller one gets
    all-zero weights in the steps past its own last batch. Full batch (``batch_size``
    equal to the largest size) keeps the natural order.
    """
    sizes = (n_train,) if sizes is None else sizes
    steps = -(-sizes[-1] // batch_size)
    order = jnp.arange(sizes[-1]) if steps == 1 else epoch_order(key, n_train, sizes)
    padding = steps * batch_size - sizes[-1]
    positions = jnp.concatenate([order, jnp.zeros(padding, order.dtype)]).reshape(steps, batch_size)
    weights = (jnp.arange(steps * batch_size) < n_train).astype(jnp.float32).reshape(steps, batch_size)
    return positions, weights


def random_subset(key: jax.Array, n: int, k: int) -> jax.Array:
    """``k`` distinct positions out of ``n`` in random order: distributed as the first
    batch of a fresh shuffled pass, at a fraction of a full permutation's cost."""
    if k == n:
        return jnp.arange(n)
    return jax.lax.top_k(jax.random.uniform(key, (n,)), k)[1]


def probe_positions(key: jax.Array, n_train: jax.Array, sizes: tuple[int, ...], k: int) -> jax.Array:
    """:func:`random_subset` of a run's own ``n_train`` positions (one of the static
    ``sizes``), as if trained alone; ``k`` equal to the largest size takes every position
    (full batch: a smaller run masks the rest)."""
    if len(sizes) == 1 or k == sizes[-1]:
        return random_subset(key, sizes[-1], k)
    return jnp.select([n_train == size for size in sizes], [random_subset(key, size, k) for size in sizes])
