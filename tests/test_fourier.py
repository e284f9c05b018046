import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grokjax import fourier as F

rng = np.random.default_rng(0)

# Jitted once each: compiling a whole function is much faster than running it op by op.
neuron_spectrum = jax.jit(F.neuron_spectrum)
dominant_frequency = jax.jit(F.dominant_frequency)
concentration = jax.jit(F.concentration)
distinct_frequencies = jax.jit(F.distinct_frequencies, static_argnums=1)
gini = jax.jit(F.gini)
fourier_summary = jax.jit(F.fourier_summary)


def planted_weights(m, freqs, phases):
    """[m, K] float32: column k is cos(2π f_k a / m + φ_k)."""
    a = np.arange(m)[:, None]
    return np.cos(2 * np.pi * np.asarray(freqs) * a / m + np.asarray(phases)).astype(np.float32)


def reference_spectrum(wa, wb):
    """NumPy: power of an explicit DFT (all m frequencies) summed over each conjugate class."""
    m = wa.shape[0]
    f = np.arange(m)[:, None]
    dft = np.exp(-2j * np.pi * f * np.arange(m)[None, :] / m)  # [frequency, a]
    power = np.abs(dft @ wa.astype(np.float64)) ** 2 + np.abs(dft @ wb.astype(np.float64)) ** 2  # [m, K]
    classes = []
    for c in range(1, m // 2 + 1):
        conjugate = m - c
        classes.append(power[c] if conjugate == c else power[c] + power[conjugate])
    return np.stack(classes, axis=1)  # [K, F]


def reference_gini(x):
    """Mean absolute difference over all pairs, halved and divided by the mean."""
    x = np.asarray(x, np.float64)
    return np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())


def test_frequencies_counts_classes():
    assert F.frequencies(23) == 11
    assert F.frequencies(24) == 12


@pytest.mark.parametrize(
    "m, freqs",
    [
        (23, [1, 3, 3, 7, 11, 5]),
        (24, [1, 12, 5, 12, 7, 11]),  # 12 = M/2 is its own conjugate
    ],
)
def test_planted_single_frequencies(m, freqs):
    k = len(freqs)
    wa = planted_weights(m, freqs, 0.3 + np.arange(k))
    wb = planted_weights(m, freqs, 1.1 + 2 * np.arange(k))
    spectrum = neuron_spectrum(wa, wb)
    dominant = dominant_frequency(spectrum)

    assert spectrum.shape == (k, F.frequencies(m))
    np.testing.assert_array_equal(dominant, freqs)
    assert dominant.dtype == jnp.int32
    np.testing.assert_allclose(concentration(spectrum), 1.0, atol=1e-5)
    distinct = distinct_frequencies(dominant, F.frequencies(m))
    assert distinct.dtype == jnp.int32 and int(distinct) == len(set(freqs))


