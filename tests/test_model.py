import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import forward

from grokjax.model import ModularNet, operand_weights


def init(m, hidden, seed=0):
    dummy = jnp.zeros((1,), jnp.int32)
    return ModularNet(m, hidden).init(jax.random.key(seed), dummy, dummy)


def test_initialisation_matches_pytorch_defaults():
    h = 256
    p = init(97, h)["params"]
    embedding = np.asarray(p["embed"]["embedding"])
    assert abs(embedding.mean()) < 0.01 and abs(embedding.std() - 1.0) < 0.01
    for name, fan_in in (("fc1", 2 * h), ("fc2", h)):
        bound = 1 / np.sqrt(fan_in)
        for kind in ("kernel", "bias"):
            values = np.asarray(p[name][kind])
            assert np.abs(values).max() <= bound
            assert np.abs(values).max() > 0.95 * bound
        kernel = np.asarray(p[name]["kernel"])
        # U(-b, b) has standard deviation b / sqrt(3)
        assert abs(kernel.std() / (bound / np.sqrt(3)) - 1) < 0.02
    assert p["fc1"]["kernel"].shape == (2 * h, h) and p["fc2"]["kernel"].shape == (h, 97)


@pytest.mark.parametrize("batch", [5, 40])  # below and above m: both forms of the first layer
def test_forward_equals_concatenated_dense(batch):
    m, h = 13, 8
    params = init(m, h, seed=1)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, m, batch), rng.integers(0, m, batch)
    logits, features = ModularNet(m, h).apply(params, jnp.asarray(a), jnp.asarray(b))
    ref_logits, ref_features = forward(params, a, b)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(features, ref_features, rtol=1e-5, atol=1e-5)


def li2_forward(params, a, b, m, activation):
    """The Li2 network in NumPy, literally: concatenated one-hot vectors (2m wide), W, σ, V."""
    p = {name: np.asarray(layer["kernel"], np.float64) for name, layer in params["params"].items()}
    x = np.concatenate([np.eye(m)[a], np.eye(m)[b]], axis=1)
    pre = x @ p["fc1"]
    hidden = {"square": pre**2, "relu": np.maximum(pre, 0), "silu": pre / (1 + np.exp(-pre))}[activation]
    return hidden @ p["fc2"], hidden


@pytest.mark.parametrize("activation", ["square", "relu", "silu"])
def test_one_hot_forward_equals_the_dense_product(activation):
    m, h = 11, 16
    net = ModularNet(m, h, one_hot=True, activation=activation)
    dummy = jnp.zeros((1,), jnp.int32)
    params = net.init(jax.random.key(2), dummy, dummy)
    # no embedding and no biases; W is [2m, h] and initialised like nn.Linear(2m, h)
    assert jax.tree.map(np.shape, params) == {"params": {"fc1": {"kernel": (2 * m, h)}, "fc2": {"kernel": (h, m)}}}
    assert np.abs(np.asarray(params["params"]["fc1"]["kernel"])).max() <= 1 / np.sqrt(2 * m)
    a, b = np.random.default_rng(0).integers(0, m, (2, 30))
    outputs, features = net.apply(params, jnp.asarray(a), jnp.asarray(b))
    ref_outputs, ref_features = li2_forward(params, a, b, m, activation)
    np.testing.assert_allclose(outputs, ref_outputs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features, ref_features, rtol=1e-5, atol=1e-6)


def test_operand_weights_see_through_the_embedding():
    """A neuron's weight on operand value a is its response to input a: (E W1_a)[a, k]."""
    m, h = 7, 5
    params = init(m, h, seed=3)
    wa, wb = operand_weights(params)
    p = params["params"]
    hidden_in = lambda a, b: np.asarray(p["embed"]["embedding"])[[a, b]].reshape(-1) @ np.asarray(p["fc1"]["kernel"])  # noqa: E731
    # the pre-activation (without its bias) is the sum of the two operands' contributions
    for a, b in ((0, 0), (3, 6), (6, 2)):
        np.testing.assert_allclose(wa[a] + wb[b], hidden_in(a, b), rtol=1e-5, atol=1e-6)
    one_hot = ModularNet(m, h, one_hot=True).init(jax.random.key(0), jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32))
    wa, wb = operand_weights(one_hot)
    np.testing.assert_array_equal(np.concatenate([wa, wb]), one_hot["params"]["fc1"]["kernel"])
