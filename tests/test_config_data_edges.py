"""Third audit of plastix.sims.config and plastix.sims.datasets: edges the earlier tests left
open (union order, optional choices, defaults from factories, validate on defaults, files
from older tools, empty splits, look-up fall-backs)."""

from __future__ import annotations

import gzip
import pickle
import typing
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pytest
from dataset_files import idx_bytes, toy_dataset, write_cifar10, write_idx_folder

from plastix.sims import datasets
from plastix.sims.config import ConfigError, build_config, config_to_dict, read_config_file
from plastix.sims.datasets import Dataset, DatasetError, load_dataset


@pytest.fixture(autouse=True)
def _no_env_and_fresh_cache(monkeypatch):
    monkeypatch.delenv("PLASTIX_DATA", raising=False)
    yield
    datasets.clear_cache()


# ------------------------------------------------------------------ config parsing


@dataclass
class Edges:
    """Keys for the config checks below."""

    either: int | float = 0
    optimizer: Literal["sgd", "adam"] | None = None
    decay: typing.Optional[float] = None  # noqa: UP045 -- the typing spelling on purpose
    count: int = 0
    rates: list[float] = field(default_factory=lambda: [0.5])
    hidden: tuple[int, ...] = (4, 2)


def test_int_or_float_key_reads_whole_numbers_as_ints():
    """``int | float`` tries int first: "3" (a --set string) and 3 (TOML) give the int 3, so a
    count stays a count; "2.5" falls through to the float."""
    for given in ("3", 3):
        value = build_config(Edges, {"either": given}).either
        assert value == 3 and type(value) is int
    assert build_config(Edges, {"either": "2.5"}).either == 2.5


def test_optional_choice_and_typing_optional_keys():
    """``Literal[...] | None`` (a typing.Union, not a types.UnionType) and
    ``typing.Optional[float]`` are optional keys like ``int | None``: a none word gives None,
    a valid value is parsed, an invalid one names the choices."""
    cfg = build_config(Edges, {"optimizer": "adam", "decay": "0.25"})
    assert (cfg.optimizer, cfg.decay) == ("adam", 0.25)
    cfg = build_config(Edges, {"optimizer": "none", "decay": "null"})
    assert (cfg.optimizer, cfg.decay) == (None, None)
    with pytest.raises(ConfigError, match="optimizer: 'rmsprop' is not a valid choice; valid"):
        build_config(Edges, {"optimizer": "rmsprop"})


def test_choice_type_names_write_each_choice_as_python_does():
    """``plastix list`` shows a choice key's type with the choices written as Python literals,
    as it writes defaults: the string '1' and the number 2 of Literal['1', 2] stay apart."""
    from plastix.sims.config import config_fields

    @dataclass
    class Choices:
        mode: Literal["1", 2] = 2

    assert config_fields(Choices)[0].type_name == "one of '1', 2"


def test_false_is_not_the_integer_zero():
    """TOML ``false`` for an int key is refused as ``true`` is (bool is an int subclass, but a
    flag given where a count is wanted is a mistake)."""
    with pytest.raises(ConfigError, match="count: expected an integer, got False"):
        build_config(Edges, {"count": False})


def test_empty_list_key_is_refused_like_an_empty_tuple_key():
    """A ``list[...]`` key needs at least one value too (only allow_empty admits none): an
    empty --set value or TOML ``[]`` is a ConfigError naming the key."""
    for given in ("", []):
        with pytest.raises(ConfigError, match="rates: empty; give at least one value"):
            build_config(Edges, {"rates": given})


def test_defaults_from_a_factory_are_checked_too():
    """A default built by ``default_factory`` is held to the key's rules like a plain default:
    an empty list, or an item below ``min``, is refused before any work starts."""

    @dataclass
    class EmptyFactory:
        rates: list[float] = field(default_factory=list)

    @dataclass
    class LowFactory:
        rates: list[float] = field(default_factory=lambda: [0.5, -1.0], metadata={"min": 0.0})

    with pytest.raises(ConfigError, match="rates: empty"):
        build_config(EmptyFactory, {})
    with pytest.raises(ConfigError, match=r"rates: -1\.0 is out of range; it must be >= 0"):
        build_config(LowFactory, {})


def test_validate_runs_when_only_defaults_are_used():
    """validate() checks the config that will run, whatever was overridden: defaults that break
    a rule across keys are a ConfigError even with no overrides at all."""

    @dataclass
    class Window:
        lo: int = 5
        hi: int = 3

        def validate(self) -> None:
            if self.lo > self.hi:
                raise ValueError("lo: must not exceed hi")

    with pytest.raises(ConfigError, match="lo: must not exceed hi"):
        build_config(Window)
    assert build_config(Window, {"hi": 9}).hi == 9


def test_config_to_dict_gives_lists_for_tuples():
    """The stored config is plain JSON: tuple keys become lists (and lists stay lists)."""
    cfg = build_config(Edges, {"hidden": "8,4", "rates": "0.1"})
    out = config_to_dict(cfg)
    assert out["hidden"] == [8, 4] and type(out["hidden"]) is list
    assert out["rates"] == [0.1] and out["optimizer"] is None


def test_toml_file_that_is_not_utf8_is_refused(tmp_path):
    """TOML files are UTF-8: a Latin-1 string value is refused naming the file, rather than
    read with a replacement character in it."""
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.toml' is not valid TOML"):
        read_config_file(path)


