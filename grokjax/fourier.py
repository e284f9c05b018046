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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


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
