"""Optimizers with PyTorch semantics, and grokfast's gradient filters, built from optax
pieces with per-run traced hyperparameters (lr, wd, the filters' alpha and lambda)."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax.contrib import MuonDimensionNumbers, scale_by_muon

# torch.optim.Adam / AdamW defaults
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


def make_optimizer(
    name: str,
    learning_rate: jax.Array | float,
    weight_decay: jax.Array | float,
    betas: tuple[float, float] = (ADAM_B1, ADAM_B2),
    warmup_steps: int = 0,
    eps: float = ADAM_EPS,
    muon_adam_lr: float | None = None,
) -> optax.GradientTransformation:
    """``adam``: torch.optim.Adam(betas=betas, weight_decay=wd), coupled L2 (wd*theta joins
    the gradient before the moments); ``adamw``: torch.optim.AdamW, decoupled (theta shrinks
    by lr*wd); ``sgd``: torch.optim.SGD(weight_decay=wd) without momentum; ``muon``: see
    :func:`muon`. With ``warmup_steps``, step k (from 1) uses lr * min(1, k / warmup_steps);
    ``eps`` is Adam's (PyTorch's 1e-8; Prieto et al. use 1e-25); ``muon_adam_lr``: the
    learning rate of Muon's AdamW part (None: ``learning_rate``).

    ``learning_rate`` and ``weight_decay`` may be traced arrays, so one compiled program
    serves every value.
    """
    if name == "muon":
        return muon(learning_rate, weight_decay, betas, warmup_steps, eps, muon_adam_lr)
    adam = optax.scale_by_adam(*betas, eps)
    steps = {"adam": [optax.add_decayed_weights(weight_decay), adam], "adamw": [adam, optax.add_decayed_weights(weight_decay)],
             "sgd": [optax.add_decayed_weights(weight_decay)]}
    if name not in steps:
        raise ValueError(f"unknown optimizer {name!r}")
    return optax.chain(*steps[name], *warmup(warmup_steps), optax.scale_by_learning_rate(learning_rate))


def warmup(steps: int) -> list[optax.GradientTransformation]:
    """A linear learning-rate warm-up over ``steps`` optimizer steps (none for 0)."""
    if not steps:
        return []
    # in the default float type: float64 runs (jax_enable_x64) need the factor in float64 too
    return [optax.scale_by_schedule(lambda count: jnp.minimum(1.0, (count + 1).astype(jnp.result_type(float)) / steps))]


def hidden_matrix_labels(params) -> dict:
    """"muon" for the hidden weight matrices ([inputs, outputs] kernels): ModularNet's ``fc1``
    (and an MLP's further hidden layers), every attention and MLP matrix of a transformer's blocks; "adam" for every other
    parameter: embeddings, biases, LayerNorms, the output layer."""
    def label(path, leaf):
        names = [getattr(entry, "key", None) for entry in path]
        in_block = any(str(name).startswith("block_") for name in names)
        hidden = names[-2:] == ["fc1", "kernel"] or (str(names[-2]).startswith("hidden_") and names[-1] == "kernel")
        return "muon" if hidden or (in_block and names[-1] == "kernel" and leaf.ndim == 2) else "adam"

    return jax.tree_util.tree_map_with_path(label, params)


def scale_by_width() -> optax.GradientTransformation:
    """Scale an [inputs, outputs] matrix's orthogonalised update by sqrt(max(1, outputs /
    inputs)), as Muon's reference code and optax's ``muon`` do."""
    def update(updates, state, params=None):
        return jax.tree.map(lambda u: u * math.sqrt(max(1.0, u.shape[1] / u.shape[0])), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update)


def muon(learning_rate, weight_decay, betas=(ADAM_B1, ADAM_B2), warmup_steps: int = 0,
         eps: float = ADAM_EPS, adam_lr: float | None = None) -> optax.GradientTransformation:
    """Muon on the hidden layer's weight matrix, AdamW (:func:`make_optimizer`'s) on the
    rest, as Muon's authors recommend, at ``adam_lr`` (None: the same learning rate). The hidden matrix's update is optax's
    ``scale_by_muon`` (Nesterov momentum 0.95, five Newton–Schulz steps orthogonalising it,
    inputs as the reduction axis) scaled by :func:`scale_by_width`; weight decay is
    decoupled on both parts (theta shrinks by lr*wd each step)."""
    def muon_dimensions(params):  # which leaves Muon orthogonalises, and along which axes
        return jax.tree.map(lambda label: MuonDimensionNumbers(0, 1) if label == "muon" else None,
                            hidden_matrix_labels(params))

    hidden = optax.chain(
        scale_by_muon(weight_dimension_numbers=muon_dimensions),
        scale_by_width(),
        optax.add_decayed_weights(weight_decay),
        *warmup(warmup_steps),
        optax.scale_by_learning_rate(learning_rate),
    )
    adam = make_optimizer("adamw", learning_rate if adam_lr is None else adam_lr, weight_decay, betas, warmup_steps, eps)
    return optax.partition({"muon": hidden, "adam": adam},
                           hidden_matrix_labels)


def orthogonal_gradient(eps: float = 1e-30) -> optax.GradientTransformation:
    """⊥Grad (Prieto et al. 2025): each parameter's gradient g without its part along the
    parameter w, rescaled to the gradient's norm, g_perp = g - (<w, g> / (<w, w> + eps)) w,
    then g_perp * |g| / (|g_perp| + eps), per parameter array as their code does it. A zero
    parameter passes its gradient unchanged. Chained before an optimizer (⊥AdamW, ⊥SGD); the
    optimizer's weight decay joins after it."""
    def one(g, w):
        perp = g - jnp.vdot(w, g) / (jnp.vdot(w, w) + eps) * w
        return perp * (jnp.sqrt(jnp.vdot(g, g)) / (jnp.sqrt(jnp.vdot(perp, perp)) + eps))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("orthogonal_gradient needs the parameters: optimizer.update(grads, state, params)")
        return jax.tree.map(one, updates, params), state

    return optax.GradientTransformation(optax.init_empty_state, update)


