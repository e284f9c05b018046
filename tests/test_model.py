import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grokjax.model import ModularNet
from reference import forward


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
