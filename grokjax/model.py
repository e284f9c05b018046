"""The study's ModularNet in Flax Linen, initialised exactly as PyTorch initialises it,
and the Li2 paper's variant of it (one-hot inputs, no biases) as options of the same module.

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
    parameters as ``nn.Dense`` (kernel [2d, features], bias [features] unless
    ``use_bias`` is off). ``table`` None stands for the identity: one-hot inputs of width
    ``one_hot_width`` (d = m).

    The layer is linear in the concatenation, so it equals
    ``(table @ K[:d])[a] + (table @ K[d:])[b] + bias``: projecting the m-row table
    once and gathering is much cheaper than a dense product whenever the batch has
    more rows than the table. The cheaper of the two identical forms is chosen from
    the static shapes; one-hot inputs just gather rows of the kernel.
    """

    features: int
    kernel_init: nn.initializers.Initializer
    bias_init: nn.initializers.Initializer
    param_dtype: Any = jnp.float32
    use_bias: bool = True

    @nn.compact
    def __call__(self, table: jax.Array | None, a: jax.Array, b: jax.Array, one_hot_width: int = 0) -> jax.Array:
        width = one_hot_width if table is None else table.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (2 * width, self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else 0.0
        if table is None:
            return kernel[:width][a] + kernel[width:][b] + bias
        if a.shape[0] > table.shape[0]:
            return (table @ kernel[:width])[a] + (table @ kernel[width:])[b] + bias
        return jnp.concatenate([table[a], table[b]], axis=-1) @ kernel + bias


ACTIVATIONS = {"relu": nn.relu, "square": jnp.square, "silu": nn.silu}


class ModularNet(nn.Module):
    """The study's network: Embed(m, h) for a and b, concatenate, Dense(2h -> h), ReLU,
    Dense(h -> m). With ``one_hot`` it is the Li2 paper's network instead: fixed one-hot
    inputs (2m wide, not trained), W = Dense(2m -> h) and V = Dense(h -> m), both without
    bias. ``activation`` is relu, square (x^2) or silu either way.

    Returns the outputs (logits) and the hidden activations (the features whose
    diversity is measured). ``fc1``'s kernel is [2h, h] ([2m, h] one-hot): the transpose
    of PyTorch's ``fc1.weight``, so a hidden neuron is a *column* of it. Every layer is
    initialised like PyTorch's ``nn.Linear``.
    """

    m: int
    hidden: int
    param_dtype: Any = jnp.float32  # float64 (with jax_enable_x64) for exact comparisons
    one_hot: bool = False
    activation: str = "relu"

    @nn.compact
    def __call__(self, a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
        dtype, use_bias = self.param_dtype, not self.one_hot
        if self.one_hot:
            table, width = None, self.m
        else:
            embed = nn.Embed(self.m, self.hidden, embedding_init=nn.initializers.normal(1.0), param_dtype=dtype, name="embed")
            table, width = embed.embedding, self.hidden
        fan_in_1, fan_in_2 = 2 * width, self.hidden
        fc1 = PairDense(self.hidden, torch_uniform(fan_in_1), torch_uniform(fan_in_1), dtype, use_bias, name="fc1")
        features = ACTIVATIONS[self.activation](fc1(table, a, b, one_hot_width=self.m))
        logits = nn.Dense(
            self.m, use_bias=use_bias, kernel_init=torch_uniform(fan_in_2), bias_init=torch_uniform(fan_in_2),
            param_dtype=dtype, name="fc2",
        )(features)
        return logits, features


def fc1_kernel(params) -> jax.Array:
    """The hidden layer's weight W1 as a [2h, h] ([2m, h] one-hot) array, one column per neuron."""
    return params["params"]["fc1"]["kernel"]


def fc2_kernel(params) -> jax.Array:
    """The output layer's weight V as an [h, m] array."""
    return params["params"]["fc2"]["kernel"]


def operand_weights(params) -> tuple[jax.Array, jax.Array]:
    """Each hidden neuron's input weights as functions of operand a and of operand b, two
    [m, h] arrays: W1's halves, seen through the embedding when there is one."""
    kernel = fc1_kernel(params)
    width = kernel.shape[0] // 2
    if "embed" not in params["params"]:
        return kernel[:width], kernel[width:]
    table = params["params"]["embed"]["embedding"]
    return table @ kernel[:width], table @ kernel[width:]