class EmaFilterState(NamedTuple):
    count: jax.Array
    average: optax.Updates  # h, the exponential moving average of the gradients


def grokfast_ema(alpha, lamb) -> optax.GradientTransformation:
    """Grokfast-EMA (Lee et al. 2024): h <- alpha h + (1 - alpha) g, and the gradient passed on
    is g + lamb h. h starts at the first gradient, as in the paper's code."""
    def init(params):
        return EmaFilterState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        first = state.count == 0
        average = jax.tree.map(lambda h, g: jnp.where(first, g, alpha * h + (1 - alpha) * g), state.average, grads)
        return jax.tree.map(lambda g, h: g + lamb * h, grads, average), EmaFilterState(state.count + 1, average)

    return optax.GradientTransformation(init, update)


class WindowFilterState(NamedTuple):
    count: jax.Array
    window: optax.Updates  # the last ``window`` gradients, a ring buffer per leaf


def grokfast_ma(window: int, lamb) -> optax.GradientTransformation:
    """Grokfast-MA (Lee et al. 2024): once ``window`` gradients have been seen, the gradient
    passed on is g + lamb * (mean of the last ``window``, g included); before that, g."""
    def init(params):
        return WindowFilterState(jnp.zeros((), jnp.int32), jax.tree.map(lambda p: jnp.zeros((window,) + p.shape, p.dtype), params))

    def update(grads, state, params=None):
        slot = state.count % window
        buffer = jax.tree.map(lambda b, g: b.at[slot].set(g), state.window, grads)
        full = state.count + 1 >= window
        filtered = jax.tree.map(lambda g, b: jnp.where(full, g + lamb * jnp.mean(b, axis=0), g), grads, buffer)
        return filtered, WindowFilterState(state.count + 1, buffer)

    return optax.GradientTransformation(init, update)


def gradient_filter(kind: str, window: int, alpha, lamb) -> optax.GradientTransformation:
    """The grokfast filter ``kind``: "ema" (uses ``alpha``) or "ma" (uses ``window``)."""
    if kind == "ema":
        return grokfast_ema(alpha, lamb)
    if kind == "ma":
        return grokfast_ma(window, lamb)
    raise ValueError(f"unknown gradient filter {kind!r}")
