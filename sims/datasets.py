"""Datasets for plastix experiments, all returned as one small record (:class:`Dataset`).

Synthetic sets are generated from ``seed``; the others are read from local files and never
downloaded:

- ``xor``: noisy 2-D XOR, sigma = 0.1 (Daruwalla & Lipasti 2024); samples (2,)
- ``linear``: two Gaussian clusters, linearly separable; (2,)
- ``digits``: scikit-learn ``load_digits`` (Alpaydin & Kaynak 1998); (1, 8, 8)
- ``mnist1d``: the ``mnist1d`` generator with its default arguments (Greydanus & Kobak 2024);
  (40,), standardised to mean 0 and standard deviation 1 by the generator
- ``fashion-mnist``: IDX files (Xiao, Rasul & Vollgraf 2017); (1, 28, 28)
- ``mnist``: IDX files (LeCun et al. 1998); (1, 28, 28)
- ``cifar10``: ``cifar-10-batches-py`` pickles (Krizhevsky 2009); (3, 32, 32)
- ``cifar100``: ``cifar-100-python`` pickles, fine labels (Krizhevsky 2009); (3, 32, 32)

Images are float32 in [0, 1] shaped (n, C, H, W); labels are int64. File-based sets are looked
up in ``root``, else in ``$PLASTIX_DATA``, else (Fashion-MNIST only) in
``/usr/share/datasets/fashion-mnist``; ``root`` and ``$PLASTIX_DATA`` may name the dataset's own
folder or a parent holding ``fashion-mnist/``, ``mnist/``, ``cifar-10-batches-py/`` or
``cifar-100-python/``.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import gzip
import io
import os
import pickle
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plastix.scalars import is_finite_real, is_integer

DATASETS = ("xor", "linear", "digits", "mnist1d", "fashion-mnist", "mnist", "cifar10", "cifar100")
DATA_ENV_VAR = "PLASTIX_DATA"
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

SYNTHETIC_N_TRAIN = 1000
SYNTHETIC_N_TEST = 500
XOR_NOISE = 0.1
LINEAR_CENTRES = ((0.25, 0.25), (0.75, 0.75))
LINEAR_NOISE = 0.1
DIGITS_N_TEST = 360
DIGITS_SPLIT_SEED = 0

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES = tuple(str(d) for d in range(10))


class DatasetError(ValueError):
    """A dataset that cannot be loaded: unknown name, missing or corrupt files, bad sizes."""


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Train/test arrays of one dataset.

    ``x_*`` are float32 shaped (n, *sample_shape); ``y_*`` are int64 class indices into
    ``classes``. ``source`` says where the data came from (a folder, or how it was generated).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.classes, tuple) or not all(isinstance(c, str) for c in self.classes):
            raise TypeError(f"classes must be a tuple of str, got {self.classes!r}")
        if not self.classes:
            raise ValueError("classes must name at least one class")
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim < 2:
                raise TypeError(
                    f"x_{split} must be a float32 numpy array shaped (n, *sample_shape), got "
                    f"{type(x).__name__} {getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}; "
                    "convert with np.asarray(x, dtype=np.float32)"
                )
            if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.ndim != 1:
                raise TypeError(
                    f"y_{split} must be a 1-D int64 numpy array, got {type(y).__name__} "
                    f"{getattr(y, 'dtype', '')} {getattr(y, 'shape', '')}; "
                    "convert with np.asarray(y, dtype=np.int64)"
                )
            if len(x) != len(y):
                raise ValueError(f"x_{split} has {len(x)} samples but y_{split} has {len(y)}")
            if y.size and (y.min() < 0 or y.max() >= len(self.classes)):
                raise ValueError(
                    f"y_{split} holds labels in [{y.min()}, {y.max()}] but there are "
                    f"{len(self.classes)} classes; labels must lie in [0, {len(self.classes) - 1}]"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"x_train samples are shaped {self.x_train.shape[1:]} but x_test samples are "
                f"shaped {self.x_test.shape[1:]}; both splits need one sample shape"
            )

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n_train={len(self.y_train)}, "
            f"n_test={len(self.y_test)}, sample_shape={self.sample_shape}, "
            f"n_classes={self.n_classes})"
        )

    def flat(self) -> Dataset:
        """A copy with every sample flattened: x shaped (n, prod(sample_shape))."""
        return dataclasses.replace(
            self,
            x_train=self.x_train.reshape(len(self.x_train), -1).copy(),
            x_test=self.x_test.reshape(len(self.x_test), -1).copy(),
            y_train=self.y_train.copy(),
            y_test=self.y_test.copy(),
        )

    def standardized(self) -> Dataset:
        """A copy with ``x → (x − μ) / σ``, μ and σ one scalar each: the mean and standard
        deviation of all training values (the usual MNIST preprocessing, μ 0.1307 and σ 0.3081
        there). The test split uses the training μ and σ. Refuses constant training data."""
        mean = float(self.x_train.mean(dtype=np.float64))
        std = float(self.x_train.std(dtype=np.float64))
        if not std > 0:
            raise ValueError(
                f"{self.name}: the training inputs are constant (standard deviation {std!r}), "
                "so they cannot be standardized; use the inputs as they are"
            )
        dtype = self.x_train.dtype
        return dataclasses.replace(
            self,
            x_train=((self.x_train - mean) / std).astype(dtype),
            x_test=((self.x_test - mean) / std).astype(dtype),
            y_train=self.y_train.copy(),
            y_test=self.y_test.copy(),
        )

    def subset(
        self, n_train: int | None = None, n_test: int | None = None, seed: int = 0
    ) -> Dataset:
        """A copy with ``n_train`` / ``n_test`` samples drawn per split (None keeps all).

        Draws are stratified (see :func:`stratified_indices`) and reproducible from ``seed``;
        the train and test draws use independent streams, so changing one size leaves the
        other split's draw unchanged.
        """
        _check_count("n_train", n_train)
        _check_count("n_test", n_test)
        _check_seed(seed)
        train_rng, test_rng = _split_rngs(seed)
        train_idx = _draw(self.y_train, n_train, train_rng, "n_train", self.name, "training")
        test_idx = _draw(self.y_test, n_test, test_rng, "n_test", self.name, "test")
        return dataclasses.replace(
            self,
            x_train=self.x_train[train_idx],
            y_train=self.y_train[train_idx],
            x_test=self.x_test[test_idx],
            y_test=self.y_test[test_idx],
        )


def stratified_indices(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` samples drawn without replacement, class proportions kept.

    Class k with c_k of N samples gets floor(n c_k / N) draws; the n - sum of those leftover
    draws go to the classes with the largest remainders (n c_k mod N), ties broken at random
    (largest-remainder apportionment). Indices are returned in ascending order.
    """
    labels = np.asarray(labels)
    if not 0 <= n <= len(labels):
        raise ValueError(f"n={n} must lie in [0, {len(labels)}] (the number of samples)")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    total = len(labels)
    quotas = n * counts // total
    remainders = n * counts % total
    leftover = n - int(quotas.sum())
    order = np.lexsort((rng.random(len(classes)), -remainders))
    quotas[order[:leftover]] += 1
    chosen = [
        rng.choice(np.flatnonzero(inverse == k), size=int(quota), replace=False)
        for k, quota in enumerate(quotas)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def make_xor(n: int, rng: np.random.Generator, noise: float = XOR_NOISE):
    """Noisy XOR: corners b in {0,1}^2 in equal numbers, x = b + noise * N(0, I), y = b1 XOR b2.

    The noisy XOR task of Daruwalla & Lipasti (2024, Frontiers in Comp. Neurosci.), noise
    sigma = 0.1 as in their code; the corner layout {0,1}^2 is plastix's choice.
    Returns (x float32 (n, 2), y int64 (n,)).
    """
    _check_count("n", n)
    _check_noise(noise)
    corner = rng.permutation(np.arange(n) % 4)
    bits = np.stack([corner // 2, corner % 2], axis=1)
    x = bits + noise * rng.standard_normal((n, 2))
    return x.astype(np.float32), (bits[:, 0] ^ bits[:, 1]).astype(np.int64)


def make_linear(
    n: int,
    rng: np.random.Generator,
    centres: tuple[tuple[float, float], ...] = LINEAR_CENTRES,
    noise: float = LINEAR_NOISE,
):
    """Gaussian clusters: class k in equal numbers, x = centres[k] + noise * N(0, I).

    With the default centres (0.25, 0.25) and (0.75, 0.75) and noise 0.1 the centres lie
    3.5 noise widths from the separating line x1 + x2 = 1, so the Bayes error is about 2e-4.
    Returns (x float32 (n, 2), y int64 (n,)).
    """
    _check_count("n", n)
    _check_noise(noise)
    means = np.asarray(centres, dtype=np.float64)
    y = rng.permutation(np.arange(n) % len(means))
    x = means[y] + noise * rng.standard_normal((n, means.shape[1]))
    return x.astype(np.float32), y.astype(np.int64)


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASETS`).

    Synthetic sets (xor, linear) are generated from ``seed`` with ``n_train`` / ``n_test``
    samples (default 1000 / 500). The other sets are loaded in full and, when ``n_train`` /
    ``n_test`` are given, subsampled with :meth:`Dataset.subset` using ``seed``; ``digits``
    and ``mnist1d`` keep a fixed train/test split whatever the seed. ``root`` is the folder
    (or its parent) holding a file-based dataset; see the module docstring for the look-up.
    """
    key = _canonical_name(name)
    if root is not None and not isinstance(root, str | os.PathLike):
        raise TypeError(f"root must be a folder path (str or os.PathLike), got {root!r}")
    _check_count("n_train", n_train)
    _check_count("n_test", n_test)
    _check_seed(seed)
    if key in ("xor", "linear"):
        return _synthetic(key, n_train, n_test, seed)
    if key == "digits":
        raw = _digits_raw()
        source = f"sklearn.datasets.load_digits, fixed split (random_state={DIGITS_SPLIT_SEED})"
    elif key == "mnist1d":
        raw = _mnist1d_raw()
        source = "mnist1d.data.make_dataset(get_dataset_args()), generated locally"
    else:
        spec = _FILE_SETS[key]
        folder = _find_folder(key, root)
        raw = spec.read(folder)
        source = str(folder)
    return _from_raw(key, raw, source, n_train, n_test, seed)


def locate_dataset(name: str, root: str | os.PathLike | None = None) -> str:
    """Check, without loading, that dataset ``name`` can be had; returns where it comes from.

    File-based sets are looked up as :func:`load_dataset` does (DatasetError if missing);
    generated sets need only their generator.
    """
    key = _canonical_name(name)
    if key in _FILE_SETS:
        return str(_find_folder(key, root))
    return key


def clear_cache() -> None:
    """Forget the parsed files and generated sets kept in memory by :func:`load_dataset`."""
    for cached in (_digits_raw, _mnist1d_raw, _read_idx_set, _read_cifar_set):
        cached.cache_clear()


# ----------------------------------------------------------------------------- helpers


@dataclass(frozen=True, eq=False)
class _Raw:
    """Parsed arrays as stored (read-only, cached); converted to float32 after subsampling."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    scale: float  # x float = x stored / scale
    classes: tuple[str, ...] = DIGIT_CLASSES


def _canonical_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {name!r}; valid: {', '.join(DATASETS)}")
    key = name.strip().lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "cifar-100": "cifar100"}.get(
        key, key
    )
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    return key


def _check_count(param: str, value: int | None) -> None:
    if value is None:
        return
    if not is_integer(value):
        raise TypeError(f"{param} must be a positive int or None, got {value!r}")
    if value < 1:
        raise ValueError(f"{param}={value} must be >= 1 (or None for the default size)")


def _check_noise(noise: float) -> None:
    if not is_finite_real(noise) or noise < 0:
        raise ValueError(f"noise must be a finite non-negative number, got {noise!r}")


def _check_seed(seed: int) -> None:
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def _split_rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    train_seq, test_seq = np.random.SeedSequence(int(seed)).spawn(2)
    return np.random.default_rng(train_seq), np.random.default_rng(test_seq)


def _draw(labels, n, rng, param: str, name: str, split: str) -> np.ndarray:
    if n is None:
        return np.arange(len(labels))
    if n > len(labels):
        raise DatasetError(
            f"{param}={n} is larger than the {len(labels)} {split} samples of {name}; "
            f"set {param} to at most {len(labels)}, or to none for all of them"
        )
    return stratified_indices(labels, n, rng)


def _synthetic(key: str, n_train: int | None, n_test: int | None, seed: int) -> Dataset:
    make = make_xor if key == "xor" else make_linear
    train_rng, test_rng = _split_rngs(seed)
    x_train, y_train = make(SYNTHETIC_N_TRAIN if n_train is None else n_train, train_rng)
    x_test, y_test = make(SYNTHETIC_N_TEST if n_test is None else n_test, test_rng)
    return Dataset(
        key, x_train, y_train, x_test, y_test, ("0", "1"), source=f"generated, seed={seed}"
    )


def _from_raw(key: str, raw: _Raw, source: str, n_train, n_test, seed: int) -> Dataset:
    train_rng, test_rng = _split_rngs(seed)
    train_idx = _draw(raw.y_train, n_train, train_rng, "n_train", key, "training")
    test_idx = _draw(raw.y_test, n_test, test_rng, "n_test", key, "test")

    def convert(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return np.divide(x[idx], raw.scale, dtype=np.float32)

    return Dataset(
        key,
        convert(raw.x_train, train_idx),
        raw.y_train[train_idx].astype(np.int64),
        convert(raw.x_test, test_idx),
        raw.y_test[test_idx].astype(np.int64),
        raw.classes,
        source=source,
    )


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for array in arrays:
        array.setflags(write=False)
    return arrays


@functools.lru_cache(maxsize=1)
def _digits_raw() -> _Raw:
    """8x8 digits, pixel counts 0..16 scaled by 1/16, split 1437 / 360 stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8), values 0..16
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target.astype(np.int64),
        test_size=DIGITS_N_TEST,
        stratify=digits.target,
        random_state=DIGITS_SPLIT_SEED,
    )
    return _Raw(*_read_only(x_train, y_train, x_test, y_test), scale=16.0)


@functools.lru_cache(maxsize=1)
def _mnist1d_raw() -> _Raw:
    """MNIST-1D (Greydanus & Kobak 2024), package defaults: 5000 samples, 4000 / 1000 split.

    Only ``mnist1d.data.make_dataset`` is called: it builds the set from its templates and
    never downloads (``get_dataset``, which may download, is not used). ``make_dataset``
    seeds the global ``random`` and ``numpy.random`` states; they are restored afterwards.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as err:
        raise DatasetError(
            "mnist1d needs the 'mnist1d' package (pip install mnist1d, or plastix[dev]); "
            f"importing it failed: {err}"
        ) from err
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    arrays = (
        np.asarray(data["x"], dtype=np.float32),
        np.asarray(data["y"], dtype=np.int64),
        np.asarray(data["x_test"], dtype=np.float32),
        np.asarray(data["y_test"], dtype=np.int64),
    )
    return _Raw(*_read_only(*arrays), scale=1.0)


# ----------------------------------------------------------------------- file look-up


@dataclass(frozen=True)
class _FileSet:
    folder: str  # standard folder name
    files: tuple[tuple[str, tuple[str, ...]], ...]  # per required file: (shown, accepted names)
    read: Callable[[Path], _Raw]
    how_to_get: str


def _idx_names(stem: str) -> tuple[str, ...]:
    dotted = stem.replace("-idx", ".idx")  # some mirrors write train-images.idx3-ubyte
    return (stem + ".gz", stem, dotted + ".gz", dotted)


_IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
_CIFAR100_FILES = ("train", "test", "meta")


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _find_folder(key: str, root) -> Path:
    """The first candidate folder holding every file of dataset ``key``; else DatasetError."""
    spec = _FILE_SETS[key]
    other_folders = {s.folder for k, s in _FILE_SETS.items() if k != key}
    bases: list[tuple[Path, str]] = []
    if root is not None:
        bases.append((Path(root).expanduser(), "root argument"))
    else:
        env = os.environ.get(DATA_ENV_VAR, "").strip()
        if env:
            bases.append((Path(env).expanduser(), f"${DATA_ENV_VAR}"))
    places: list[tuple[Path, str]] = []
    for base, origin in bases:
        places.append((base / spec.folder, f"{origin} + {spec.folder}/"))
        places.append((base, origin))
    if root is None and key == "fashion-mnist":
        places.append((SYSTEM_FASHION_MNIST, "system default"))

    looked = []
    for folder, origin in places:
        if not folder.is_dir():
            looked.append(f"  {folder} ({origin}): no such folder")
            continue
        if folder.name in other_folders:
            looked.append(f"  {folder} ({origin}): skipped, it is the folder of another dataset")
            continue
        missing = [shown for shown, names in spec.files if _first_existing(folder, names) is None]
        if not missing:
            return folder
        looked.append(f"  {folder} ({origin}): missing {', '.join(missing)}")
    if not places:
        looked.append(f"  nowhere: no root argument was given and ${DATA_ENV_VAR} is not set")
    raise DatasetError(
        f"{key}: dataset files not found. Looked in:\n"
        + "\n".join(looked)
        + f"\nHow to get them: {spec.how_to_get}"
    )


# --------------------------------------------------------------------------- IDX files


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return (str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise DatasetError(f"cannot read {path}: {err}; the file is corrupt or truncated") from err


def parse_idx(data: bytes, expected_ndim: int, path: Path | str = "<bytes>") -> np.ndarray:
    """Unsigned-byte IDX array (LeCun et al. 1998 file format) from its raw bytes.

    Header: two zero bytes, type code 0x08 (uint8), number of dimensions d, then d big-endian
    uint32 sizes; the data follow, row-major. Returns a read-only uint8 array.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {data[:4].hex()!r})")
    if data[2] != 0x08:
        raise DatasetError(
            f"{path}: IDX element type 0x{data[2]:02x} is not supported; plastix reads "
            "unsigned-byte (0x08) IDX files"
        )
    ndim = data[3]
    if ndim != expected_ndim:
        raise DatasetError(f"{path}: IDX file has {ndim} dimensions, expected {expected_ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: IDX header is truncated ({len(data)} bytes)")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != expected:
        raise DatasetError(
            f"{path}: header declares shape {shape} ({expected} bytes of data) but the file "
            f"holds {len(data) - header}; the file is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _read_idx_folder(folder: Path) -> _Raw:
    paths = {part: _first_existing(folder, _idx_names(stem)) for part, stem in _IDX_STEMS.items()}
    return _read_idx_set(tuple(_file_key(paths[part]) for part in _IDX_STEMS))


@functools.lru_cache(maxsize=2)
def _read_idx_set(keys: tuple[tuple[str, int, int], ...]) -> _Raw:
    """Parse the four IDX files (cached on path, mtime and size)."""
    paths = [Path(key[0]) for key in keys]
    arrays = [
        parse_idx(_read_bytes(path), ndim, path)
        for path, ndim in zip(paths, (3, 1, 3, 1), strict=True)
    ]
    for (images, labels), (image_path, label_path) in (
        (arrays[0:2], paths[0:2]),
        (arrays[2:4], paths[2:4]),
    ):
        if len(images) != len(labels):
            raise DatasetError(
                f"{image_path} holds {len(images)} images but {label_path} holds "
                f"{len(labels)} labels; the files do not belong together"
            )
        if labels.size and labels.max() >= 10:
            raise DatasetError(f"{label_path}: label {labels.max()} is outside 0..9")
    if arrays[0].shape[1:] != arrays[2].shape[1:]:
        raise DatasetError(
            f"{paths[0]} holds {arrays[0].shape[1:]} images but {paths[2]} holds "
            f"{arrays[2].shape[1:]} images"
        )
    x_train, y_train, x_test, y_test = (a[:, None] if a.ndim == 3 else a for a in arrays)
    return _Raw(x_train, y_train, x_test, y_test, scale=255.0)


def _read_fashion(folder: Path) -> _Raw:
    return dataclasses.replace(_read_idx_folder(folder), classes=FASHION_MNIST_CLASSES)


# ------------------------------------------------------------------------- CIFAR files


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that builds only containers, bytes and numpy arrays, never other objects."""

    _reconstruct = np.ndarray(0).__reduce__()[0]
    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: CIFAR pickles hold only arrays and lists"
            ) from None


def _unpickle(path: Path) -> dict[str, object]:
    try:
        content = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as err:  # any unpickling failure means a corrupt or foreign file
        raise DatasetError(f"cannot unpickle {path}: {err!r}; the file is corrupt") from err
    if not isinstance(content, dict):
        raise DatasetError(f"{path}: expected a pickled dict, got {type(content).__name__}")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in content.items()}


def _field(content: dict, key: str, path: Path):
    if key not in content:
        raise DatasetError(f"{path}: no {key!r} entry (has {sorted(content)}); file is corrupt")
    return content[key]


def _cifar_batch(path: Path, label_key: str, n_classes: int):
    content = _unpickle(path)
    data = np.asarray(_field(content, "data", path))
    labels = np.asarray(_field(content, label_key, path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 (n, 3072)")
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"{path}: {label_key!r} has shape {labels.shape}, expected {len(data)} integer labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DatasetError(f"{path}: labels outside 0..{n_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _class_names(path: Path, key: str, n_classes: int) -> tuple[str, ...]:
    names = _field(_unpickle(path), key, path)
    names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    if len(names) != n_classes:
        raise DatasetError(f"{path}: {key!r} lists {len(names)} classes, expected {n_classes}")
    return names


@functools.lru_cache(maxsize=2)
def _read_cifar_set(
    keys: tuple[tuple[str, int, int], ...], label_key: str, names_key: str, n_classes: int
) -> _Raw:
    """Parse a CIFAR folder: train batch files, one test batch, one meta file (cached)."""
    *train_paths, test_path, meta_path = (Path(key[0]) for key in keys)
    classes = _class_names(meta_path, names_key, n_classes)
    train = [_cifar_batch(p, label_key, n_classes) for p in train_paths]
    x_test, y_test = _cifar_batch(test_path, label_key, n_classes)
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return _Raw(*_read_only(x_train, y_train, x_test, y_test), scale=255.0, classes=classes)


def _read_cifar10(folder: Path) -> _Raw:
    keys = tuple(_file_key(folder / name) for name in _CIFAR10_FILES)
    return _read_cifar_set(keys, "labels", "label_names", 10)


def _read_cifar100(folder: Path) -> _Raw:
    keys = tuple(_file_key(folder / name) for name in _CIFAR100_FILES)
    return _read_cifar_set(keys, "fine_labels", "fine_label_names", 100)


_IDX_FILES = tuple((f"{stem}[.gz]", _idx_names(stem)) for stem in _IDX_STEMS.values())
_IDX_FILE_LIST = ", ".join(stem + ".gz" for stem in _IDX_STEMS.values())
_PASS_FOLDER = (
    "then pass --data-root FOLDER to plastix (root=FOLDER to load_dataset; the parent folder "
    f"works too), or set {DATA_ENV_VAR}=FOLDER"
)

_FILE_SETS: dict[str, _FileSet] = {
    "fashion-mnist": _FileSet(
        "fashion-mnist",
        _IDX_FILES,
        _read_fashion,
        "`apt-get install dataset-fashion-mnist` (installs the files into "
        f"{SYSTEM_FASHION_MNIST}), or download {_IDX_FILE_LIST} from "
        "https://github.com/zalandoresearch/fashion-mnist (data/fashion) into a folder named "
        f"fashion-mnist, {_PASS_FOLDER}.",
    ),
    "mnist": _FileSet(
        "mnist",
        _IDX_FILES,
        _read_idx_folder,
        f"download {_IDX_FILE_LIST} from http://yann.lecun.com/exdb/mnist/ (or a mirror such "
        f"as https://ossci-datasets.s3.amazonaws.com/mnist/) into a folder named mnist, "
        f"{_PASS_FOLDER}.",
    ),
    "cifar10": _FileSet(
        "cifar-10-batches-py",
        tuple((name, (name,)) for name in _CIFAR10_FILES),
        _read_cifar10,
        "download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and unpack it "
        f"(`tar xzf cifar-10-python.tar.gz` makes cifar-10-batches-py/), {_PASS_FOLDER}.",
    ),
    "cifar100": _FileSet(
        "cifar-100-python",
        tuple((name, (name,)) for name in _CIFAR100_FILES),
        _read_cifar100,
        "download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and unpack it "
        f"(`tar xzf cifar-100-python.tar.gz` makes cifar-100-python/), {_PASS_FOLDER}.",
    ),
}
