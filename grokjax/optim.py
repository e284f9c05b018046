"""Optimizers with PyTorch semantics, built from optax pieces with per-run traced lr and wd."""

from __future__ import annotations

import jax
import optax

# torch.optim.Adam / AdamW defaults
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


def make_optimizer(name: str, learning_rate: jax.Array | float, weight_decay: jax.Array | float) -> optax.GradientTransformation:
    """``adam``: torch.optim.Adam(weight_decay=wd), coupled L2 (wd*theta joins the gradient
    before the moments); ``adamw``: torch.optim.AdamW, decoupled (theta shrinks by lr*wd);
    ``sgd``: torch.optim.SGD(weight_decay=wd) without momentum.

    ``learning_rate`` and ``weight_decay`` may be traced arrays, so one compiled program
    serves every value.
    """
    if name == "adam":
        return optax.chain(
            optax.add_decayed_weights(weight_decay),
            optax.scale_by_adam(ADAM_B1, ADAM_B2, ADAM_EPS),
            optax.scale_by_learning_rate(learning_rate),
        )
    if name == "adamw":
        return optax.chain(
            optax.scale_by_adam(ADAM_B1, ADAM_B2, ADAM_EPS),
            optax.add_decayed_weights(weight_decay),
            optax.scale_by_learning_rate(learning_rate),
        )
    if name == "sgd":
        return optax.chain(optax.add_decayed_weights(weight_decay), optax.scale_by_learning_rate(learning_rate))
    raise ValueError(f"unknown optimizer {name!r}")
