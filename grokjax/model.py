"""The study's ModularNet in Flax Linen, initialised exactly as PyTorch initialises it.

Linen is used on plain parameter pytrees: ``init`` and ``apply`` are pure functions,
so the parameters vmap over runs and thread through ``lax.scan`` with no wrapping.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def torch_uniform(fan_in: int) -> nn.initializers.Initializer:
    """U(-1/sqrt(fan_in), +1/sqrt(fan_in)): PyTorch's default for Linear weight and bias."""
    bound = 1.0 / fan_in**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class PairDense(nn.Module):
    """``Dense(2d -> features)`` applied to ``concat(table[a], table[b])``, with the same
    parameters as ``nn.Dense`` (kernel [2d, features], bias [features]).

    The layer is linear in the concatenation, so it equals
    ``(table @ K[:d])[a] + (table @ K[d:])[b] + bias``: projecting the m-row table
    once and gathering is much cheaper than a dense product whenever the batch has
    more rows than the table. The cheaper of the two identical forms is chosen from
    the static shapes.
    """

    features: int
    kernel_init: nn.initializers.Initializer
    bias_init: nn.initializers.Initializer
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, table: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
        width = table.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (2 * width, self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        if a.shape[0] > table.shape[0]:
            return (table @ kernel[:width])[a] + (table @ kernel[width:])[b] + bias
        return jnp.concatenate([table[a], table[b]], axis=-1) @ kernel + bias


class ModularNet(nn.Module):
    """Embed(m, h) for a and b, concatenate, Dense(2h -> h), ReLU, Dense(h -> m).

    Returns the logits and the hidden ReLU activations (the features whose
    diversity is measured). ``fc1``'s kernel is [2h, h]: the transpose of PyTorch's
    ``fc1.weight``, so a hidden neuron is a *column* of it.
    """

    m: int
    hidden: int
    param_dtype: Any = jnp.float32  # float64 (with jax_enable_x64) for exact comparisons

    @nn.compact
    def __call__(self, a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
        dtype = self.param_dtype
        embed = nn.Embed(self.m, self.hidden, embedding_init=nn.initializers.normal(1.0), param_dtype=dtype, name="embed")
        fan_in_1, fan_in_2 = 2 * self.hidden, self.hidden
        fc1 = PairDense(self.hidden, torch_uniform(fan_in_1), torch_uniform(fan_in_1), dtype, name="fc1")
        features = nn.relu(fc1(embed.embedding, a, b))
        logits = nn.Dense(
            self.m, kernel_init=torch_uniform(fan_in_2), bias_init=torch_uniform(fan_in_2), param_dtype=dtype, name="fc2"
        )(features)
        return logits, features


def fc1_kernel(params) -> jax.Array:
    """The hidden layer's weight W1 as a [2h, h] array (one column per neuron)."""
    return params["params"]["fc1"]["kernel"]
