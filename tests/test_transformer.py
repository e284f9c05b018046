"""The transformer: its exact last-position computation, its progress measures against
NumPy transcriptions of their definitions, test metrics every few epochs, a tiny sweep end
to end, and parity with the PyTorch transcription."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import grokjax
from grokjax import crosscheck, fourier
from grokjax.analysis import grok_epoch, held_test_metrics
from grokjax.config import ConfigError, SweepConfig, sweep_plan_from_mapping
from grokjax.model import Transformer, fc1_kernel, token_embedding, weight_norms
from grokjax.optim import hidden_matrix_labels


@pytest.mark.slow
@pytest.mark.parametrize("layers,layernorm", [(1, False), (2, True)])
def test_last_position_computation_equals_the_full_one(layers, layernorm):
    fast = Transformer(13, layers=layers, d_model=16, heads=4, d_mlp=24, layernorm=layernorm)
    full = fast.clone(last_position_only=False)
    a, b = (x.ravel() for x in jnp.meshgrid(jnp.arange(13), jnp.arange(13), indexing="ij"))
    params = fast.init(jax.random.key(1), a[:1], b[:1])
    (logits, hidden), (full_logits, full_hidden) = fast.apply(params, a, b), full.apply(params, a, b)
    assert logits.shape == (169, 13) and hidden.shape == (169, 24)
    np.testing.assert_allclose(logits, full_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hidden, full_hidden, rtol=1e-5, atol=1e-5)
    # the last position alone: changing the "=" token's embedding changes the output
    changed = jax.tree.map(lambda x: x, params)
    changed["params"]["embed"]["embedding"] = params["params"]["embed"]["embedding"].at[13].add(jnp.linspace(-1, 1, 16))
    assert np.abs(np.asarray(fast.apply(changed, a, b)[0] - logits)).max() > 1e-3


@pytest.mark.slow
def test_initialisation_scales_and_layout():
    model = Transformer(59, d_model=128, heads=4, d_mlp=512)
    params = model.init(jax.random.key(0), jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32))["params"]
    for leaf in (params["embed"]["embedding"], params["block_0"]["attention"]["query"]["kernel"], params["block_0"]["fc1"]["kernel"]):
        assert abs(float(jnp.std(leaf)) - 128**-0.5) < 0.1 * 128**-0.5
    assert abs(float(jnp.std(params["unembed"]["kernel"])) - 60**-0.5) < 0.1 * 60**-0.5
    assert not np.any(params["block_0"]["fc1"]["bias"]) and not np.any(params["block_0"]["fc2"]["bias"])
    assert fc1_kernel({"params": params}).shape == (128, 512)
    norms = weight_norms({"params": params})
    squares = {"/".join(str(k.key) for k in path): float(np.sum(np.square(leaf)))
               for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
    np.testing.assert_allclose(float(norms["weight_norm"]) ** 2, sum(squares.values()), rtol=1e-5)
    np.testing.assert_allclose(float(norms["attention_weight_norm"][0]) ** 2,
                               sum(v for k, v in squares.items() if "/attention/" in k), rtol=1e-5)
    np.testing.assert_allclose(float(norms["mlp_weight_norm"][0]) ** 2,
                               sum(v for k, v in squares.items() if "/fc" in k), rtol=1e-5)
    np.testing.assert_allclose(float(norms["embedding_weight_norm"]) ** 2 + float(norms["unembedding_weight_norm"]) ** 2
                               + float(norms["attention_weight_norm"][0]) ** 2 + float(norms["mlp_weight_norm"][0]) ** 2,
                               sum(squares.values()), rtol=1e-5)  # no LayerNorm: the parts make the whole
    assert token_embedding({"params": params}).shape == (59, 128)
    labels = jax.tree_util.tree_leaves_with_path(hidden_matrix_labels({"params": params}))
    muon = sorted("/".join(str(k.key) for k in path) for path, label in labels if label == "muon")
    assert muon == ["params/block_0/attention/key/kernel", "params/block_0/attention/out/kernel",
                    "params/block_0/attention/query/kernel", "params/block_0/attention/value/kernel",
                    "params/block_0/fc1/kernel", "params/block_0/fc2/kernel"]


def numpy_progress_losses(logits, a, b, m, key_classes, train):
    """Nanda et al.'s restricted and excluded losses, transcribed: project each output's
    logits over all pairs onto the normalised cos/sin(2 pi f (a + b) / m) vectors."""
    logits = np.asarray(logits, np.float64)
    labels = (a + b) % m
    directions = []
    for f in key_classes:
        for trig in (np.cos, np.sin):
            v = trig(2 * np.pi * f * (a + b) / m)
            directions.append(v / np.linalg.norm(v))
    directions = np.array(directions).reshape(-1, len(a))  # [2K, N]
    key_part = directions.T @ (directions @ logits)
    restricted = key_part + logits.mean(axis=0, keepdims=True)
    excluded = logits - key_part

    def ce(z, rows):
        z = z[rows]
        z = z - z.max(axis=1, keepdims=True)
        return np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), labels[rows]])

    return ce(restricted, np.arange(len(a))), ce(excluded, train)


@pytest.mark.parametrize("m", [11, 12])
def test_progress_losses_match_the_projection_onto_key_frequencies(m):
    rng = np.random.default_rng(m)
    a, b = (x.ravel() for x in np.meshgrid(np.arange(m), np.arange(m), indexing="ij"))
    labels = (a + b) % m
    # logits with a planted Fourier structure in a + b, plus noise that is not a function of a + b
    c = np.arange(m)
    logits = 3 * np.cos(2 * np.pi * 2 * (labels[:, None] - c[None, :]) / m) + rng.normal(size=(m * m, m))
    key = np.zeros(m // 2, bool)
    key[[1, 3]] = True  # classes 2 and 4
    train = rng.permutation(m * m)[: m * m // 2]
    mask = np.zeros(m * m)
    mask[train] = 1
    ours = fourier.progress_losses(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(key), jnp.asarray(mask))
    restricted, excluded = numpy_progress_losses(logits, a, b, m, [2, 4], train)
    np.testing.assert_allclose(float(ours["restricted_loss"]), restricted, rtol=1e-5)
    np.testing.assert_allclose(float(ours["excluded_loss"]), excluded, rtol=1e-5)
    # the planted frequency carries the answer: removing it costs, keeping it alone helps
    plain = numpy_progress_losses(logits, a, b, m, [], train)
    assert excluded > plain[1] and restricted < plain[0]


def test_embedding_summary_finds_the_planted_frequencies():
    m, d = 59, 32
    rng = np.random.default_rng(0)
    x = np.arange(m)[:, None]
    embedding = (np.cos(2 * np.pi * 5 * x / m + rng.uniform(0, 6, d)) * 2 + np.sin(2 * np.pi * 17 * x / m) * 1.5
                 + 0.05 * rng.normal(size=(m, d)))
    summary = fourier.embedding_summary(jnp.asarray(embedding))
    assert np.flatnonzero(np.asarray(summary["key_frequency"])).tolist() == [4, 16]  # classes 5 and 17
    assert int(summary["n_key_frequencies"]) == 2
    power = np.abs(np.fft.fft(embedding, axis=0)) ** 2  # [m, d]
    norms = np.sqrt(power[1 : m // 2 + 1].sum(axis=1) + power[m - 1 : m - m // 2 - 1 : -1].sum(axis=1))
    np.testing.assert_allclose(np.asarray(summary["embedding_norm"]), norms, rtol=1e-4)
    ascending = np.sort(norms)
    n = len(norms)
    gini = np.sum((2 * np.arange(1, n + 1) - n - 1) * ascending) / (n * ascending.sum())
    np.testing.assert_allclose(float(summary["gini"]), gini, rtol=1e-4)
    noise = fourier.embedding_summary(jnp.asarray(rng.normal(size=(m, 128))))
    assert int(noise["n_key_frequencies"]) == 0


def test_held_test_metrics_give_the_grokking_epoch_of_sparse_evaluation():
    every = np.linspace(0, 1, 400)[None, :] ** 4  # crosses 0.95 at epoch 395 (index 394)
    sparse = np.full_like(every, np.nan)
    sparse[:, 9::10] = every[:, 9::10]
    sparse[:, -1] = every[:, -1]
    held = held_test_metrics({"train_loss": np.ones_like(every), "test_loss": sparse, "test_acc": sparse})
    assert grok_epoch(every, window=1)[0] == 395 and grok_epoch(held["test_acc"], window=1)[0] == 400
    diverged = held_test_metrics({"train_loss": np.where(np.arange(400) < 200, 1.0, np.nan)[None],
                                  "test_loss": sparse, "test_acc": sparse})
    assert np.isnan(diverged["test_acc"][0, 200:]).all() and diverged["test_acc"][0, 198] == sparse[0, 189]


def test_presets_and_their_checks():
    nanda = sweep_plan_from_mapping({"preset": "nanda"}, "test").programs[0]
    assert (nanda.m, nanda.train_fracs, nanda.batch_size, nanda.optimizer, nanda.beta2, nanda.d_mlp) == (113, (0.3,), 0, "adamw", 0.98, 512)
    assert nanda.epochs >= 15000 and not nanda.layernorm
    power = sweep_plan_from_mapping({"preset": "power"}, "test").programs[0]
    assert (power.op, power.m, power.layers, power.batch_size, power.warmup_steps) == ("div", 97, 2, 512, 10)
    assert power.batch_size == min(512, power.n_train // 2)
    grokfast = sweep_plan_from_mapping({"preset": "grokfast"}, "test").programs[0]
    assert (grokfast.op, grokfast.m, grokfast.n_train, grokfast.n_pairs, grokfast.steps_per_epoch) == ("mul_nz", 97, 4656, 9312, 10)
    assert (grokfast.optimizer, grokfast.lrs, grokfast.wds, grokfast.beta2, grokfast.warmup_steps) == ("adam", (1e-3,), (0.0,),
                                                                                                    0.98, 10)
    assert grokfast.epochs * grokfast.steps_per_epoch == 300_000  # their budget
    with pytest.raises(ConfigError, match="always has its LayerNorms"):
        SweepConfig(model="transformer", transformer_style="grokfast")
    with pytest.raises(ConfigError, match="operation token"):
        SweepConfig(model="transformer", transformer_style="grokfast", layernorm=True, fourier_every=10)
    with pytest.raises(ConfigError, match="ReLU or GELU"):
        SweepConfig(model="transformer", activation="silu")
    with pytest.raises(ConfigError, match="multiple of heads"):
        SweepConfig(model="transformer", d_model=10, heads=4)
    with pytest.raises(ConfigError, match="beta2 must lie in"):
        SweepConfig(beta2=1.0)
    with pytest.raises(ConfigError, match="eval_every must be >= 1"):
        SweepConfig(eval_every=0)


TINY = dict(model="transformer", m=11, d_model=16, heads=2, d_mlp=32, batch_size=0, optimizer="adamw", beta2=0.98,
            wd=1.0, lr=3e-3, seeds=2, epochs=40, chunk_epochs=10, geometry_every=10, fourier_every=20)


@pytest.mark.slow
def test_tiny_transformer_sweep_end_to_end(tmp_path):
    every = grokjax.run(**TINY, progress=False)
    sparse = grokjax.run(**TINY, eval_every=7, out=tmp_path / "sweep", progress=False)
    # evaluating less often changes nothing else
    for name in ("train_loss", "train_acc", "w1_norm", "grad_norm"):
        np.testing.assert_array_equal(sparse.metrics[name], every.metrics[name])
    measured = np.array([e % 7 == 6 or e == 39 for e in range(40)])
    assert np.isnan(sparse.metrics["test_acc"][:, ~measured]).all()
    np.testing.assert_array_equal(sparse.metrics["test_acc"][:, measured], every.metrics["test_acc"][:, measured])
    assert np.isfinite(sparse.metrics["feature_diversity"][:, 9::10]).all()
    snapshot_epochs, snapshots = sparse.fourier
    np.testing.assert_array_equal(snapshot_epochs, [0, 20, 40])
    assert snapshots["embedding_norm"].shape == (2, 3, 5) and snapshots["restricted_loss"].shape == (2, 3)
    assert snapshots["mlp_weight_norm"].shape == (2, 3, 1) and snapshots["weight_norm"].shape == (2, 3)
    folder = tmp_path / "sweep"
    assert (folder / "figures" / "fourier_wd1_lr0.003.png").is_file() and (folder / "fourier.npz").is_file()
    assert (folder / "progress.csv").read_text().startswith("run,wd,lr,seed,grok_epoch,circuit_epoch,cleanup_epoch")
    loaded = grokjax.load(folder)
    np.testing.assert_array_equal(loaded.fourier[1]["excluded_loss"], snapshots["excluded_loss"])
    ds = loaded.to_xarray()
    assert ds["embedding_norm"].dims[-1] == "frequency" and ds.sizes["frequency"] == 5 and ds.sizes["layer"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("beta2,agrees", [(None, True), ("0.999", False)])
def test_parity_with_the_pytorch_transcription(capsys, beta2, agrees):
    # LayerNorm and a warm-up: every part of the network and of the optimiser (two layers: the test above),
    # in float64 inside this process (jax.enable_x64 holds for the call only); a reference with
    # the wrong beta2 must fail
    args = ["transformer", "--m", "13", "--d-model", "8", "--heads", "2", "--d-mlp", "16", "--layers", "1",
            "--layernorm", "--warmup-steps", "5", "--steps", "40", "--train-frac", "0.5"]
    status = crosscheck.main(args + (["--torch-beta2", beta2] if beta2 else []))
    out = capsys.readouterr().out
    assert (status, "every quantity agrees" in out) == (0 if agrees else 1, agrees), out
    assert "training loss, each of 40 steps" in out
    assert not jax.config.jax_enable_x64 and jnp.zeros(1).dtype == jnp.float32  # the process is back in float32


@pytest.mark.slow
def test_log1p_cross_entropy_keeps_tiny_losses_and_their_gradient():
    from grokjax.metrics import cross_entropy, cross_entropy_log1p

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 7)) * 3
    logits[0, 2] += 30  # label 2 leads by ~30: the loss is about 6 e^-30, far below float32's epsilon
    logits[1] *= 400  # large logits: nothing may overflow
    labels = np.array([2, 0, 1, 3, 4, 6])
    z = logits - logits.max(axis=1, keepdims=True)
    expected = np.log(np.exp(z).sum(axis=1)) - z[np.arange(6), labels]  # float64
    expected[0] = np.log1p(np.exp(np.delete(logits[0], 2) - logits[0, 2]).sum())
    ours = np.asarray(cross_entropy_log1p(jnp.asarray(logits, jnp.float32), jnp.asarray(labels)), np.float64)
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    assert float(cross_entropy(jnp.asarray(logits, jnp.float32), jnp.asarray(labels))[0]) == 0.0  # the usual form rounds
    grad = jax.grad(lambda x: cross_entropy_log1p(x, jnp.asarray(labels))[0])(jnp.asarray(logits, jnp.float32))
    np.testing.assert_allclose(float(grad[0, 2]), -expected[0], rtol=1e-4)  # d loss / d z_y = -(1 - p_y)


def test_progress_phases_from_hand_made_measures():
    from grokjax.analysis import final_embedding, progress_phases

    epochs = np.arange(0, 1001, 100)
    excluded = np.array([[4.0, 1.0, 0.1, 0.01, 0.5, 2.0, 5.0, 6.0, 6.0, 6.0, 6.0]])  # lowest at epoch 300
    gini = np.array([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.78, 0.8]])  # 0.95 * 0.8 = 0.76 first at 900
    test_loss = np.full((1, 1000), np.nan)
    test_loss[0, 9::10] = np.where(np.arange(10, 1001, 10) < 640, 20.0, 1e-3)  # falls at epoch 640
    test_loss[0, 300:400] = np.nan  # never measured there: held at the last measurement
    key = np.zeros((1, 11, 5))
    key[0, -1, [1, 3]] = 1
    snapshots = {"excluded_loss": excluded, "gini": gini, "key_frequency": key, "n_key_frequencies": key.sum(-1)}
    phases = progress_phases(epochs, snapshots, test_loss)
    assert (phases["circuit_epoch"][0], phases["cleanup_epoch"][0], phases["cleanup_end_epoch"][0]) == (300, 640, 900)
    final = final_embedding(snapshots)
    assert final["key_frequencies"][0] == "2 4" and final["final_n_key_frequencies"][0] == 2 and final["final_gini"][0] == 0.8
    never = progress_phases(epochs, snapshots, np.full((1, 1000), 20.0))
    assert never["circuit_epoch"][0] == 300 and np.isnan(never["cleanup_epoch"][0]) and np.isnan(never["cleanup_end_epoch"][0])


def torch_grokfast_decoder(params, m: int, heads: int):
    """Lee et al.'s grokfast decoder as PyTorch modules (nn.MultiheadAttention, nn.GELU,
    nn.LayerNorm, sequence-first), written from their description, holding grokjax's
    parameters: an independent path to the same logits."""
    import torch
    from torch import nn

    p = jax.tree.map(lambda x: torch.tensor(np.asarray(x, np.float64)), params["params"])
    d_model = p["embed"]["embedding"].shape[1]
    blocks = sorted(name for name in p if name.startswith("block_"))

    def layer_norm(weights):
        norm = nn.LayerNorm(d_model).double()
        norm.weight.data, norm.bias.data = weights["scale"], weights["bias"]
        return norm

    def linear(weights):
        layer = nn.Linear(*weights["kernel"].shape, bias="bias" in weights).double()
        layer.weight.data = weights["kernel"].T
        if "bias" in weights:
            layer.bias.data = weights["bias"]
        return layer

    def decoder(tokens):  # tokens [positions, batch], as their code feeds them
        h = p["embed"]["embedding"][tokens] + p["position_embedding"][:, None]
        mask = torch.triu(torch.full((len(tokens), len(tokens)), -float("inf"), dtype=torch.float64), diagonal=1)
        for name in blocks:
            block = p[name]
            attention = nn.MultiheadAttention(d_model, heads).double()
            q, k, v, out = (block["attention"][part] for part in ("query", "key", "value", "out"))
            attention.in_proj_weight.data = torch.cat([q["kernel"].T, k["kernel"].T, v["kernel"].T])
            attention.in_proj_bias.data = torch.cat([q["bias"], k["bias"], v["bias"]])
            attention.out_proj.weight.data, attention.out_proj.bias.data = out["kernel"].T, out["bias"]
            h = layer_norm(block["ln1"])(h)
            h = h + attention(h, h, h, attn_mask=mask, need_weights=False)[0]
            mlp = nn.Sequential(linear(block["fc1"]), nn.GELU(), linear(block["fc2"]))
            h = h + mlp(layer_norm(block["ln2"])(h))
        return linear(p["unembed"])(layer_norm(p["ln_final"])(h))

    return decoder


@pytest.mark.slow
def test_grokfast_style_matches_lee_et_al_decoder_in_pytorch():
    torch = pytest.importorskip("torch")
    m, heads = 11, 4
    with jax.enable_x64(True):
        model = Transformer(m, layers=2, d_model=16, heads=heads, d_mlp=64, layernorm=True, param_dtype=jnp.float64,
                            style="grokfast", activation="gelu")
        a, b = (x.ravel() for x in jnp.meshgrid(jnp.arange(m), jnp.arange(1, m), indexing="ij"))
        params = model.init(jax.random.key(3), a[:1], b[:1])
        logits, _ = model.apply(params, a, b)
        tokens = torch.tensor(np.stack([a, np.full_like(a, m + 1), b, np.full_like(a, m)]))  # [x, op, y, =]
        with torch.no_grad():
            expected = torch_grokfast_decoder(params, m, heads)(tokens)[-1].numpy()
    assert logits.shape == (m * (m - 1), m + 2)  # the whole vocabulary, as their head predicts it
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-10, atol=1e-10)
    # the initialisation of their PyTorch modules: embeddings N(0, 1), attention Xavier over the stacked
    # [3 d, d] projection, biases 0, linear layers U(+-1/sqrt(fan_in)) with their bias
    big = Transformer(97, layers=2, d_model=128, heads=4, d_mlp=512, layernorm=True, style="grokfast", activation="gelu")
    init = big.init(jax.random.key(0), jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32))["params"]
    block = init["block_0"]
    assert abs(float(jnp.std(init["embed"]["embedding"])) - 1) < 0.05
    assert abs(float(jnp.std(init["position_embedding"])) - 1) < 0.3
    assert abs(float(jnp.max(jnp.abs(block["attention"]["query"]["kernel"]))) - (6 / 512) ** 0.5) < 1e-3
    assert not np.any(block["attention"]["key"]["bias"]) and not np.any(block["attention"]["out"]["bias"])
    for name, fan_in in (("fc1", 128), ("fc2", 512)):
        for part in ("kernel", "bias"):
            assert abs(float(jnp.max(jnp.abs(block[name][part]))) - fan_in**-0.5) < 0.02 * fan_in**-0.5
    assert abs(float(jnp.max(jnp.abs(init["unembed"]["kernel"]))) - 128**-0.5) < 0.02 * 128**-0.5
    assert init["unembed"]["kernel"].shape == (128, 99) and "bias" not in init["unembed"]
