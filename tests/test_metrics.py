import jax.numpy as jnp
import numpy as np
import pytest
from reference import cross_entropy, mean_pairwise_cosine, singular_value_entropy

from grokjax import metrics as M

rng = np.random.default_rng(0)


def test_cross_entropy():
    logits = rng.normal(size=(20, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 20)
    np.testing.assert_allclose(M.cross_entropy(logits, labels), cross_entropy(logits.astype(np.float64), labels), rtol=1e-5)


def test_frobenius_norm():
    x = rng.normal(size=(8, 3)).astype(np.float32)
    assert np.isclose(M.frobenius_norm(x), np.linalg.norm(x), rtol=1e-6)


@pytest.mark.parametrize("absolute", [False, True])
def test_mean_pairwise_cosine_with_a_zero_row(absolute):
    rows = rng.normal(size=(9, 4)).astype(np.float32)
    rows[3] = 0.0  # a dead neuron's gradient
    np.testing.assert_allclose(
        M.mean_pairwise_cosine(jnp.asarray(rows), absolute=absolute), mean_pairwise_cosine(rows, absolute), atol=1e-6
    )


@pytest.mark.parametrize("n_kept", [1, 2, 3, 5])
def test_grad_cosine_sim_uses_only_kept_epochs(n_kept):
    history = rng.normal(size=(M.GRAD_HISTORY, 6, 4)).astype(np.float32) + 0.5
    expected = mean_pairwise_cosine(history[:n_kept].reshape(n_kept, -1))  # 0 for n_kept == 1
    flat = history.reshape(len(history), -1)
    np.testing.assert_allclose(M.grad_cosine_sim(jnp.asarray(flat @ flat.T), n_kept), expected, atol=1e-6)


def test_the_incremental_gram_equals_the_gram_of_the_ring_buffer():
    gradients = rng.normal(size=(12, 6, 4)).astype(np.float32)
    history, gram = jnp.zeros((M.GRAD_HISTORY, 6, 4)), jnp.zeros((M.GRAD_HISTORY, M.GRAD_HISTORY))
    for epoch, gradient in enumerate(gradients):  # the ring wraps twice
        slot = epoch % M.GRAD_HISTORY
        gram = M.updated_gram(gram, history, jnp.asarray(gradient), slot)
        history = history.at[slot].set(gradient)
        flat = np.asarray(history, np.float64).reshape(M.GRAD_HISTORY, -1)
        np.testing.assert_allclose(gram, flat @ flat.T, rtol=1e-5, atol=1e-5, err_msg=f"epoch {epoch}")


def test_neuron_metrics_read_neurons_as_kernel_columns():
    kernel = rng.normal(size=(10, 6)).astype(np.float32)  # [2h, h] with h = 6 neurons
    torch_weight = kernel.T  # PyTorch's fc1.weight: one row per neuron
    np.testing.assert_allclose(M.node_similarity(kernel), mean_pairwise_cosine(torch_weight), atol=1e-6)
    np.testing.assert_allclose(M.neuron_grad_cosine(kernel), mean_pairwise_cosine(torch_weight, absolute=True), atol=1e-6)


@pytest.mark.parametrize("rows", [8, 12, 500])  # wide, square, tall (the Gram-matrix path)
def test_feature_diversity_is_singular_value_entropy(rows):
    features = np.maximum(rng.normal(size=(rows, 12)), 0).astype(np.float32)
    features[:, :4] = 0.0  # dead units give zero singular values
    np.testing.assert_allclose(M.feature_diversity(jnp.asarray(features)), singular_value_entropy(features), atol=1e-5)
    # k equal singular values give entropy log k
    np.testing.assert_allclose(M.feature_diversity(jnp.eye(5, dtype=jnp.float32)), np.log(5), rtol=1e-6)


def test_centred_mse_by_hand():
    # m = 3, outputs (1, 2, 6): centred (-2, -1, 3); label 0: target (2/3, -1/3, -1/3)
    # residual target - centred = (8/3, 2/3, -10/3); sum of squares = (64 + 4 + 100) / 9 = 56/3
    outputs = jnp.array([[1.0, 2.0, 6.0], [0.0, 0.0, 0.0]])
    labels = jnp.array([0, 2])
    # second example: centred outputs 0, target (-1/3, -1/3, 2/3): sum of squares (1 + 1 + 4) / 9 = 2/3
    np.testing.assert_allclose(M.centred_mse(outputs, labels), [56 / 3, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(M.per_example_loss("mse", outputs, labels), [56 / 3, 2 / 3], rtol=1e-6)
    # adding a constant to every class changes nothing: the outputs are centred
    np.testing.assert_allclose(M.centred_mse(outputs + 5.0, labels), [56 / 3, 2 / 3], rtol=1e-6)


@pytest.mark.parametrize("kind", ["mse", "ce"])
def test_backprop_signal_is_minus_the_feature_gradient(kind):
    """G_F = residual V^T equals -d/dF of the summed per-example loss (for mse: half the
    squared error), computed here by autodiff through F -> F V."""
    import jax

    features = jnp.asarray(rng.normal(size=(9, 6)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 5, 9))
    weights = jnp.asarray([1.0] * 7 + [0.0] * 2)  # the last two examples are not in the training set

    def summed_loss(f):
        outputs = f @ v
        per_example = M.cross_entropy(outputs, labels) if kind == "ce" else 0.5 * M.centred_mse(outputs, labels)
        return jnp.sum(weights * per_example)

    expected = np.linalg.norm(-np.asarray(jax.grad(summed_loss)(features)))
    np.testing.assert_allclose(M.backprop_signal_norm(kind, features @ v, labels, v, weights), expected, rtol=1e-5)