# ------------------------------------------------------------------ Dataset record and subset


def test_dataset_classes_must_be_a_tuple():
    """``classes`` is a tuple of str (the record is frozen, and a list could still change);
    a list of names is a TypeError saying so."""
    ds = toy_dataset()
    with pytest.raises(TypeError, match="classes must be a tuple of str"):
        Dataset("bad", ds.x_train, ds.y_train, ds.x_test, ds.y_test, ["a", "b"])


def test_dataset_with_an_empty_test_split_is_allowed():
    """A split may hold no samples (an IDX file may declare zero items): the label range is
    checked only when there are labels, not a numpy error on an empty reduction."""
    ds = toy_dataset()
    empty = Dataset(
        "empty",
        ds.x_train,
        ds.y_train,
        np.zeros((0, 3), np.float32),
        np.zeros(0, np.int64),
        ds.classes,
    )
    assert len(empty.y_test) == 0 and empty.sample_shape == (3,)


@pytest.mark.parametrize("seed", [-1, 1.5])
def test_subset_refuses_a_seed_that_is_not_a_non_negative_int(seed):
    """subset() checks its seed as load_dataset does: 1.5 is not silently drawn as seed 1."""
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        toy_dataset().subset(n_train=4, seed=seed)


@pytest.mark.parametrize("sizes", [{"n_test": 0}, {"n_train": 0}])
def test_load_dataset_refuses_a_zero_size_for_a_file_or_fixed_set(sizes):
    """n_train / n_test count samples to draw (None for all): 0 is refused for a fixed set such
    as digits as for a generated one, rather than returning an empty split."""
    with pytest.raises(ValueError, match="=0 must be >= 1"):
        load_dataset("digits", **sizes)


# ------------------------------------------------------------------ digits split


def test_digits_split_is_the_same_after_the_cache_is_cleared():
    """The digits train/test split is fixed (random_state 0), not drawn afresh when the set is
    read again: clearing the in-memory cache gives the same test split."""
    first = load_dataset("digits").x_test
    datasets.clear_cache()
    np.random.seed(1)  # a global-state draw would differ from the first
    np.testing.assert_array_equal(load_dataset("digits").x_test, first)


# ------------------------------------------------------------------ damaged or older files


def test_uncompressed_idx_file_with_a_gz_name_names_the_file(tmp_path):
    """A browser may unpack a download but keep its .gz name: a file that is not gzip data is
    a DatasetError naming it, not a bare gzip.BadGzipFile."""
    write_idx_folder(tmp_path, compress=True)
    bad = tmp_path / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.decompress(bad.read_bytes()))
    with pytest.raises(DatasetError, match="corrupt or truncated") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(bad) in str(info.value)


def test_train_and_test_images_of_different_widths_are_a_dataset_error(tmp_path):
    """Images must share height and width across the splits: 5x5 training images with 5x6
    test images are refused as a DatasetError naming both files (not a later ValueError)."""
    write_idx_folder(tmp_path, compress=False)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((7, 5, 6), np.uint8)))
    with pytest.raises(DatasetError, match=r"holds \(5, 5\) images but .* holds \(5, 6\) images"):
        load_dataset("mnist", root=tmp_path)


def test_cifar_pickles_written_by_numpy_1_are_read(tmp_path):
    """The published CIFAR batches were pickled before numpy 2, so their arrays name
    numpy.core.multiarray._reconstruct; such a file is read like one from numpy 2."""
    write_cifar10(tmp_path)
    data = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3072).astype(np.uint8)
    raw = pickle.dumps({b"labels": [3, 4], b"data": data}, protocol=2)
    old = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert old != raw  # the file really names the numpy 1 module
    (tmp_path / "data_batch_1").write_bytes(old)
    ds = load_dataset("cifar10", root=tmp_path)
    assert list(ds.y_train[:2]) == [3, 4]
    np.testing.assert_array_equal(ds.x_train[:2].reshape(2, -1) * 255, data)


def test_cifar_meta_listing_too_many_class_names_is_refused(tmp_path):
    """CIFAR-10 has exactly 10 class names: a meta file listing 11 is refused (it belongs to
    another set), as one listing 9 is."""
    write_cifar10(tmp_path)
    names = {b"label_names": [f"c{k}".encode() for k in range(11)]}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(names, protocol=2))
    with pytest.raises(DatasetError, match="'label_names' lists 11 classes, expected 10"):
        load_dataset("cifar10", root=tmp_path)


# ------------------------------------------------------------------ look-up


def test_system_fashion_mnist_is_the_last_resort_after_the_env_var(tmp_path, monkeypatch):
    """root, else $PLASTIX_DATA, else the system folder: a $PLASTIX_DATA without
    Fashion-MNIST files falls back to the system folder, and locate_dataset agrees."""
    system = tmp_path / "system" / "fashion-mnist"
    arrays = write_idx_folder(system, seed=6)
    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST", system)
    monkeypatch.setenv("PLASTIX_DATA", str(tmp_path / "empty"))
    ds = load_dataset("fashion-mnist")
    assert ds.source == str(system) and np.array_equal(ds.y_test, arrays[3])
    assert ds.classes[0] == "T-shirt/top"
    assert datasets.locate_dataset("fashion-mnist") == str(system)
