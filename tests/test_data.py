import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grokjax.config import ConfigError, SweepConfig
from grokjax.data import batch_schedule, make_dataset, permutations_of_5, random_subset
from grokjax.train import grid_hparams, grid_rows, init_run, split_run


@pytest.mark.parametrize("op", ["add", "sub", "mul", "mul_nz", "div", "x2xyy2"])
def test_dataset_labels(op):
    m = 7
    ds = make_dataset(m, op)
    expected = {
        "add": lambda a, b: (a + b) % m,
        "sub": lambda a, b: (a - b) % m,
        "mul": lambda a, b: (a * b) % m,
        "mul_nz": lambda a, b: (a * b) % m,
        # c = a / b  <=>  c * b = a (mod m)
        "div": lambda a, b: next(c for c in range(m) if (c * b) % m == a),
        "x2xyy2": lambda a, b: (a**2 + a * b + b**2) % m,
    }[op]
    pairs = {(a, b) for a in range(m) for b in range(m) if op not in ("div", "mul_nz") or b != 0}
    assert SweepConfig(m=m, op=op, train_fracs=(0.5,), batch_size=0).n_pairs == len(pairs)
    assert set(zip(ds.a.tolist(), ds.b.tolist())) == pairs
    assert len(ds.a) == len(pairs)
    for a, b, label in zip(ds.a, ds.b, ds.label):
        assert label == expected(int(a), int(b))


def s5_table(op: str) -> np.ndarray:
    """The op's labels as a [120, 120] table: entry [x, y] is x op y."""
    ds = make_dataset(120, op)
    table = np.full((120, 120), -1)
    table[ds.a, ds.b] = ds.label
    return table


def test_s5_is_a_non_abelian_group():
    table = s5_table("s5")
    elements = np.arange(120)
    assert sorted(table[0].tolist()) == elements.tolist()  # every row a permutation of the elements
    np.testing.assert_array_equal(table[0], elements)  # element 0 (the identity permutation) is neutral
    np.testing.assert_array_equal(table[:, 0], elements)
    inverse = np.argmax(table == 0, axis=1)  # the one y with x∘y = e
    np.testing.assert_array_equal(table[elements, inverse], 0)
    np.testing.assert_array_equal(table[inverse, elements], 0)
    x, y, z = np.meshgrid(elements, elements, elements, indexing="ij")
    np.testing.assert_array_equal(table[table[x, y], z], table[x, table[y, z]])  # associative
    assert (table != table.T).sum() > 0  # not commutative


def test_s5_composes_left_to_right_and_the_other_ops_follow_from_it():
    perms = permutations_of_5().tolist()
    swap, cycle = perms.index([1, 0, 2, 3, 4]), perms.index([1, 2, 3, 4, 0])
    table = s5_table("s5")
    # x∘y applies x, then y: i -> cycle[swap[i]]
    assert perms[table[swap, cycle]] == [2, 1, 3, 4, 0]
    inverse = np.argmax(table == 0, axis=1)
    x, y = np.meshgrid(np.arange(120), np.arange(120), indexing="ij")
    np.testing.assert_array_equal(s5_table("s5conj"), table[table[x, y], inverse[x]])
    np.testing.assert_array_equal(s5_table("s5aba"), table[table[x, y], x])


@pytest.mark.parametrize("op", ["s5", "s5conj", "s5aba"])
def test_s5_ops_need_120_elements(op):
    with pytest.raises(ConfigError, match="m 120"):
        SweepConfig(op=op)
    assert SweepConfig(op=op, m=120).n_pairs == 14400


def clean_labels(config):
    """split_run's label arguments for a split without corrupted labels."""
    return jnp.asarray(make_dataset(config.m, config.op).label), jax.random.key(0), jnp.int32(0)


def test_split_is_a_partition():
    config = SweepConfig(m=11, train_fracs=(0.5,), batch_size=0)
    run_data = split_run(config, jax.random.key(3), jnp.int32(config.n_train), *clean_labels(config))
    train, test = np.asarray(run_data.train_pairs), np.asarray(run_data.test_pairs)
    assert len(train) == 60 and len(test) == 61
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(121))
    assert np.all(np.asarray(run_data.train_weight) == 1) and np.all(np.asarray(run_data.test_weight) == 1)


def test_smaller_per_run_train_set_masks_the_rest():
    """A run with fewer training pairs than the configuration's train set keeps the
    static sizes: the pairs it does not train on are masked out of train and into test."""
    config = SweepConfig(m=11, train_fracs=(0.5,), min_train_frac=0.2, batch_size=0)
    full = split_run(config, jax.random.key(3), jnp.int32(config.n_train), *clean_labels(config))
    small = split_run(config, jax.random.key(3), jnp.int32(30), *clean_labels(config))
    assert (config.n_train, config.n_test) == (60, 121 - 24)
    trained = np.asarray(small.train_pairs)[np.asarray(small.train_weight) == 1]
    tested = np.asarray(small.test_pairs)[np.asarray(small.test_weight) == 1]
    assert len(trained) == 30 and len(tested) == 91
    assert sorted(np.concatenate([trained, tested]).tolist()) == list(range(121))
    # the same permutation: the small run's training pairs are the first 30 of the full run's
    np.testing.assert_array_equal(trained, np.asarray(full.train_pairs)[:30])
    assert np.asarray(full.test_weight).sum() == 61


