"""The networks, in Flax Linen: the study's ModularNet, initialised exactly as PyTorch
initialises it, the Li2 paper's variant of it (one-hot inputs, no biases) as options of the
same module, and the small causal transformer of the grokking literature (Nanda et al.,
Power et al.).

Linen is used on plain parameter pytrees: ``init`` and ``apply`` are pure functions,
so the parameters vmap over runs and thread through ``lax.scan`` with no wrapping.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def uniform(bound: float) -> nn.initializers.Initializer:
    """U(-bound, +bound)."""
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_uniform(fan_in: int) -> nn.initializers.Initializer:
    """U(-1/sqrt(fan_in), +1/sqrt(fan_in)): PyTorch's default for Linear weight and bias."""
    return uniform(1.0 / fan_in**0.5)


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


# gelu is PyTorch's nn.GELU(): the exact, erf form (Flax's default is the tanh approximation)
ACTIVATIONS = {"relu": nn.relu, "square": jnp.square, "silu": nn.silu,
               "gelu": lambda x: nn.gelu(x, approximate=False)}


class ModularNet(nn.Module):
    """The study's network: Embed(m, h) for a and b, concatenate, Dense(2h -> h), ReLU,
    Dense(h -> m). With ``one_hot`` it is the Li2 paper's network instead: fixed one-hot
    inputs (2m wide, not trained), W = Dense(2m -> h) and V = Dense(h -> m), both without
    bias. ``activation`` is relu, square (x^2) or silu either way. ``depth`` hidden layers
    put depth - 1 more Dense(h -> h) layers after the first (Prieto et al.'s MLP: one-hot,
    two hidden layers of 200, ReLU).

    Returns the outputs (logits) and the last hidden layer's activations (the features
    whose diversity is measured). ``fc1``'s kernel is [2h, h] ([2m, h] one-hot): the transpose
    of PyTorch's ``fc1.weight``, so a hidden neuron is a *column* of it. Every layer is
    initialised like PyTorch's ``nn.Linear``.
    """

    m: int
    hidden: int
    param_dtype: Any = jnp.float32  # float64 (with jax_enable_x64) for exact comparisons
    one_hot: bool = False
    activation: str = "relu"
    depth: int = 1  # hidden layers: fc1, then hidden_1 ... hidden_<depth-1> (h -> h, biases as fc1's)

    @nn.compact
    def __call__(self, a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
        dtype, use_bias = self.param_dtype, not self.one_hot
        if self.one_hot:
            table, width = None, self.m
        else:
            embed = nn.Embed(self.m, self.hidden, embedding_init=nn.initializers.normal(1.0), param_dtype=dtype, name="embed")
            table, width = embed.embedding, self.hidden
        fan_in_1 = 2 * width
        fc1 = PairDense(self.hidden, torch_uniform(fan_in_1), torch_uniform(fan_in_1), dtype, use_bias, name="fc1")
        features = ACTIVATIONS[self.activation](fc1(table, a, b, one_hot_width=self.m))
        return later_layers(features, self.depth, self.activation, self.m, use_bias, dtype)


def later_layers(features: jax.Array, depth: int, activation: str, classes: int, use_bias: bool, dtype
                 ) -> tuple[jax.Array, jax.Array]:
    """An MLP after its first hidden layer (``features``, [batch, h]), inside its compact
    ``__call__``: ``depth - 1`` more hidden layers ``hidden_<l>`` (h -> h), then ``fc2`` (h ->
    ``classes``), each initialised like PyTorch's ``nn.Linear``. Returns the logits and the
    last hidden layer's activations."""
    hidden = features.shape[-1]
    for layer in range(1, depth):
        features = ACTIVATIONS[activation](nn.Dense(hidden, use_bias=use_bias, kernel_init=torch_uniform(hidden),
                                                    bias_init=torch_uniform(hidden), param_dtype=dtype,
                                                    name=f"hidden_{layer}")(features))
    logits = nn.Dense(classes, use_bias=use_bias, kernel_init=torch_uniform(hidden), bias_init=torch_uniform(hidden),
                      param_dtype=dtype, name="fc2")(features)
    return logits, features


class BitsMLP(nn.Module):
    """The sparse-parity network: an MLP on a vector of bits, read as ±1 (Barak et al.'s
    inputs), ``depth`` hidden layers of ``hidden`` with biases, ``classes`` outputs; every
    layer initialised like PyTorch's ``nn.Linear``. ``fc1``'s kernel is [n_bits, h]: row i
    holds every neuron's weight on bit i. Returns the logits and the last hidden layer's
    activations."""

    hidden: int
    classes: int = 2
    param_dtype: Any = jnp.float32
    activation: str = "relu"
    depth: int = 1

    @nn.compact
    def __call__(self, bits: jax.Array) -> tuple[jax.Array, jax.Array]:
        fan_in = bits.shape[-1]
        fc1 = nn.Dense(self.hidden, kernel_init=torch_uniform(fan_in), bias_init=torch_uniform(fan_in),
                       param_dtype=self.param_dtype, name="fc1")
        features = ACTIVATIONS[self.activation](fc1((2 * bits - 1).astype(self.param_dtype)))
        return later_layers(features, self.depth, self.activation, self.classes, True, self.param_dtype)


LAYERNORM_EPS = 1e-5  # PyTorch's (Flax's default is 1e-6)


class CausalAttention(nn.Module):
    """Multi-head causal self-attention. The heads' query, key, value and output maps are
    stored side by side as [d_model, heads * d_head] (output [heads * d_head, d_model])
    matrices. ``style`` "nanda": no biases, each entry N(0, 1/d_model) as in Nanda et al.'s
    code; "grokfast": PyTorch's ``nn.MultiheadAttention`` as Lee et al.'s code builds it
    (biases, zero at first; query, key and value Xavier-uniform over their stacked
    [3 d_model, d_model] matrix, the output map like ``nn.Linear``). ``last_only`` computes
    the attention of the last position alone (its keys and values still come from every
    position): what a final layer needs."""

    heads: int
    param_dtype: Any = jnp.float32
    style: str = "nanda"

    @nn.compact
    def __call__(self, x: jax.Array, last_only: bool) -> jax.Array:
        batch, positions, d_model = x.shape
        d_head = d_model // self.heads
        torch_style = self.style == "grokfast"
        if torch_style:
            init = uniform((6 / (d_model + 3 * d_model)) ** 0.5)  # Xavier over the [3 d_model, d_model] input projection
            out_init = torch_uniform(d_model)
        else:
            init = out_init = nn.initializers.normal(d_model**-0.5)
        dense = partial(nn.Dense, use_bias=torch_style, bias_init=nn.initializers.zeros, param_dtype=self.param_dtype)

        def project(name, inputs):
            out = dense(self.heads * d_head, kernel_init=init, name=name)(inputs)
            return out.reshape(out.shape[:-1] + (self.heads, d_head))

        queries = project("query", x[:, -1:] if last_only else x)  # [batch, q, heads, d_head]
        keys, values = project("key", x), project("value", x)  # [batch, k, heads, d_head]
        scores = jnp.einsum("bqhd,bkhd->bhqk", queries, keys) / jnp.sqrt(jnp.asarray(d_head, x.dtype))
        query_position = jnp.arange(positions)[-queries.shape[1]:, None]
        scores = jnp.where(jnp.arange(positions)[None, :] <= query_position, scores, -jnp.inf)
        mixed = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), values)
        return dense(d_model, kernel_init=out_init, name="out")(mixed.reshape(mixed.shape[:2] + (self.heads * d_head,)))


