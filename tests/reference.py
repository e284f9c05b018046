"""Independent NumPy transcriptions used by the tests (not imported by grokjax)."""

import numpy as np


def forward(params, a, b):
    """ModularNet in NumPy, the PyTorch way: gather, concatenate, Linear, ReLU, Linear."""
    p = {k: {n: np.asarray(v, np.float64) for n, v in layer.items()} for k, layer in params["params"].items()}
    embedding = p["embed"]["embedding"]
    x = np.concatenate([embedding[a], embedding[b]], axis=1)
    hidden = np.maximum(x @ p["fc1"]["kernel"] + p["fc1"]["bias"], 0.0)
    return hidden @ p["fc2"]["kernel"] + p["fc2"]["bias"], hidden


def cross_entropy(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_softmax[np.arange(len(labels)), labels]


def adam_step(theta, g, m, v, t, lr, wd, decoupled=False, b1=0.9, b2=0.999, eps=1e-8):
    """Step t (1-based) of torch.optim.Adam (coupled L2) / AdamW (decoupled), as documented.
    Returns the new (theta, m, v)."""
    g = np.asarray(g, np.float64)
    if decoupled:
        theta = theta * (1 - lr * wd)
    else:
        g = g + wd * theta
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    theta = theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return theta, m, v


def torch_adam(theta, grads, lr, wd, decoupled=False):
    """torch.optim.Adam / AdamW over a gradient sequence."""
    theta = np.asarray(theta, np.float64).copy()
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        theta, m, v = adam_step(theta, g, m, v, t, lr, wd, decoupled)
    return theta


def mean_pairwise_cosine(rows, absolute=False):
    """Mean over i < j of cos(row_i, row_j), looping over pairs; zero rows give cosine 0."""
    rows = np.asarray(rows, np.float64)
    values = []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            denominator = max(np.linalg.norm(rows[i]), 1e-8) * max(np.linalg.norm(rows[j]), 1e-8)
            cosine = rows[i] @ rows[j] / denominator
            values.append(abs(cosine) if absolute else cosine)
    return float(np.mean(values)) if values else 0.0


def singular_value_entropy(features):
    s = np.linalg.svd(np.asarray(features, np.float64), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def grok_epoch_loop(test_acc, threshold=0.95, min_index=50, window=5):
    """The study's rule as a plain loop over one curve; None when never met."""
    for i in range(max(min_index, 1), len(test_acc) - window + 1):
        if all(x >= threshold for x in test_acc[i : i + window]) and test_acc[i - 1] < threshold:
            return i + 1
    return None
