"""Presets and the configuration checks that go with the Li2 network and per-run sizes."""

import pytest

from grokjax.config import PRESETS, ConfigError, SweepConfig, grid_plan, sweep_plan_from_mapping


def plan(mapping, source):
    """The one program of a mapping without list-valued static fields."""
    (config,) = sweep_plan_from_mapping(mapping, source).programs
    return config


def test_li2_preset_and_overrides():
    config = plan({"preset": "li2"}, "test")
    assert (config.model, config.activation, config.loss, config.batch_size) == ("li2", "square", "mse", 0)
    assert (config.m, config.hidden, config.epochs, config.lrs, config.wds) == (23, 512, 3000, (1e-3,), (0.0, 1e-4))
    # keys given beside the preset win, whatever their order
    config = plan({"hidden": 64, "preset": "li2", "activation": "relu", "loss": "ce"}, "test")
    assert (config.model, config.hidden, config.activation, config.loss) == ("li2", 64, "relu", "ce")
    assert plan({"preset": "study"}, "test") == SweepConfig()
    assert set(PRESETS) == {"study", "study-grid", "li2", "nanda", "power", "transformer-cpu", "prieto", "grokfast"}


@pytest.mark.parametrize("mapping,message", [
    ({"preset": "li3"}, "preset must be one of study, study-grid, li2"),
    ({"activation": "tanh"}, "activation must be one of relu, square, silu"),
    ({"loss": "l1"}, "loss must be one of ce, ce_log1p, stablemax, mse"),
    ({"model": "cnn"}, "model must be one of modularnet, li2, mlp"),
    ({"geometry_every": -1}, "geometry_every must be >= 0"),
    ({"min_train_frac": 0.3}, "need full batch"),
    ({"min_train_frac": 0.6, "batch_size": 0}, "min_train_frac must lie in (0, min(train_fracs)=0.5]"),
    ({"fourier_every": 97}, "into 1-epoch chunks"),
])
def test_bad_values_name_the_key(mapping, message):
    with pytest.raises(ConfigError) as error:
        plan(mapping, "sweep.toml")
    assert message in str(error.value) and str(error.value).startswith("sweep.toml")


def test_x2xyy2_takes_any_modulus():
    assert plan({"op": "x2xyy2", "m": 25}, "sweep.toml").n_pairs == 625


@pytest.mark.parametrize("every,chunk", [(100, 50), (30, 30), (10, 10), (75, 25), (120, 40)])
def test_snapshots_fall_on_chunk_ends(every, chunk):
    assert SweepConfig(fourier_every=every, chunk_epochs=50).snapshot_chunk == chunk


def test_the_flags_names_of_grid_fields_read_as_the_field_names():
    config = plan({"wd": [1e-4, 1e-3], "lr": 3e-3, "train_frac": 0.3, "init_scale": [1, 2], "seeds": 2}, "sweep.toml")
    assert (config.wds, config.lrs, config.train_fracs, config.init_scales) == ((1e-4, 1e-3), (3e-3,), (0.3,), (1.0, 2.0))
    with pytest.raises(ConfigError, match=r"sweep.toml: wds and wd are one setting \(wds\); give it once"):
        plan({"wds": [1e-4], "wd": [1e-3]}, "sweep.toml")


def test_a_grid_refuses_per_run_sizes():
    with pytest.raises(ConfigError, match="the command line: min_train_frac sizes arrays for runs with their own"):
        grid_plan({"min_train_frac": 0.3, "batch_size": 0}, "the command line")