@pytest.mark.parametrize("n_train,batch", [(60, 16), (64, 16), (60, 60), (4704, 128)])
def test_batch_schedule_covers_each_example_once(n_train, batch):
    positions, weights = batch_schedule(jax.random.key(0), n_train, batch)
    steps = -(-n_train // batch)
    assert positions.shape == weights.shape == (steps, batch)
    real = np.asarray(positions)[np.asarray(weights) > 0]
    assert sorted(real.tolist()) == list(range(n_train))
    # Only the last batch is partial, like DataLoader(drop_last=False).
    assert np.asarray(weights)[:-1].all()
    assert np.asarray(weights)[-1].sum() == n_train - (steps - 1) * batch


def test_batch_order_changes_with_key():
    first, _ = batch_schedule(jax.random.key(0), 60, 16)
    second, _ = batch_schedule(jax.random.key(1), 60, 16)
    assert not np.array_equal(first, second)


def test_random_subset_is_distinct_and_in_range():
    subset = np.asarray(random_subset(jax.random.key(5), 100, 30))
    assert len(set(subset.tolist())) == 30 and subset.min() >= 0 and subset.max() < 100
    assert np.array_equal(random_subset(jax.random.key(5), 30, 30), np.arange(30))


def test_steps_per_epoch():
    assert SweepConfig(batch_size=128).steps_per_epoch == 37  # ceil(4704 / 128)
    assert SweepConfig(batch_size=0).steps_per_epoch == 1


@pytest.mark.slow
def test_seed_fixes_split_and_data_seed_shares_it():
    config = SweepConfig(m=11, hidden=8, batch_size=16, seeds=(0, 1), wds=(0.0,))
    run_data, _ = jax.vmap(lambda hp: init_run(config, hp))(grid_hparams(config))
    assert not np.array_equal(run_data.train_pairs[0], run_data.train_pairs[1])

    shared = SweepConfig(m=11, hidden=8, batch_size=16, seeds=(0, 1), wds=(0.0,), data_seeds=(0,))
    shared_data, shared_state = jax.vmap(lambda hp: init_run(shared, hp))(grid_hparams(shared))
    np.testing.assert_array_equal(shared_data.train_pairs[0], shared_data.train_pairs[1])
    # data_seed equal to the seed reproduces the default split
    np.testing.assert_array_equal(shared_data.train_pairs[0], run_data.train_pairs[0])
    # ... while initialisation still follows each run's own seed
    assert not np.array_equal(shared_state.prev_w1[0], shared_state.prev_w1[1])


def test_label_noise_corrupts_exactly_its_share_of_each_runs_own_training_labels():
    """round(noise x n_train) of a run's own training labels, each replaced by a wrong one,
    chosen by the data seed alone; the split and the test set are those without noise."""
    config = SweepConfig(m=11, train_fracs=(0.3, 0.6), label_noises=(0.0, 0.25, 0.5), seeds=(0, 1), data_seeds=(4, 5),
                         wds=(0.0,), batch_size=0)
    hparams = grid_hparams(config)
    run_data, _ = jax.vmap(lambda hp: init_run(config, hp))(hparams)
    clean_data, _ = jax.vmap(lambda hp: init_run(config, hp))(hparams._replace(n_corrupted=0 * hparams.n_corrupted))
    true = make_dataset(config.m, config.op).label
    by_key = {}
    for run, row in enumerate(grid_rows(config)):
        n_train = int(row["train_frac"] * 121)
        pairs = np.asarray(run_data.train_pairs[run])
        labels, corrupted = np.asarray(run_data.train_labels[run]), np.asarray(run_data.train_corrupted[run]) > 0
        assert corrupted.sum() == round(row["label_noise"] * n_train) and not corrupted[n_train:].any()
        np.testing.assert_array_equal(labels[~corrupted], true[pairs][~corrupted])
        assert (labels[corrupted] != true[pairs][corrupted]).all() and labels.min() >= 0 and labels.max() < 11
        for name in ("train_pairs", "train_weight", "test_pairs", "test_weight"):
            np.testing.assert_array_equal(getattr(run_data, name)[run], getattr(clean_data, name)[run], err_msg=name)
        by_key.setdefault((row["data_seed"], row["train_frac"], row["label_noise"]), []).append(labels)
    for same in by_key.values():  # the seed (initialisation, batch order) leaves the corruption alone
        np.testing.assert_array_equal(same[0], same[1])
    assert not np.array_equal(by_key[(4, 0.6, 0.5)][0], by_key[(5, 0.6, 0.5)][0])


@pytest.mark.parametrize("noise", [-0.1, 1.0])
def test_label_noise_outside_0_1_is_refused(noise):
    with pytest.raises(ConfigError, match="label_noises must lie in"):
        SweepConfig(label_noises=(noise,))
