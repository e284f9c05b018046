"""How far a layer's neurons have become Fourier features over Z_M (one run; vmapped by the caller).

A network that has grokked modular addition represents its inputs with a few Fourier
features (Nanda et al. 2023; in Tian's Li2 framework the hidden neurons converge to
them): neuron k's input weights become cos(2π f a / M + φ) for one frequency f. Such
a neuron has all its non-constant power at one frequency class (f and M − f are one
class for real weights), so its *concentration*, the share of that power in its dominant
class, is 1, whereas a random neuron spreads its power over all classes. Across the layer:

* the number of distinct dominant frequencies is how many features the layer uses;
* the Gini coefficient of the per-frequency norms (the sparsity of the layer in the
  Fourier basis) is the progress measure Nanda et al. watched rise during grokking.

Weights come as ``wa``, ``wb`` [M, K]: column k holds neuron k's weights on operand a
(resp. b), indexed by the operand's value in Z_M. M may be odd or even.

A transformer is read through its token embedding W_E [M, d_model] instead
(:func:`embedding_summary`): its norm per frequency class, their Gini coefficient and the
*key frequencies*, the classes holding at least ``KEY_SHARE / F`` of the embedding's
non-constant power. Nanda et al.'s progress measures (:func:`progress_losses`) then ask
how much of the network's performance those frequencies carry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from grokjax.metrics import cross_entropy_log1p


def frequencies(m: int) -> int:
    """Number of non-constant frequency classes over Z_m: F = m // 2 (f and m − f are one class)."""
    return m // 2


def _class_multiplicity(m: int) -> np.ndarray:
    """[F] how many DFT terms each class f = 1..F stands for: 2 (f and m − f), except the
    class f = m/2 of even m, which is its own conjugate."""
    classes = np.arange(1, frequencies(m) + 1)
    return np.where(2 * classes == m, 1.0, 2.0)


def _folded_power(weights: jax.Array) -> jax.Array:
    """[K, F] non-constant DFT power of each column of ``weights`` [M, K], folded over
    conjugate pairs. For real input |X_{M−f}| = |X_f|, so rfft's half spectrum suffices."""
    m = weights.shape[0]
    half_spectrum = jnp.fft.rfft(weights, axis=0)[1 : frequencies(m) + 1]  # drops f = 0
    power = jnp.abs(half_spectrum) ** 2
    return (power * _class_multiplicity(m)[:, None].astype(power.dtype)).T


def neuron_spectrum(wa: jax.Array, wb: jax.Array) -> jax.Array:
    """[K, F] per neuron, the non-constant DFT power of its a-weights plus its b-weights;
    column f − 1 holds frequency class f, i.e. |Â_f|² + |Â_{M−f}|² + |B̂_f|² + |B̂_{M−f}|²
    (once only for the self-conjugate class f = M/2 of even M)."""
    return _folded_power(wa) + _folded_power(wb)


def dominant_frequency(spectrum: jax.Array) -> jax.Array:
    """int32 [K] the frequency class (1..F) holding the most power of each neuron."""
    return (jnp.argmax(spectrum, axis=-1) + 1).astype(jnp.int32)


def concentration(spectrum: jax.Array) -> jax.Array:
    """[K] share of each neuron's non-constant power in its dominant class, in [1/F, 1];
    0 for a neuron without non-constant power."""
    total = jnp.sum(spectrum, axis=-1)
    has_power = total > 0
    # The safe denominator keeps the unused branch of where (and its gradient) finite.
    return jnp.where(has_power, jnp.max(spectrum, axis=-1) / jnp.where(has_power, total, 1.0), 0.0)


def distinct_frequencies(dominant: jax.Array, n_frequencies: int, counted: jax.Array | None = None) -> jax.Array:
    """int32 scalar: how many different classes occur in ``dominant`` (values 1..n_frequencies),
    among the neurons where ``counted`` (bool [K]) is true, if given."""
    # Marking into a fixed-size vector keeps the shape static, unlike jnp.unique; slot 0 takes
    # the neurons not counted and is left out of the sum.
    marked = dominant if counted is None else jnp.where(counted, dominant, 0)
    seen = jnp.zeros(n_frequencies + 1, jnp.int32).at[marked].set(1)
    return jnp.sum(seen[1:], dtype=jnp.int32)


def frequency_norms(spectrum: jax.Array) -> jax.Array:
    """[F] norm of the layer at each frequency class: sqrt of the power summed over neurons."""
    return jnp.sqrt(jnp.sum(spectrum, axis=0))


def gini(values: jax.Array) -> jax.Array:
    """Gini coefficient of a non-negative vector: 0 when all equal, (n − 1)/n when one entry
    holds everything; 0 for an all-zero vector."""
    n = values.shape[0]
    ascending = jnp.sort(values)
    weights = 2 * jnp.arange(1, n + 1) - n - 1
    total = jnp.sum(values)
    has_mass = total > 0
    return jnp.where(has_mass, jnp.sum(weights * ascending) / (n * jnp.where(has_mass, total, 1.0)), 0.0)


def ipr(weights: jax.Array, r: int = 2) -> jax.Array:
    """[K] the inverse participation ratio of each column of ``weights`` [M, K] in the Fourier
    basis, as Doshi et al. define it: with a = |rfft(column)| over its M // 2 + 1 frequencies
    (the constant one included), IPR = Σ_f (a_f / ‖a‖₂)^(2r), r = 2. It is 1 when one
    frequency holds all the column's power and 1 / (M // 2 + 1) when every frequency holds
    the same; 0 for an all-zero column."""
    power = jnp.abs(jnp.fft.rfft(weights, axis=0)) ** 2
    total = jnp.sum(power, axis=0)
    shares = power / jnp.where(total > 0, total, 1.0)
    return jnp.sum(shares**r, axis=0)


