"""The PyTorch study, re-written from its description: the reference that grokjax is
checked against. Needs the optional ``torch`` extra (``pip install -e ".[torch]"``).

:func:`train_reference` trains one ModularNet the study's way — one optimizer step per
minibatch, metrics after each epoch — and returns the study's history dictionary (same
keys and meanings: ``w_norm_fc1``, ``delta_w_norm_fc1``, ``grad_norm_fc1``, …). Where the
data come from is a :class:`Schedule`: the study's own random streams
(:func:`study_schedule`), or any fixed split and batch order (the cross-check feeds
grokjax's, to compare trajectories step by step).
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from grokjax.data import make_dataset
from grokjax.export import STUDY_KEYS
from grokjax.metrics import GRAD_HISTORY, NORM_FLOOR


class ModularNet(nn.Module):
    """The study's network: Embedding(m, h) for a and b, concatenate, Linear(2h, h), ReLU, Linear(h, m)."""

    def __init__(self, m: int = 97, hidden_dim: int = 128):
        super().__init__()
        self.embed = nn.Embedding(m, hidden_dim)
        self.fc1 = nn.Linear(2 * hidden_dim, hidden_dim)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_dim, m)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.fc1(torch.cat([self.embed(x[:, 0]), self.embed(x[:, 1])], dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


def load_flax_params(model: ModularNet, params) -> None:
    """Copy grokjax parameters into the PyTorch model (Dense kernels are [in, out]; Linear weights [out, in])."""
    p = params["params"]
    with torch.no_grad():
        model.embed.weight.copy_(torch.tensor(np.array(p["embed"]["embedding"])))
        for name in ("fc1", "fc2"):
            layer = getattr(model, name)
            layer.weight.copy_(torch.tensor(np.array(p[name]["kernel"]).T))
            layer.bias.copy_(torch.tensor(np.array(p[name]["bias"])))


@dataclass
class Schedule:
    """Where one run's data come from: the split (indices into the task's pairs), each
    epoch's minibatches (lists of positions into the train split) and each epoch's
    feature-diversity batch (positions into the train split)."""

    train_pairs: np.ndarray
    test_pairs: np.ndarray
    epoch_batches: Callable[[int], list[np.ndarray]]
    probe_batch: Callable[[int], np.ndarray]


def study_schedule(n_pairs: int, train_frac: float, batch_size: int, seed: int) -> Schedule:
    """The study's randomness: ``random.seed(s); np.random.seed(s); torch.manual_seed(s)``,
    the pair list shuffled by ``random.shuffle``, then per epoch a fresh permutation of the
    train set from torch's global generator (what ``DataLoader(shuffle=True)`` draws), cut
    into batches with the last one partial; the feature batch is the first batch of one more
    fresh pass. Call it before building the model, as the study does."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    order = list(range(n_pairs))
    random.shuffle(order)
    n_train = int(train_frac * n_pairs)
    batch = batch_size or n_train

    def epoch_batches(epoch: int) -> list[np.ndarray]:
        permutation = torch.randperm(n_train).numpy()
        return [permutation[i : i + batch] for i in range(0, n_train, batch)]

    return Schedule(
        train_pairs=np.array(order[:n_train]),
        test_pairs=np.array(order[n_train:]),
        epoch_batches=epoch_batches,
        probe_batch=lambda epoch: epoch_batches(epoch)[0],
    )


def make_optimizer(name: str, model: nn.Module, lr: float, wd: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}")


def mean_pairwise_cosine(rows: torch.Tensor, absolute: bool = False) -> float:
    """Mean cosine over distinct pairs of rows (upper triangle); 0 with fewer than two rows."""
    if rows.shape[0] < 2:
        return 0.0
    norms = rows.norm(dim=1).clamp_min(NORM_FLOOR)
    cosine = (rows @ rows.T) / (norms[:, None] * norms[None, :])
    if absolute:
        cosine = cosine.abs()
    upper = torch.triu_indices(rows.shape[0], rows.shape[0], offset=1)
    return cosine[upper[0], upper[1]].mean().item()


@torch.no_grad()
def epoch_metrics(model: ModularNet, schedule: Schedule, epoch: int, train_x, test_x, test_y, grads: deque, previous_w1) -> dict:
    """The study's metrics after an epoch (all but the running train loss and accuracy);
    appends this epoch's last-minibatch fc1 gradient to ``grads``."""
    last_grad = model.fc1.weight.grad.detach().clone()
    grads.append(last_grad.flatten())
    test_logits = model(test_x)
    w1 = model.fc1.weight
    features = model.features(train_x[torch.tensor(np.array(schedule.probe_batch(epoch)))])
    singular_values = torch.linalg.svdvals(features)
    p = singular_values / singular_values.sum().clamp_min(NORM_FLOOR)
    p = p[p > 0]
    return {
        "test_loss": F.cross_entropy(test_logits, test_y).item(),
        "test_acc": (test_logits.argmax(dim=1) == test_y).double().mean().item(),
        "w_norm_fc1": w1.norm().item(),
        "delta_w_norm_fc1": 0.0 if previous_w1 is None else (w1 - previous_w1).norm().item(),
        "grad_norm_fc1": last_grad.norm().item(),
        "grad_cosine_sim": mean_pairwise_cosine(torch.stack(list(grads))),
        "feature_diversity": -(p * p.log()).sum().item(),
        "node_similarity_mean": mean_pairwise_cosine(w1),
        "neuron_grad_cosine": mean_pairwise_cosine(last_grad, absolute=True),
    }


def train_reference(
    m: int,
    op: str,
    hidden: int,
    epochs: int,
    lr: float,
    wd: float,
    schedule: Schedule,
    optimizer: str = "adam",
    init_params=None,
    dtype: torch.dtype = torch.float32,
    on_epoch: Callable[[int, dict], None] | None = None,
    measure: bool = True,
) -> dict[str, list]:
    """Train one run the study's way and return its history (study keys plus ``elapsed``).
    ``init_params`` (grokjax parameters) replaces PyTorch's own initialisation;
    ``measure=False`` is the bare training loop (running train loss and accuracy only)."""
    start = time.perf_counter()
    dataset = make_dataset(m, op)
    pairs = torch.as_tensor(np.stack([dataset.a, dataset.b], axis=1), dtype=torch.long)
    labels = torch.as_tensor(dataset.label, dtype=torch.long)
    train, test = (torch.tensor(np.array(schedule.train_pairs)), torch.tensor(np.array(schedule.test_pairs)))
    train_x, train_y = pairs[train], labels[train]
    test_x, test_y = pairs[test], labels[test]

    model = ModularNet(m, hidden).to(dtype)
    if init_params is not None:
        load_flax_params(model, init_params)
    opt = make_optimizer(optimizer, model, lr, wd)
    history = {key: [] for key in STUDY_KEYS}
    grads = deque(maxlen=GRAD_HISTORY)
    previous_w1 = None
    for epoch in range(epochs):
        loss_sum, correct, total = 0.0, 0, 0
        for positions in schedule.epoch_batches(epoch):
            positions = torch.tensor(np.array(positions))
            x, y = train_x[positions], train_y[positions]
            opt.zero_grad()
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            opt.step()
            total += len(y)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(dim=1) == y).sum().item()
        values = {"train_loss": loss_sum / total, "train_acc": correct / total}
        if measure:
            values.update(epoch_metrics(model, schedule, epoch, train_x, test_x, test_y, grads, previous_w1))
            previous_w1 = model.fc1.weight.detach().clone()
        for key, value in values.items():
            history[key].append(value)
        if on_epoch is not None:
            on_epoch(epoch, values)
    history["elapsed"] = time.perf_counter() - start
    return history


class Transformer(nn.Module):
    """The grokking transformer, written in PyTorch from its description (not from
    grokjax's code): tokens [a, b, m]; W_E and W_pos; per block, causal multi-head attention
    without biases and a ReLU MLP, each added to the residual stream (pre-LN LayerNorms when
    ``layernorm``); the final residual at the last position through W_U. Every position is
    computed (no last-position shortcut)."""

    def __init__(self, m: int, layers: int, d_model: int, heads: int, d_mlp: int, layernorm: bool = False):
        super().__init__()
        self.m, self.heads, self.layernorm = m, heads, layernorm
        self.W_E = nn.Parameter(torch.zeros(m + 1, d_model))
        self.W_pos = nn.Parameter(torch.zeros(3, d_model))
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            block = nn.ModuleDict({name: nn.Linear(d_model, d_model, bias=False) for name in ("q", "k", "v", "o")})
            block["mlp_in"], block["mlp_out"] = nn.Linear(d_model, d_mlp), nn.Linear(d_mlp, d_model)
            if layernorm:
                block["ln1"], block["ln2"] = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
            self.blocks.append(block)
        self.ln_final = nn.LayerNorm(d_model) if layernorm else nn.Identity()
        self.W_U = nn.Parameter(torch.zeros(d_model, m))

    def attention(self, block, x: torch.Tensor) -> torch.Tensor:
        batch, n, d_model = x.shape
        d_head = d_model // self.heads

        def split(y):  # [batch, n, d_model] -> [batch, heads, n, d_head]
            return y.view(batch, n, self.heads, d_head).transpose(1, 2)

        q, k, v = split(block["q"](x)), split(block["k"](x)), split(block["v"](x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d_head)
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        pattern = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        return block["o"]((pattern @ v).transpose(1, 2).reshape(batch, n, d_model))

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([pairs, torch.full_like(pairs[:, :1], self.m)], dim=1)
        x = self.W_E[tokens] + self.W_pos
        for block in self.blocks:
            norm1 = block["ln1"] if self.layernorm else nn.Identity()
            norm2 = block["ln2"] if self.layernorm else nn.Identity()
            x = x + self.attention(block, norm1(x))
            x = x + block["mlp_out"](torch.relu(block["mlp_in"](norm2(x))))
        return self.ln_final(x)[:, -1] @ self.W_U

    def weights(self) -> dict[str, torch.Tensor]:
        """Some weights in grokjax's layout ([in, out]), to compare after training."""
        return {"W_E": self.W_E, "W_pos": self.W_pos, "W_U": self.W_U, "W_Q": self.blocks[0]["q"].weight.T,
                "W_in": self.blocks[-1]["mlp_in"].weight.T}


class HookedLastPosition(nn.Module):
    """TransformerLens's ``HookedTransformer`` (the library of Nanda et al.'s replication)
    configured as grokjax's transformer and loaded with its parameters: d_vocab m + 1,
    d_vocab_out m, n_ctx 3, ReLU, LayerNorm or none, float64. Its attention and
    unembedding biases, which grokjax's transformer does not have, are 0 and frozen (as
    Nanda et al.'s replication freezes them). ``forward`` takes pairs and returns the
    logits at the last position. Needs the ``transformer-lens`` package."""

    def __init__(self, m: int, layers: int, d_model: int, heads: int, d_mlp: int, layernorm: bool, params):
        super().__init__()
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        self.m, self.heads = m, heads
        cfg = HookedTransformerConfig(n_layers=layers, d_model=d_model, d_head=d_model // heads, n_heads=heads,
                                      d_mlp=d_mlp, d_vocab=m + 1, d_vocab_out=m, n_ctx=3, act_fn="relu",
                                      normalization_type="LN" if layernorm else None, dtype=torch.float64,
                                      default_prepend_bos=False, device="cpu", seed=0)
        self.model = HookedTransformer(cfg)
        p = params["params"]
        d_head = d_model // heads
        state = {"embed.W_E": p["embed"]["embedding"], "pos_embed.W_pos": p["position_embedding"],
                 "unembed.W_U": p["unembed"]["kernel"]}
        for index in range(layers):
            ours, prefix = p[f"block_{index}"], f"blocks.{index}"
            for name in ("query", "key", "value"):  # [d_model, heads * d_head] -> [heads, d_model, d_head]
                kernel = np.array(ours["attention"][name]["kernel"]).reshape(d_model, heads, d_head).transpose(1, 0, 2)
                state[f"{prefix}.attn.W_{name[0].upper()}"] = kernel
            state[f"{prefix}.attn.W_O"] = np.array(ours["attention"]["out"]["kernel"]).reshape(heads, d_head, d_model)
            state.update({f"{prefix}.mlp.W_in": ours["fc1"]["kernel"], f"{prefix}.mlp.b_in": ours["fc1"]["bias"],
                          f"{prefix}.mlp.W_out": ours["fc2"]["kernel"], f"{prefix}.mlp.b_out": ours["fc2"]["bias"]})
            if layernorm:
                for name in ("ln1", "ln2"):
                    state.update({f"{prefix}.{name}.w": ours[name]["scale"], f"{prefix}.{name}.b": ours[name]["bias"]})
        if layernorm:
            state.update({"ln_final.w": p["ln_final"]["scale"], "ln_final.b": p["ln_final"]["bias"]})
        with torch.no_grad():
            named = dict(self.model.named_parameters())
            for name, value in state.items():
                named[name].copy_(torch.tensor(np.array(value)))
            for name, parameter in named.items():
                if name.split(".")[-1] in ("b_Q", "b_K", "b_V", "b_O", "b_U"):
                    parameter.zero_()
                    parameter.requires_grad_(False)
                elif name not in state:
                    raise ValueError(f"HookedTransformer parameter {name} has no counterpart in grokjax's transformer")

    def forward(self, pairs: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([pairs, torch.full_like(pairs[:, :1], self.m)], dim=1)
        return self.model(tokens)[:, -1]

    def weights(self) -> dict[str, torch.Tensor]:
        """The weights :meth:`Transformer.weights` names, in grokjax's layout."""
        blocks = self.model.blocks
        w_q = blocks[0].attn.W_Q  # [heads, d_model, d_head]
        return {"W_E": self.model.embed.W_E, "W_pos": self.model.pos_embed.W_pos, "W_U": self.model.unembed.W_U,
                "W_Q": w_q.permute(1, 0, 2).reshape(w_q.shape[1], -1), "W_in": blocks[-1].mlp.W_in}


def load_flax_transformer(model: Transformer, params) -> None:
    """Copy grokjax's transformer parameters into :class:`Transformer` (Flax kernels are
    [in, out], torch Linear weights [out, in])."""
    p = params["params"]

    def put(target, value):
        target.copy_(torch.tensor(np.array(value)))

    with torch.no_grad():
        put(model.W_E, p["embed"]["embedding"])
        put(model.W_pos, p["position_embedding"])
        put(model.W_U, p["unembed"]["kernel"])
        for index, block in enumerate(model.blocks):
            ours = p[f"block_{index}"]
            for name, flax_name in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out")):
                put(block[name].weight, np.array(ours["attention"][flax_name]["kernel"]).T)
            for name, flax_name in (("mlp_in", "fc1"), ("mlp_out", "fc2")):
                put(block[name].weight, np.array(ours[flax_name]["kernel"]).T)
                put(block[name].bias, ours[flax_name]["bias"])
            if model.layernorm:
                for name in ("ln1", "ln2"):
                    put(block[name].weight, ours[name]["scale"])
                    put(block[name].bias, ours[name]["bias"])
        if model.layernorm:
            put(model.ln_final.weight, p["ln_final"]["scale"])
            put(model.ln_final.bias, p["ln_final"]["bias"])


def train_transformer_reference(
    model: Transformer, train_x: torch.Tensor, train_y: torch.Tensor, steps: int, lr: float, wd: float,
    betas: tuple[float, float], warmup_steps: int = 0,
) -> list[float]:
    """Full-batch torch.optim.AdamW on the training pairs for ``steps`` steps (with a linear
    warm-up, LambdaLR, over ``warmup_steps``); returns the loss before each step."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, betas=betas, weight_decay=wd)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(train_x), train_y)
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(loss.item())
    return losses
