"""Tests for plastix.sims.datasets: real Fashion-MNIST files, tiny IDX/CIFAR files written
here, corrupt and missing files, synthetic sets, subsampling."""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
from dataset_files import IDX_STEMS, idx_bytes, write_cifar10, write_idx_folder
from hypothesis import given, settings
from hypothesis import strategies as st

from plastix.sims import datasets
from plastix.sims.datasets import (
    DATASETS,
    SYSTEM_FASHION_MNIST,
    Dataset,
    DatasetError,
    load_dataset,
    make_linear,
    make_xor,
    stratified_indices,
)


@pytest.fixture(autouse=True)
def _no_env_and_fresh_cache(monkeypatch):
    monkeypatch.delenv("PLASTIX_DATA", raising=False)
    yield
    datasets.clear_cache()


def write_cifar100(folder: Path, n_train=6, n_test=4, seed=1):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for name, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, n)]
        coarse = [f // 5 for f in fine]
        content = {b"data": data, b"fine_labels": fine, b"coarse_labels": coarse}
        (folder / name).write_bytes(pickle.dumps(content, protocol=4))
        splits[name] = (data, fine)
    meta = {
        b"fine_label_names": [f"fine{k}".encode() for k in range(100)],
        b"coarse_label_names": [f"coarse{k}".encode() for k in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=4))
    return splits


# ------------------------------------------------------------------ real Fashion-MNIST

needs_fashion = pytest.mark.skipif(
    not (SYSTEM_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="apt-get install dataset-fashion-mnist",
)


@needs_fashion
def test_fashion_mnist_real_files_shapes_ranges_and_balance():
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28)
    assert ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert 0.2 < ds.x_train.mean() < 0.4  # Fashion-MNIST mean pixel is about 0.286
    assert ds.n_classes == 10 and ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert np.array_equal(np.bincount(ds.y_train), np.full(10, 6000))
    assert np.array_equal(np.bincount(ds.y_test), np.full(10, 1000))
    assert ds.source == str(SYSTEM_FASHION_MNIST)
    assert ds.x_train.flags.writeable  # callers get their own arrays, not the cache's


@needs_fashion
def test_fashion_mnist_subsample_is_stratified_and_reproducible():
    a = load_dataset("fashion-mnist", n_train=100, n_test=30, seed=1)
    b = load_dataset("fashion-mnist", n_train=100, n_test=30, seed=1)
    c = load_dataset("fashion-mnist", n_train=100, n_test=30, seed=2)
    d = load_dataset("fashion-mnist", n_train=50, n_test=30, seed=1)
    assert a.x_train.shape == (100, 1, 28, 28) and a.x_test.shape == (30, 1, 28, 28)
    assert np.array_equal(np.bincount(a.y_train), np.full(10, 10))
    assert np.array_equal(np.bincount(a.y_test), np.full(10, 3))
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert np.array_equal(a.x_test, d.x_test)  # the test draw ignores n_train
    with pytest.raises(DatasetError, match="n_train=60001 is larger than the 60000"):
        load_dataset("fashion-mnist", n_train=60001)


# ------------------------------------------------------------------ IDX files written here


def test_mnist_from_gz_idx_files_via_root(tmp_path):
    x_train, y_train, x_test, y_test = write_idx_folder(tmp_path / "mnist", compress=True)
    ds = load_dataset("mnist", root=tmp_path)  # root is the parent folder
    assert ds.name == "mnist" and ds.source == str(tmp_path / "mnist")
    assert ds.x_train.shape == (12, 1, 5, 5) and ds.x_test.shape == (7, 1, 5, 5)
    np.testing.assert_array_equal(ds.x_train[:, 0], x_train.astype(np.float32) / 255)
    np.testing.assert_array_equal(ds.x_test[:, 0], x_test.astype(np.float32) / 255)
    assert np.array_equal(ds.y_train, y_train) and np.array_equal(ds.y_test, y_test)
    assert ds.classes == tuple("0123456789")
    same = load_dataset("mnist", root=tmp_path / "mnist")  # root is the folder itself
    assert np.array_equal(same.x_train, ds.x_train)


def test_mnist_from_raw_idx_files_via_env_var(tmp_path, monkeypatch):
    arrays = write_idx_folder(tmp_path / "data" / "mnist", compress=False, seed=3)
    monkeypatch.setenv("PLASTIX_DATA", str(tmp_path / "data"))
    ds = load_dataset("mnist")
    np.testing.assert_array_equal(ds.x_train[:, 0] * 255, arrays[0])
    monkeypatch.setenv("PLASTIX_DATA", str(tmp_path / "data" / "mnist"))
    assert np.array_equal(load_dataset("mnist").y_test, arrays[3])


def test_idx_files_with_dotted_names_are_found(tmp_path):
    arrays = write_idx_folder(tmp_path, compress=False, seed=4)
    for stem in IDX_STEMS:
        (tmp_path / stem).rename(tmp_path / stem.replace("-idx", ".idx"))
    assert np.array_equal(load_dataset("mnist", root=tmp_path).y_train, arrays[1])


def test_changed_files_are_read_again(tmp_path):
    write_idx_folder(tmp_path, n_train=12, seed=0)
    assert len(load_dataset("mnist", root=tmp_path).y_train) == 12
    arrays = write_idx_folder(tmp_path, n_train=9, seed=5)
    ds = load_dataset("mnist", root=tmp_path)
    np.testing.assert_array_equal(ds.x_train[:, 0] * 255, arrays[0])


def test_idx_bad_magic_names_the_file(tmp_path):
    write_idx_folder(tmp_path, compress=False)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x12\x34" + bad.read_bytes()[2:])
    with pytest.raises(DatasetError, match="bad magic") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(bad) in str(info.value)


def test_idx_truncated_gzip_names_the_file(tmp_path):
    write_idx_folder(tmp_path, compress=True)
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-20])
    with pytest.raises(DatasetError, match="corrupt or truncated") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(bad) in str(info.value)


