"""Tests for plastix.sims.datasets: real Fashion-MNIST files, tiny IDX/CIFAR files written
here, corrupt and missing files, synthetic sets, subsampling."""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import random
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
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

IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(autouse=True)
def _no_env_and_fresh_cache(monkeypatch):
    monkeypatch.delenv("PLASTIX_DATA", raising=False)
    yield
    datasets.clear_cache()


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_idx_folder(folder: Path, n_train=12, n_test=7, seed=0, compress=True, size=5):
    """Four IDX files with random images and labels; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = (
        rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        np.arange(n_train, dtype=np.uint8) % 10,
        rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        np.arange(n_test, dtype=np.uint8)[::-1] % 10,
    )
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(IDX_STEMS, arrays, strict=True):
        data = idx_bytes(array)
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


def write_cifar10(folder: Path, per_batch=2, n_test=3, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    train = []
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        train.append((data, labels))
        batch = {b"batch_label": b"training batch", b"labels": labels, b"data": data}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    test_data = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_labels = [int(v) for v in rng.integers(0, 10, n_test)]
    (folder / "test_batch").write_bytes(
        pickle.dumps({b"labels": test_labels, b"data": test_data}, protocol=2)
    )
    names = [f"class{k}".encode() for k in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return train, (test_data, test_labels)


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