def neuron_ipr(wa: jax.Array, wb: jax.Array, wout: jax.Array | None = None) -> jax.Array:
    """[K] each hidden neuron's IPR (:func:`ipr`), averaged over its weights from operand a,
    from operand b and, when it feeds the outputs directly, to them (``wout`` [M, K]): Doshi
    et al.'s per-neuron measure, high for a periodic (generalising) neuron, low for a
    memorising one."""
    parts = [ipr(wa), ipr(wb)] + ([] if wout is None else [ipr(wout)])
    return sum(parts) / len(parts)


def fourier_summary(wa: jax.Array, wb: jax.Array) -> dict[str, jax.Array]:
    """All the measures for one layer: the per-neuron spectrum normalised to sum 1 per neuron
    (rows of neurons without non-constant power stay 0), dominant frequencies, concentrations,
    the number of distinct dominant frequencies, the mean concentration and the Gini
    coefficient of the per-frequency norms."""
    spectrum = neuron_spectrum(wa, wb)
    totals = jnp.sum(spectrum, axis=-1, keepdims=True)
    dominant = dominant_frequency(spectrum)
    neuron_concentration = concentration(spectrum)
    return {
        "spectrum": jnp.where(totals > 0, spectrum / jnp.where(totals > 0, totals, 1.0), 0.0),
        "dominant_frequency": dominant,
        "concentration": neuron_concentration,
        # a neuron without non-constant power (argmax 0 reads class 1) has no dominant frequency
        "distinct_frequencies": distinct_frequencies(dominant, spectrum.shape[-1], neuron_concentration > 0),
        "mean_concentration": jnp.mean(neuron_concentration),
        "gini": gini(frequency_norms(spectrum)),
    }


# A class is a key frequency of the embedding when its share of the non-constant power is at
# least KEY_SHARE times the share of a uniform spread (1/F); a random embedding's largest
# class stays well below twice the uniform share.
KEY_SHARE = 2.0


def embedding_summary(embedding: jax.Array) -> dict[str, jax.Array]:
    """A transformer's token embedding W_E [M, d_model] (rows: residues) in the Fourier basis:
    ``embedding_norm`` [F], the norm of W_E at each frequency class (the square root of its
    folded DFT power over the residues, summed over the d_model columns); ``gini``, their Gini
    coefficient; ``key_frequency`` [F], 1 for the key frequencies (see :data:`KEY_SHARE`), 0
    for the others; ``n_key_frequencies``, their number."""
    norms = frequency_norms(_folded_power(embedding))
    share = norms**2 / jnp.maximum(jnp.sum(norms**2), jnp.finfo(norms.dtype).tiny)
    key = share >= KEY_SHARE / norms.shape[0]
    return {"embedding_norm": norms, "gini": gini(norms), "key_frequency": key.astype(norms.dtype),
            "n_key_frequencies": jnp.sum(key, dtype=jnp.int32)}


def progress_losses(logits: jax.Array, labels: jax.Array, key: jax.Array, train_mask: jax.Array) -> dict[str, jax.Array]:
    """Nanda et al.'s restricted and excluded losses from the logits [N, M] of every pair of
    the task, their labels [N], the key frequency classes ``key`` (bool [F]) and the pairs
    trained on (``train_mask`` [N], 1 or 0).

    The logits of output j, as a function of the pair, are projected onto the functions of
    the pair's answer c: cos(2π f c / M) and sin(2π f c / M) for each key class f (for a + b,
    Nanda et al.'s cos(w(a + b)) and sin(w(a + b)) directions). With every answer equally
    frequent (add, sub, div) that projection is the part of the per-answer mean logits
    L[c, j] at those frequencies, which an FFT over c gives.

    * ``restricted_loss``: cross-entropy over all pairs of the logits kept to the key
      frequencies plus each output's mean (what the key frequencies alone achieve);
    * ``excluded_loss``: cross-entropy over the training pairs of the logits with the
      key frequencies' part removed (what the network does without them).
    """
    m = logits.shape[-1]
    counts = jax.ops.segment_sum(jnp.ones_like(labels, logits.dtype), labels, num_segments=m)
    per_answer = jax.ops.segment_sum(logits, labels, num_segments=m) / jnp.maximum(counts, 1)[:, None]
    spectrum = jnp.fft.rfft(per_answer, axis=0)  # [M // 2 + 1, M]: rows 1..F are the classes
    key_rows = jnp.concatenate([jnp.zeros(1, bool), key, jnp.zeros(spectrum.shape[0] - 1 - key.shape[0], bool)])
    key_part = jnp.fft.irfft(jnp.where(key_rows[:, None], spectrum, 0), n=m, axis=0).astype(logits.dtype)
    restricted = (key_part + jnp.mean(per_answer, axis=0))[labels]  # each output's mean: the constant term
    excluded = logits - key_part[labels]
    ce = cross_entropy_log1p  # a restricted loss far below float32's epsilon stays measurable
    return {"restricted_loss": jnp.mean(ce(restricted, labels)),
            "excluded_loss": jnp.sum(train_mask * ce(excluded, labels)) / jnp.sum(train_mask)}