class TransformerBlock(nn.Module):
    """Attention then an MLP (``fc1`` d_model -> d_mlp, ``activation``, ``fc2`` back), each
    added to the residual stream. ``style`` "nanda": each after a LayerNorm when
    ``layernorm`` is on (pre-LN), MLP weights N(0, 1/d_model), biases 0, as in Nanda et al.'s
    code; "grokfast": Lee et al.'s block, which normalises the stream itself before the
    attention (x = LN(x); x = x + attention(x)), then x + MLP(LN(x)), its linear layers
    initialised like ``nn.Linear``. Returns the residual stream (the last position alone
    with ``last_only``) and the MLP's hidden activations."""

    heads: int
    d_mlp: int
    layernorm: bool = False
    param_dtype: Any = jnp.float32
    style: str = "nanda"
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array, last_only: bool) -> tuple[jax.Array, jax.Array]:
        d_model = x.shape[-1]
        norm = (lambda name: nn.LayerNorm(epsilon=LAYERNORM_EPS, param_dtype=self.param_dtype, name=name)) if self.layernorm else \
            (lambda name: lambda y: y)
        normed = norm("ln1")(x)
        attended = CausalAttention(self.heads, self.param_dtype, self.style, name="attention")(normed, last_only)
        x = normed if self.style == "grokfast" else x
        x = (x[:, -1:] if last_only else x) + attended
        if self.style == "grokfast":
            kernel_init = bias_init = torch_uniform
        else:
            kernel_init, bias_init = (lambda fan_in: nn.initializers.normal(d_model**-0.5)), (lambda fan_in: nn.initializers.zeros)

        def dense(features, fan_in, name):
            return nn.Dense(features, kernel_init=kernel_init(fan_in), bias_init=bias_init(fan_in),
                            param_dtype=self.param_dtype, name=name)

        hidden = ACTIVATIONS[self.activation](dense(self.d_mlp, d_model, "fc1")(norm("ln2")(x)))
        x = x + dense(d_model, self.d_mlp, "fc2")(hidden)
        return x, hidden


