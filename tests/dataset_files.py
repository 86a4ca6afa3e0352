"""Small dataset files in the standard formats (IDX, CIFAR python pickles), written by the
tests that read them: no download, and every byte known; and a small in-memory Dataset."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


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


def toy_dataset(n_train: int = 12, n_test: int = 6):
    """A Dataset of 3 random features and labels cycling through 3 classes."""
    from plastix.sims.datasets import Dataset

    rng = np.random.default_rng(0)
    return Dataset(
        "toy",
        rng.random((n_train, 3), dtype=np.float32),
        np.arange(n_train, dtype=np.int64) % 3,
        rng.random((n_test, 3), dtype=np.float32),
        np.arange(n_test, dtype=np.int64) % 3,
        ("a", "b", "c"),
    )