@pytest.mark.parametrize("damage", ["truncated", "trailing bytes"])
def test_idx_wrong_size_names_the_file(tmp_path, damage):
    write_idx_folder(tmp_path, compress=False)
    bad = tmp_path / "train-images-idx3-ubyte"
    data = bad.read_bytes()
    bad.write_bytes(data[:-7] if damage == "truncated" else data + bytes(7))
    with pytest.raises(DatasetError, match="truncated or corrupt") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(bad) in str(info.value)


def test_idx_labels_not_matching_images(tmp_path):
    write_idx_folder(tmp_path, compress=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(DatasetError, match="12 images but .* 3 labels"):
        load_dataset("mnist", root=tmp_path)


def test_missing_folder_names_every_place_and_how_to_get_files(tmp_path, monkeypatch):
    nowhere = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion-mnist", root=nowhere)
    message = str(info.value)
    assert str(nowhere / "fashion-mnist") in message and f"{nowhere} (root argument)" in message
    assert "apt-get install dataset-fashion-mnist" in message and "root=" in message

    monkeypatch.setenv("PLASTIX_DATA", str(nowhere))
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10")
    message = str(info.value)
    assert str(nowhere / "cifar-10-batches-py") in message and "$PLASTIX_DATA" in message
    assert "cifar-10-python.tar.gz" in message


def test_incomplete_folder_lists_the_missing_files(tmp_path):
    write_idx_folder(tmp_path / "mnist", compress=True)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]"):
        load_dataset("mnist", root=tmp_path)


def test_folder_of_another_dataset_is_not_used(tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "fashion-mnist")
    monkeypatch.setenv("PLASTIX_DATA", str(tmp_path / "fashion-mnist"))
    with pytest.raises(DatasetError, match="folder of another dataset"):
        load_dataset("mnist")
    assert load_dataset("fashion-mnist").x_train.shape == (12, 1, 5, 5)


# ---------------------------------------------------------------------- CIFAR written here


def test_cifar10_pickle_folder(tmp_path):
    train, (test_data, test_labels) = write_cifar10(tmp_path / "cifar-10-batches-py")
    ds = load_dataset("cifar10", root=tmp_path, seed=0)
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.x_train.dtype == np.float32 and 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    first = train[0][0][0]  # the first image: 1024 red, then 1024 green, then 1024 blue bytes
    np.testing.assert_array_equal(ds.x_train[0, 1] * 255, first[1024:2048].reshape(32, 32))
    assert list(ds.y_train) == [label for _, labels in train for label in labels]
    assert list(ds.y_test) == test_labels
    np.testing.assert_array_equal(ds.x_test.reshape(3, -1) * 255, test_data)
    assert ds.classes == tuple(f"class{k}" for k in range(10))