class Transformer(nn.Module):
    """The grokking literature's small transformer, in one of two styles (``style``).

    "nanda" (Nanda et al.'s code): the tokens [a, b, "="] (vocabulary m + 1, "=" is token
    m), learned token and position embeddings, ``layers`` causal blocks, and the unembedding
    read at the last position, over the m residues; every matrix N(0, 1/d_model) except the
    unembedding, N(0, 1/(m + 1)) (their vocabulary size); biases 0; no LayerNorm unless
    asked.

    "grokfast" (Lee et al.'s grokfast code, their reading of Power et al.): the tokens [a,
    op, b, "="] (vocabulary m + 2: "=" is token m, the operation m + 1), embeddings N(0, 1)
    as ``nn.Embedding``, attention with biases, Lee et al.'s block (:class:`TransformerBlock`),
    a final LayerNorm, and an unembedding without bias over the whole vocabulary (two
    classes no label uses), initialised like ``nn.Linear``. ``layernorm`` must be on.

    In a causal transformer only the last position reaches the output, so by default the
    final block computes its queries, attention output and MLP at that position alone
    (``last_position_only``): the same numbers as the full computation, for fewer FLOPs.
    Returns the logits [batch, classes] and the final MLP's hidden activations at the last
    position [batch, d_mlp] (the features whose diversity is measured)."""

    m: int
    layers: int = 1
    d_model: int = 128
    heads: int = 4
    d_mlp: int = 512
    layernorm: bool = False
    param_dtype: Any = jnp.float32
    last_position_only: bool = True
    style: str = "nanda"
    activation: str = "relu"

    @nn.compact
    def __call__(self, a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
        dtype, grokfast = self.param_dtype, self.style == "grokfast"
        init = nn.initializers.normal(1.0 if grokfast else self.d_model**-0.5)
        if grokfast:
            tokens = jnp.stack([a, jnp.full_like(a, self.m + 1), b, jnp.full_like(a, self.m)], axis=-1)
        else:
            tokens = jnp.stack([a, b, jnp.full_like(a, self.m)], axis=-1)
        vocabulary = self.m + 2 if grokfast else self.m + 1
        x = nn.Embed(vocabulary, self.d_model, embedding_init=init, param_dtype=dtype, name="embed")(tokens)
        x = x + self.param("position_embedding", init, (tokens.shape[-1], self.d_model), dtype)
        for layer in range(self.layers):
            last = self.last_position_only and layer == self.layers - 1
            x, hidden = TransformerBlock(self.heads, self.d_mlp, self.layernorm, dtype, self.style, self.activation,
                                         name=f"block_{layer}")(x, last)
        if self.layernorm:
            x = nn.LayerNorm(epsilon=LAYERNORM_EPS, param_dtype=dtype, name="ln_final")(x)
        unembed_init = torch_uniform(self.d_model) if grokfast else nn.initializers.normal((self.m + 1) ** -0.5)
        logits = nn.Dense(vocabulary if grokfast else self.m, use_bias=False, kernel_init=unembed_init, param_dtype=dtype,
                          name="unembed")(x[:, -1])
        return logits, hidden[:, -1]


def hidden_layer(params) -> dict:
    """The parameters of the layer whose neurons the study measures: ModularNet's ``fc1``, or
    the transformer's last MLP input layer (``block_<L-1>/fc1``)."""
    tree = params["params"]
    if "fc1" in tree:
        return tree["fc1"]
    return tree[max((name for name in tree if name.startswith("block_")), key=lambda name: int(name[6:]))]["fc1"]


def fc1_kernel(params) -> jax.Array:
    """The hidden layer's weight W1, one column per neuron: ModularNet's [2h, h] ([2m, h]
    one-hot), the transformer's last MLP input weights [d_model, d_mlp]."""
    return hidden_layer(params)["kernel"]


def fc2_kernel(params) -> jax.Array:
    """ModularNet's output layer's weight V as an [h, m] array."""
    return params["params"]["fc2"]["kernel"]


def without_output_layer(params) -> dict:
    """The parameters with the output layer (``fc2``, the transformer's ``unembed``) set to
    zero: the network's output is then 0 at any scale of the others."""
    tree = params["params"]
    name = "unembed" if "unembed" in tree else "fc2"
    return {**params, "params": {**tree, name: jax.tree.map(jnp.zeros_like, tree[name])}}


def weight_norms(params) -> dict[str, jax.Array]:
    """The transformer's weight norms by part: ``weight_norm`` (every parameter: Nanda et al.'s
    total sum of squared weights is its square), ``embedding_weight_norm`` (W_E and W_pos),
    ``attention_weight_norm`` and ``mlp_weight_norm`` ([layers], each block's attention maps,
    its MLP's weights and biases), ``unembedding_weight_norm`` (W_U)."""
    tree = params["params"]

    def norm(*subtrees):
        return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(subtrees)))

    blocks = [tree[f"block_{index}"] for index in range(sum(name.startswith("block_") for name in tree))]
    return {
        "weight_norm": norm(tree),
        "embedding_weight_norm": norm(tree["embed"], tree["position_embedding"]),
        "attention_weight_norm": jnp.stack([norm(block["attention"]) for block in blocks]),
        "mlp_weight_norm": jnp.stack([norm(block["fc1"], block["fc2"]) for block in blocks]),
        "unembedding_weight_norm": norm(tree["unembed"]),
    }


def token_embedding(params) -> jax.Array:
    """The transformer's embedding of the m residues W_E, [m, d_model] (the "=" row left out)."""
    table = params["params"]["embed"]["embedding"]
    return table[: table.shape[0] - 1]


def operand_weights(params) -> tuple[jax.Array, jax.Array]:
    """Each hidden neuron's input weights as functions of operand a and of operand b, two
    [m, h] arrays: W1's halves, seen through the embedding when there is one."""
    kernel = fc1_kernel(params)
    width = kernel.shape[0] // 2
    if "embed" not in params["params"]:
        return kernel[:width], kernel[width:]
    table = params["params"]["embed"]["embedding"]
    return table @ kernel[:width], table @ kernel[width:]
