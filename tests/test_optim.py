import jax.numpy as jnp
import numpy as np
import optax
import pytest
from reference import torch_adam

from grokjax.optim import make_optimizer


def run_optax(name, theta, grads, lr, wd):
    optimizer = make_optimizer(name, jnp.float32(lr), jnp.float32(wd))
    params = jnp.asarray(theta, jnp.float32)
    state = optimizer.init(params)
    for g in grads:
        updates, state = optimizer.update(jnp.asarray(g, jnp.float32), state, params)
        params = optax.apply_updates(params, updates)
    return np.asarray(params, np.float64)


@pytest.mark.parametrize("name,decoupled", [("adam", False), ("adamw", True)])
def test_adam_matches_torch_algorithm(name, decoupled):
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(6, 5))
    grads = [rng.normal(size=(6, 5)) * 0.1 for _ in range(10)]
    lr, wd = 1e-2, 0.5  # a large wd makes coupled and decoupled clearly different
    ours = run_optax(name, theta, grads, lr, wd)
    np.testing.assert_allclose(ours, torch_adam(theta, grads, lr, wd, decoupled=decoupled), atol=1e-6, rtol=1e-6)
    # ... and not the other variant
    other = torch_adam(theta, grads, lr, wd, decoupled=not decoupled)
    assert np.abs(ours - other).max() > 1e-4


def test_sgd_is_plain_gradient_descent_with_l2():
    theta = np.array([1.0, -2.0])
    grads = [np.array([0.5, 0.5]), np.array([-1.0, 0.25])]
    expected = theta.copy()
    for g in grads:
        expected = expected - 0.1 * (g + 0.01 * expected)
    np.testing.assert_allclose(run_optax("sgd", theta, grads, 0.1, 0.01), expected, rtol=1e-6)