def test_frequency_and_its_conjugate_fall_in_one_class():
    m, phases = 23, [0.4, 2.0]
    low = neuron_spectrum(planted_weights(m, [3, 8], phases), planted_weights(m, [3, 8], phases))
    high = neuron_spectrum(planted_weights(m, [m - 3, m - 8], phases), planted_weights(m, [m - 3, m - 8], phases))
    np.testing.assert_allclose(high, low, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("m", [23, 24])
def test_neuron_spectrum_matches_explicit_dft(m):
    wa = rng.normal(size=(m, 16)).astype(np.float32)
    wb = rng.normal(size=(m, 16)).astype(np.float32)
    np.testing.assert_allclose(neuron_spectrum(wa, wb), reference_spectrum(wa, wb), rtol=1e-5)


@pytest.mark.parametrize("m", [23, 24])
def test_spectrum_power_sums_to_centred_energy(m):
    # Parseval: Σ_f |X_f|² = M ‖w‖², and the dropped f = 0 term is (Σ w)² = M² mean², so the
    # non-constant power is M ‖w − mean(w)‖².
    wa = rng.normal(size=(m, 8)).astype(np.float32)
    wb = rng.normal(size=(m, 8)).astype(np.float32)
    centred = ((wa - wa.mean(0)) ** 2).sum(0) + ((wb - wb.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(neuron_spectrum(wa, wb).sum(1), m * centred, rtol=1e-5)


def test_gini_known_vectors():
    assert float(gini(jnp.array([1.0, 1.0, 1.0, 1.0]))) == pytest.approx(0.0, abs=1e-7)
    # n = 4, weights 2i − n − 1 = −3, −1, 1, 3: only x_4 = 5 counts, 3·5 / (4·5) = 0.75.
    assert float(gini(jnp.array([0.0, 0.0, 0.0, 5.0]))) == pytest.approx(0.75)
    # −3·1 − 1·2 + 1·3 + 3·4 = 10, over n Σx = 4·10 = 40: 0.25.
    assert float(gini(jnp.array([1.0, 2.0, 3.0, 4.0]))) == pytest.approx(0.25)
    assert float(gini(jnp.zeros(4))) == 0.0


def test_gini_matches_mean_absolute_difference():
    for n in (5, 12, 31):
        x = rng.exponential(size=n).astype(np.float32)
        assert float(gini(x)) == pytest.approx(reference_gini(x), rel=1e-5)


def test_zero_neuron_has_zero_concentration_and_spectrum_row():
    m = 23
    wa = rng.normal(size=(m, 4)).astype(np.float32)
    wb = rng.normal(size=(m, 4)).astype(np.float32)
    wa[:, 2] = wb[:, 2] = 0.0  # a dead neuron

    summary = fourier_summary(wa, wb)
    np.testing.assert_array_equal(concentration(neuron_spectrum(wa, wb))[2], 0.0)
    np.testing.assert_array_equal(summary["concentration"][2], 0.0)
    np.testing.assert_array_equal(summary["spectrum"][2], 0.0)
    np.testing.assert_allclose(summary["spectrum"].sum(1), [1, 1, 0, 1], rtol=1e-6)
    assert all(np.isfinite(np.asarray(v)).all() for v in summary.values())


def test_a_dead_neuron_adds_no_frequency():
    m = 23
    a = np.arange(m)[:, None]
    wa = np.cos(2 * np.pi * np.array([[3, 3, 5]]) * a / m).astype(np.float32)  # neurons on f 3, 3, 5
    wa[:, 2] = 0.0  # the third is dead: its argmax would read class 1
    summary = fourier_summary(wa, wa)
    assert int(summary["distinct_frequencies"]) == 1
    assert int(distinct_frequencies(jnp.array([3, 3, 1]), F.frequencies(m))) == 2  # without the mask it counts


def test_summary_under_jit_and_vmap_matches_single_runs():
    runs, m, k = 3, 24, 8
    wa = rng.normal(size=(runs, m, k)).astype(np.float32)
    wb = rng.normal(size=(runs, m, k)).astype(np.float32)
    batched = jax.jit(jax.vmap(F.fourier_summary))(wa, wb)

    for r in range(runs):
        spectrum = reference_spectrum(wa[r], wb[r])
        dominant = spectrum.argmax(1) + 1
        share = spectrum.max(1) / spectrum.sum(1)
        np.testing.assert_allclose(batched["spectrum"][r], spectrum / spectrum.sum(1, keepdims=True), rtol=1e-5)
        np.testing.assert_array_equal(batched["dominant_frequency"][r], dominant)
        np.testing.assert_allclose(batched["concentration"][r], share, rtol=1e-5)
        assert int(batched["distinct_frequencies"][r]) == len(set(dominant))
        assert float(batched["mean_concentration"][r]) == pytest.approx(share.mean(), rel=1e-5)
        assert float(batched["gini"][r]) == pytest.approx(reference_gini(np.sqrt(spectrum.sum(0))), rel=1e-4)

    # The building blocks batch the same way.
    spectra = jax.jit(jax.vmap(F.neuron_spectrum))(wa, wb)
    count = jax.vmap(functools.partial(F.distinct_frequencies, n_frequencies=F.frequencies(m)))
    distinct = jax.jit(lambda s: count(jax.vmap(F.dominant_frequency)(s)))(spectra)
    layer_gini = jax.jit(lambda s: jax.vmap(F.gini)(jax.vmap(F.frequency_norms)(s)))(spectra)
    np.testing.assert_array_equal(distinct, batched["distinct_frequencies"])
    np.testing.assert_allclose(layer_gini, batched["gini"], rtol=1e-6)


def numpy_ipr(weights):
    """Doshi et al.'s IPR of each column, transcribed: |rfft|, normalised to unit L2 norm, to the 4th power, summed."""
    amplitude = np.abs(np.fft.rfft(np.asarray(weights, np.float64), axis=0))
    return ((amplitude / np.linalg.norm(amplitude, axis=0)) ** 4).sum(axis=0)


def test_ipr_matches_its_definition_and_its_extremes():
    rng = np.random.default_rng(0)
    m, k = 23, 6
    wa, wb, wout = (rng.normal(size=(m, k)) for _ in range(3))
    np.testing.assert_allclose(F.ipr(jnp.asarray(wa)), numpy_ipr(wa), rtol=1e-5)
    np.testing.assert_allclose(F.neuron_ipr(*map(jnp.asarray, (wa, wb, wout))),
                               (numpy_ipr(wa) + numpy_ipr(wb) + numpy_ipr(wout)) / 3, rtol=1e-5)
    np.testing.assert_allclose(F.neuron_ipr(jnp.asarray(wa), jnp.asarray(wb)), (numpy_ipr(wa) + numpy_ipr(wb)) / 2,
                               rtol=1e-5)
    x = np.arange(m)[:, None]
    one_frequency = np.cos(2 * np.pi * 5 * x / m + 0.3)
    flat_spectrum = np.eye(m)[:, :1]  # a delta: every frequency the same amplitude
    np.testing.assert_allclose(F.ipr(jnp.asarray(np.hstack([one_frequency, flat_spectrum]))),
                               [1.0, 1 / (m // 2 + 1)], rtol=1e-5)
    assert float(F.ipr(jnp.zeros((m, 1)))[0]) == 0.0