def test_cifar100_pickle_folder_uses_fine_labels(tmp_path, monkeypatch):
    splits = write_cifar100(tmp_path / "cifar-100-python")
    monkeypatch.setenv("PLASTIX_DATA", str(tmp_path))
    ds = load_dataset("cifar100")
    assert ds.x_train.shape == (6, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    assert list(ds.y_train) == splits["train"][1] and ds.n_classes == 100
    assert ds.classes[7] == "fine7"
    np.testing.assert_array_equal(ds.x_test.reshape(4, -1) * 255, splits["test"][0])


def test_cifar_truncated_pickle_names_the_file(tmp_path):
    write_cifar10(tmp_path)
    bad = tmp_path / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(DatasetError, match="cannot unpickle") as info:
        load_dataset("cifar10", root=tmp_path)
    assert str(bad) in str(info.value)


def test_cifar_pickle_with_code_is_refused_not_run(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": Payload()}))
    with pytest.raises(DatasetError, match="refusing to load"):
        load_dataset("cifar10", root=tmp_path)
    assert not marker.exists()


def test_cifar_wrong_data_shape(tmp_path):
    write_cifar10(tmp_path)
    content = {b"labels": [1, 2], b"data": np.zeros((2, 100), np.uint8)}
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps(content))
    with pytest.raises(DatasetError, match=r"data_batch_2: 'data' is uint8 \(2, 100\)"):
        load_dataset("cifar10", root=tmp_path)


# ---------------------------------------------------------------------- synthetic sets


@pytest.mark.parametrize("name", ["xor", "linear"])
def test_synthetic_sets_are_reproducible_by_seed(name):
    a, b, c = (load_dataset(name, seed=s) for s in (0, 0, 1))
    assert a.x_train.shape == (1000, 2) and a.x_test.shape == (500, 2)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert np.array_equal(np.bincount(a.y_train), [500, 500])
    small = load_dataset(name, n_train=40, n_test=20, seed=0)
    assert small.x_train.shape == (40, 2) and small.x_test.shape == (20, 2)
    assert np.array_equal(load_dataset(name, n_train=40, seed=0).x_test, a.x_test)


def test_linear_is_learnt_by_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    ds = load_dataset("linear", seed=0)
    accuracy = LogisticRegression().fit(ds.x_train, ds.y_train).score(ds.x_test, ds.y_test)
    assert accuracy > 0.97


def test_xor_needs_a_nonlinear_classifier():
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    ds = load_dataset("xor", seed=0)
    linear = LogisticRegression().fit(ds.x_train, ds.y_train).score(ds.x_test, ds.y_test)
    knn = KNeighborsClassifier(5).fit(ds.x_train, ds.y_train).score(ds.x_test, ds.y_test)
    assert linear < 0.8  # no line does better than 3 of the 4 corners
    assert knn > 0.97
    corners = np.round(ds.x_train).astype(int)  # sigma = 0.1: every point rounds to its corner
    assert np.mean((corners[:, 0] ^ corners[:, 1]) == ds.y_train) > 0.99


@pytest.mark.parametrize("make", [make_xor, make_linear])
@pytest.mark.parametrize("noise", [-0.1, float("nan"), float("inf"), "0.1", None])
def test_synthetic_noise_must_be_a_finite_non_negative_number(make, noise):
    with pytest.raises(ValueError, match="noise must be a finite non-negative number"):
        make(8, np.random.default_rng(0), noise=noise)


@pytest.mark.parametrize("make", [make_xor, make_linear])
def test_synthetic_noise_zero_puts_every_point_on_its_centre(make):
    x = make(40, np.random.default_rng(0), noise=np.float32(0))[0]
    assert len(np.unique(x, axis=0)) == (4 if make is make_xor else 2)


# ------------------------------------------------------------------ digits and mnist1d


def test_digits_shapes_range_and_fixed_split():
    ds = load_dataset("digits", seed=0)
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0 and ds.n_classes == 10
    assert np.array_equal(load_dataset("digits", seed=5).x_test, ds.x_test)
    sub = load_dataset("digits", n_train=100, n_test=50, seed=5)
    assert sub.x_train.shape == (100, 1, 8, 8) and np.array_equal(np.bincount(sub.y_test), [5] * 10)


def test_mnist1d_is_generated_offline_without_side_effects(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("mnist1d tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.chdir(tmp_path)
    datasets.clear_cache()
    np.random.seed(123)
    random.seed(123)
    numpy_before, python_before = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    ds = load_dataset("mnist1d")
    assert (np.random.random(), random.random()) == (numpy_before, python_before)
    assert list(tmp_path.iterdir()) == []  # nothing written (no cached pickle)
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert ds.x_train.dtype == np.float32 and ds.n_classes == 10
    assert set(np.unique(ds.y_train)) == set(range(10))
    assert abs(float(ds.x_train.mean())) < 0.05  # the generator standardises the set


# ------------------------------------------------------------------ subset, flat, errors


def toy(n_train=20, n_test=10) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(
        "toy",
        rng.random((n_train, 2, 3), dtype=np.float32),
        np.arange(n_train, dtype=np.int64) % 4,
        rng.random((n_test, 2, 3), dtype=np.float32),
        np.arange(n_test, dtype=np.int64) % 4,
        ("a", "b", "c", "d"),
    )


def test_flat_is_a_flattened_copy():
    ds = toy()
    flat = ds.flat()
    assert flat.x_train.shape == (20, 6) and flat.x_test.shape == (10, 6)
    assert flat.sample_shape == (6,) and ds.sample_shape == (2, 3)
    np.testing.assert_array_equal(flat.x_train[3], ds.x_train[3].ravel())
    flat.x_train[:] = -1
    assert ds.x_train.min() >= 0
    assert "n_train=20" in repr(flat)


def test_standardized_uses_the_training_mean_and_deviation_for_both_splits():
    ds = toy(n_train=200)
    std = ds.standardized()
    assert std.x_train.dtype == np.float32 and std.x_train.shape == ds.x_train.shape
    assert abs(float(std.x_train.mean())) < 1e-6 and abs(float(std.x_train.std()) - 1) < 1e-5
    mean, sigma = float(ds.x_train.mean()), float(ds.x_train.std())
    np.testing.assert_allclose(std.x_test, (ds.x_test - mean) / sigma, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(std.y_test, ds.y_test)
    assert ds.x_train.min() >= 0  # the original is left alone
    constant = dataclasses.replace(ds, x_train=np.ones_like(ds.x_train))
    with pytest.raises(ValueError, match="toy: the training inputs are constant"):
        constant.standardized()


def test_subset_sizes_reproducibility_and_errors():
    ds = toy()
    sub = ds.subset(n_train=8, seed=3)
    assert sub.x_train.shape == (8, 2, 3) and sub.x_test.shape == (10, 2, 3)
    assert np.array_equal(np.bincount(sub.y_train), [2, 2, 2, 2])
    assert np.array_equal(ds.subset(n_train=8, seed=3).x_train, sub.x_train)
    rows = {tuple(r) for r in ds.x_train.reshape(20, -1)}
    assert all(tuple(r) in rows for r in sub.x_train.reshape(8, -1))
    with pytest.raises(DatasetError, match="n_test=11 is larger than the 10 test samples"):
        ds.subset(n_test=11)
    with pytest.raises(ValueError, match="n_train=0 must be >= 1"):
        ds.subset(n_train=0)
    with pytest.raises(TypeError, match="n_train must be a positive int"):
        ds.subset(n_train=2.5)


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    fraction=st.floats(0, 1),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_indices_keep_class_proportions(counts, fraction, seed):
    labels = np.repeat(np.arange(len(counts)), counts)
    np.random.default_rng(seed).shuffle(labels)
    n = round(fraction * len(labels))
    idx = stratified_indices(labels, n, np.random.default_rng(seed))
    assert len(idx) == n == len(np.unique(idx))
    drawn = np.bincount(labels[idx], minlength=len(counts))
    share = n * np.asarray(counts) / len(labels)
    assert np.all(drawn >= np.floor(share)) and np.all(drawn <= np.ceil(share))


def test_unknown_name_lists_valid_names():
    with pytest.raises(DatasetError, match="unknown dataset 'svhn'") as info:
        load_dataset("svhn")
    assert all(name in str(info.value) for name in DATASETS)
    assert load_dataset(" Linear ", n_train=4, n_test=4).name == "linear"
    with pytest.raises(TypeError, match="dataset name must be a str"):
        load_dataset(None)


def test_bad_arguments_are_refused_before_loading():
    with pytest.raises(ValueError, match="n_train=-3"):
        load_dataset("xor", n_train=-3)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        load_dataset("xor", seed=-1)
    with pytest.raises(TypeError, match="root must be a folder path"):
        load_dataset("mnist", root=3)
    ds = toy()
    with pytest.raises(TypeError, match="y_train must be a 1-D int64"):
        Dataset("bad", ds.x_train, ds.y_train.astype(np.int32), ds.x_test, ds.y_test, ds.classes)
    with pytest.raises(TypeError, match="x_test must be a float32"):
        Dataset("bad", ds.x_train, ds.y_train, ds.x_test.astype(float), ds.y_test, ds.classes)


def test_dataset_checks_labels_against_classes():
    ds = toy()
    with pytest.raises(ValueError, match="labels must lie in"):
        Dataset("bad", ds.x_train, ds.y_train + 1, ds.x_test, ds.y_test, ds.classes)


# ------------------------------------------------------------- audit: Dataset checks


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            {"y_train": np.arange(20, dtype=np.int64) % 4 - 1},
            r"labels in \[-1, 2\].*lie in \[0, 3\]",
        ),
        ({"x_test": np.zeros((10, 3, 2), np.float32)}, "both splits need one sample shape"),
        ({"classes": ()}, "classes must name at least one class"),
        (
            {"x_train": np.zeros((21, 2, 3), np.float32)},
            "x_train has 21 samples but y_train has 20",
        ),
        ({"x_test": np.zeros((9, 2, 3), np.float32)}, "x_test has 9 samples but y_test has 10"),
    ],
    ids=["negative label", "sample shapes differ", "no classes", "more x", "fewer x"],
)
def test_dataset_refuses_inconsistent_fields(change, fragment):
    """Negative labels, splits with different sample shapes, an empty class tuple, and x/y
    arrays of different lengths (either way round) are each refused with their own message."""
    with pytest.raises(ValueError, match=fragment):
        dataclasses.replace(toy(), **change)


def test_subset_test_draw_ignores_the_train_size():
    """The train and test draws use independent streams: the test draw for one seed is the
    same whatever n_train is (given, another size, or none)."""
    ds = toy()
    draws = [ds.subset(n_train=n, n_test=4, seed=3) for n in (8, 12, None)]
    for other in draws[1:]:
        np.testing.assert_array_equal(other.x_test, draws[0].x_test)
        np.testing.assert_array_equal(other.y_test, draws[0].y_test)


def test_subset_of_every_sample_keeps_the_original_order():
    """n equal to the split size is allowed and, the indices being sorted, returns the split
    unchanged (same rows in the same order)."""
    ds = toy()
    full = ds.subset(n_train=20, n_test=10, seed=7)
    np.testing.assert_array_equal(full.x_train, ds.x_train)
    np.testing.assert_array_equal(full.y_train, ds.y_train)
    np.testing.assert_array_equal(full.x_test, ds.x_test)
    idx = stratified_indices(np.arange(30) % 3, 11, np.random.default_rng(0))
    assert np.all(np.diff(idx) > 0)


@pytest.mark.parametrize("seed", range(5))
def test_stratified_indices_give_the_leftover_draws_to_the_largest_remainders(seed):
    """Counts 6, 3, 1 of 10, n = 3: quotas floor(1.8, 0.9, 0.3) = 1, 0, 0 with remainders
    8, 9, 3 (in tenths); the 2 leftover draws go to classes 1 and 0, so 2, 1, 0 are drawn."""
    labels = np.repeat([0, 1, 2], [6, 3, 1])
    idx = stratified_indices(labels, 3, np.random.default_rng(seed))
    assert list(np.bincount(labels[idx], minlength=3)) == [2, 1, 0]


def test_make_linear_uses_every_given_centre():
    """With three centres the classes 0, 1, 2 come in equal numbers, each point on its own
    centre when the noise is zero."""
    centres = ((0.0, 0.0), (1.0, 2.0), (3.0, -1.0))
    x, y = make_linear(9, np.random.default_rng(0), centres=centres, noise=0.0)
    assert list(np.bincount(y)) == [3, 3, 3]
    np.testing.assert_array_equal(x, np.asarray(centres, np.float32)[y])


# ------------------------------------------------------------- audit: file look-up


def test_root_and_env_var_with_a_tilde_are_expanded(tmp_path, monkeypatch):
    arrays = write_idx_folder(tmp_path / "data" / "mnist", seed=2)
    monkeypatch.setenv("HOME", str(tmp_path))
    ds = load_dataset("mnist", root="~/data")
    assert ds.source == str(tmp_path / "data" / "mnist")
    assert np.array_equal(ds.y_train, arrays[1])
    monkeypatch.setenv("PLASTIX_DATA", "~/data")
    assert load_dataset("mnist").source == str(tmp_path / "data" / "mnist")


def test_env_var_surrounding_whitespace_is_ignored(tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "mnist")
    monkeypatch.setenv("PLASTIX_DATA", f"  {tmp_path}\n")
    assert load_dataset("mnist").source == str(tmp_path / "mnist")
    monkeypatch.setenv("PLASTIX_DATA", "   ")  # blank counts as not set
    with pytest.raises(DatasetError, match=r"nowhere: no root argument .* is not set"):
        load_dataset("mnist")


def test_system_fashion_mnist_folder_is_used_only_without_root(tmp_path, monkeypatch):
    """The system default folder is the last place looked when neither root nor
    $PLASTIX_DATA is given, and is not looked at when root is given."""
    system = tmp_path / "system" / "fashion-mnist"
    arrays = write_idx_folder(system, seed=6)
    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST", system)
    ds = load_dataset("fashion-mnist")
    assert ds.source == str(system) and np.array_equal(ds.y_test, arrays[3])
    with pytest.raises(DatasetError, match="dataset files not found") as info:
        load_dataset("fashion-mnist", root=tmp_path / "nowhere")
    assert "system default" not in str(info.value)


def test_idx_files_with_dotted_gz_names_are_found(tmp_path):
    arrays = write_idx_folder(tmp_path, compress=True, seed=4)
    for stem in IDX_STEMS:
        (tmp_path / f"{stem}.gz").rename(tmp_path / (stem.replace("-idx", ".idx") + ".gz"))
    assert np.array_equal(load_dataset("mnist", root=tmp_path).y_train, arrays[1])


def test_folder_named_like_a_data_file_is_passed_over(tmp_path):
    """A folder called train-images-idx3-ubyte.gz is not taken for the file: the plain
    train-images-idx3-ubyte next to it is read."""
    arrays = write_idx_folder(tmp_path, compress=False, seed=8)
    (tmp_path / "train-images-idx3-ubyte.gz").mkdir()
    ds = load_dataset("mnist", root=tmp_path)
    np.testing.assert_array_equal(ds.x_train[:, 0] * 255, arrays[0])


@pytest.mark.parametrize(
    ("alias", "key"),
    [
        ("fashion_mnist", "fashion-mnist"),
        ("FashionMNIST", "fashion-mnist"),
        ("CIFAR-10", "cifar10"),
        ("cifar_100", "cifar100"),
    ],
)
def test_dataset_name_aliases(tmp_path, alias, key):
    """Underscores, case and the fashionmnist / cifar-10 / cifar-100 spellings name the same
    set: the look-up fails as that set's, not as an unknown name."""
    with pytest.raises(DatasetError, match=f"^{key}: dataset files not found"):
        load_dataset(alias, root=tmp_path / "nowhere")


def test_locate_dataset_finds_folders_without_loading(tmp_path):
    write_idx_folder(tmp_path / "mnist")
    assert datasets.locate_dataset("mnist", root=tmp_path) == str(tmp_path / "mnist")
    assert datasets.locate_dataset(" XOR ") == "xor"
    with pytest.raises(DatasetError, match="cifar10: dataset files not found"):
        datasets.locate_dataset("cifar10", root=tmp_path)


def test_rewritten_file_of_the_same_size_is_read_again(tmp_path):
    """The parse cache is keyed on modification time too: new contents of the same size are
    not served from the cache."""
    write_idx_folder(tmp_path, seed=0, compress=False)
    load_dataset("mnist", root=tmp_path)
    arrays = write_idx_folder(tmp_path, seed=5, compress=False)
    for stem in IDX_STEMS:  # a distinct mtime whatever the file system's clock resolution
        stat = (tmp_path / stem).stat()
        os.utime(tmp_path / stem, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    ds = load_dataset("mnist", root=tmp_path)
    np.testing.assert_array_equal(ds.x_train[:, 0] * 255, arrays[0])


# ------------------------------------------------------------- audit: damaged IDX files


@pytest.mark.parametrize(
    ("stem", "content", "fragment"),
    [
        (
            "train-images-idx3-ubyte",
            b"\x00\x01\x08\x03" + struct.pack(">3I", 12, 5, 5) + bytes(300),
            "bad magic number",
        ),
        (
            "train-images-idx3-ubyte",
            b"\x00\x00\x0d\x03" + struct.pack(">3I", 12, 5, 5) + bytes(1200),
            r"IDX element type 0x0d is not supported",
        ),
        (
            "train-labels-idx1-ubyte",
            idx_bytes(np.zeros((12, 1), np.uint8)),
            "IDX file has 2 dimensions, expected 1",
        ),
        ("t10k-images-idx3-ubyte", b"\x00\x00\x08\x03" + bytes(4), r"IDX header is truncated"),
        (
            "t10k-labels-idx1-ubyte",
            idx_bytes(np.array([1, 10, 2, 3, 4, 5, 6], np.uint8)),
            "label 10 is outside 0..9",
        ),
        (
            "t10k-images-idx3-ubyte",
            idx_bytes(np.zeros((7, 6, 6), np.uint8)),
            r"holds \(5, 5\) images but .*t10k-images-idx3-ubyte holds \(6, 6\) images",
        ),
    ],
    ids=["magic byte 1", "element type", "dimensions", "short header", "label 10", "sizes"],
)
def test_damaged_idx_file_is_a_dataset_error_naming_it(tmp_path, stem, content, fragment):
    """Each header or content fault is reported as a DatasetError naming the file (which the
    CLI turns into a clear message) rather than another exception or a bad Dataset."""
    write_idx_folder(tmp_path, compress=False)
    (tmp_path / stem).write_bytes(content)
    with pytest.raises(DatasetError, match=fragment) as info:
        load_dataset("mnist", root=tmp_path)
    assert str(tmp_path / stem) in str(info.value)


# ------------------------------------------------------------ audit: damaged CIFAR files


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        (
            "data_batch_4",
            {b"labels": [1, 2], b"data": np.zeros((2, 3072), np.int64)},
            r"'data' is int64 \(2, 3072\), expected uint8",
        ),
        (
            "data_batch_4",
            {b"labels": [1, 2, 3], b"data": np.zeros((2, 3072), np.uint8)},
            r"'labels' has shape \(3,\), expected 2 integer labels",
        ),
        (
            "data_batch_4",
            {b"labels": [1, -1], b"data": np.zeros((2, 3072), np.uint8)},
            r"labels outside 0\.\.9",
        ),
        (
            "test_batch",
            {b"labels": [1, 10, 0], b"data": np.zeros((3, 3072), np.uint8)},
            r"labels outside 0\.\.9",
        ),
        (
            "batches.meta",
            {b"label_names": [f"c{k}".encode() for k in range(9)]},
            "'label_names' lists 9 classes, expected 10",
        ),
        ("data_batch_1", [1, 2, 3], "expected a pickled dict, got list"),
    ],
    ids=["data dtype", "label count", "label -1", "label 10", "9 class names", "not a dict"],
)
def test_damaged_cifar_file_is_a_dataset_error_naming_it(tmp_path, name, content, fragment):
    write_cifar10(tmp_path)
    (tmp_path / name).write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(DatasetError, match=fragment) as info:
        load_dataset("cifar10", root=tmp_path)
    assert str(tmp_path / name) in str(info.value)
