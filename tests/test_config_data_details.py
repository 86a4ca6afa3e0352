"""Second audit of plastix.sims.config, plastix.sims.experiments and plastix.sims.datasets:
details the earlier tests left open (damaged files, look-up order, Dataset checks, subset
streams, config parsing corners, run preparation and the run context)."""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field

import numpy as np
import pytest
from dataset_files import idx_bytes, toy_dataset, write_cifar10, write_idx_folder

from plastix.sims import datasets
from plastix.sims.datasets import Dataset, DatasetError, load_dataset, parse_idx, stratified_indices


@pytest.fixture(autouse=True)
def _no_env_and_fresh_cache(monkeypatch):
    monkeypatch.delenv("PLASTIX_DATA", raising=False)
    PROBE.clear()
    yield
    PROBE.clear()
    datasets.clear_cache()


# ------------------------------------------------------------------ damaged IDX files


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\x01\x00\x08\x03" + struct.pack(">3I", 12, 4, 4) + bytes(192), "bad magic number"),
        (b"", "bad magic number"),
        (b"\x00\x00", "bad magic number"),
    ],
    ids=["magic byte 0", "empty file", "two bytes"],
)
def test_idx_file_with_a_bad_or_missing_magic_number_is_refused(tmp_path, content, fragment):
    """The magic number is the four bytes 0, 0, 0x08, d: a non-zero first byte, or a file too
    short to hold the magic number at all (an empty download), is a DatasetError naming the
    file, not an IndexError or a misread array."""
    write_idx_folder(tmp_path, compress=False)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(content)
    with pytest.raises(DatasetError, match=fragment) as info:
        load_dataset("mnist", root=tmp_path)
    assert str(bad) in str(info.value)


def test_idx_gzip_with_a_corrupt_deflate_stream_names_the_file(tmp_path):
    """A .gz whose compressed data is damaged (zlib reports an invalid block type; not a
    truncation) is a DatasetError naming the file, like a truncated one."""
    write_idx_folder(tmp_path)
    bad = tmp_path / "train-labels-idx1-ubyte.gz"
    data = bytearray(bad.read_bytes())
    data[10] = 0xFF  # first byte after the 10-byte gzip header: a reserved block type
    bad.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="corrupt or truncated") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(bad) in str(info.value)


def test_parse_idx_reads_a_file_that_declares_zero_items():
    """A header declaring size 0 is followed by no data: the file is exactly the header, and
    that is a whole (empty) array, not a truncated header."""
    empty = parse_idx(idx_bytes(np.zeros(0, np.uint8)), 1)
    assert empty.shape == (0,) and empty.dtype == np.uint8
    images = parse_idx(idx_bytes(np.zeros((0, 4, 4), np.uint8)), 3)
    assert images.shape == (0, 4, 4)


def test_test_split_image_and_label_counts_must_match(tmp_path):
    """The test split's images and labels are checked against each other as the training
    split's are: a DatasetError naming both files."""
    write_idx_folder(tmp_path, compress=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DatasetError, match="7 images but .*t10k-labels-idx1-ubyte holds 5"):
        load_dataset("mnist", root=tmp_path)


# ------------------------------------------------------------------ damaged CIFAR files


def test_cifar_float_labels_are_refused_not_truncated(tmp_path):
    """Labels must be integers: 1.5 would otherwise silently become class 1."""
    write_cifar10(tmp_path)
    content = {b"labels": np.array([1.5, 2.0]), b"data": np.zeros((2, 3072), np.uint8)}
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(DatasetError, match="expected 2 integer labels") as info:
        load_dataset("cifar10", root=tmp_path)
    assert str(tmp_path / "data_batch_2") in str(info.value)


# ------------------------------------------------------------------ file look-up


def test_root_argument_is_the_only_place_looked_when_given(tmp_path, monkeypatch):
    """root, else $PLASTIX_DATA: with root given, files under $PLASTIX_DATA are not used (the
    error lists only the root places)."""
    write_idx_folder(tmp_path / "env" / "mnist")
    monkeypatch.setenv("PLASTIX_DATA", str(tmp_path / "env"))
    assert load_dataset("mnist").source == str(tmp_path / "env" / "mnist")
    with pytest.raises(DatasetError, match="dataset files not found") as info:
        load_dataset("mnist", root=tmp_path / "empty")
    assert "$PLASTIX_DATA" not in str(info.value)


# ------------------------------------------------------------------ Dataset record


def test_dataset_refuses_one_dimensional_inputs_and_two_dimensional_labels():
    """x is shaped (n, *sample_shape), so it has at least two axes; y is 1-D."""
    ds = toy_dataset()
    with pytest.raises(TypeError, match="x_train must be a float32 numpy array shaped"):
        Dataset("bad", ds.x_train[:, 0].copy(), ds.y_train, ds.x_test, ds.y_test, ds.classes)
    with pytest.raises(TypeError, match="y_test must be a 1-D int64"):
        Dataset("bad", ds.x_train, ds.y_train, ds.x_test, ds.y_test[:, None], ds.classes)


def test_flat_copies_the_labels_too():
    """flat() returns a copy: changing its labels leaves the original's alone."""
    ds = toy_dataset()
    flat = ds.flat()
    flat.y_train[:] = 0
    flat.y_test[:] = 0
    assert list(ds.y_train[:3]) == [0, 1, 2] and list(ds.y_test[:3]) == [0, 1, 2]


def test_load_dataset_sizes_draw_the_same_samples_as_subset(tmp_path):
    """load_dataset with n_train / n_test subsamples as Dataset.subset does with the same seed
    (the docstring's promise): the two give the same rows of each split."""
    write_idx_folder(tmp_path, n_train=40, n_test=20)
    full = load_dataset("mnist", root=tmp_path)
    for seed in (0, 3):
        direct = load_dataset("mnist", root=tmp_path, n_train=10, n_test=6, seed=seed)
        via_subset = full.subset(n_train=10, n_test=6, seed=seed)
        np.testing.assert_array_equal(direct.x_train, via_subset.x_train)
        np.testing.assert_array_equal(direct.y_train, via_subset.y_train)
        np.testing.assert_array_equal(direct.x_test, via_subset.x_test)
        np.testing.assert_array_equal(direct.y_test, via_subset.y_test)


def test_stratified_indices_break_ties_between_equal_remainders_at_random():
    """Three classes of two samples, n = 1: every class has the same remainder, so which one
    gets the single draw depends on the generator; over 20 seeds more than one class wins."""
    labels = np.array([0, 0, 1, 1, 2, 2])
    winners = {
        int(labels[stratified_indices(labels, 1, np.random.default_rng(s))][0]) for s in range(20)
    }
    assert len(winners) > 1


def test_xor_noise_is_drawn_independently_for_each_coordinate():
    """x = b + noise * N(0, I): the two coordinates' offsets from their corner are
    uncorrelated (one shared offset would shift every point along the diagonal only)."""
    x, _ = datasets.make_xor(2000, np.random.default_rng(0), noise=0.1)
    offsets = x - np.round(x)
    assert abs(np.corrcoef(offsets[:, 0], offsets[:, 1])[0, 1]) < 0.15
    assert np.std(offsets, axis=0) == pytest.approx([0.1, 0.1], rel=0.1)


# ------------------------------------------------------------------ config parsing


@dataclass
class Detailed:
    """Keys for the config checks below."""

    hidden: tuple[int, ...] = (4,)
    rates: list[float] = field(default_factory=lambda: [0.5])
    steps: int = 1
    scale: float = 1.0
    maybe: int | None = 3
    derived: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.derived = 2 * self.steps


def test_comma_lists_skip_blank_items():
    """`--set hidden=8,4,` (a trailing comma, or a blank between commas) gives (8, 4)."""
    from plastix.sims.config import build_config

    assert build_config(Detailed, {"hidden": "8,4, "}).hidden == (8, 4)
    assert build_config(Detailed, {"hidden": "8, ,4"}).hidden == (8, 4)


def test_a_single_toml_number_for_a_list_key_is_a_config_error():
    """A TOML `hidden = 3` (no brackets) is refused naming the key and the list it wants."""
    from plastix.sims.config import ConfigError, build_config

    with pytest.raises(ConfigError, match=r"hidden: expected a list of int \(e\.g\. 1,2,3\)"):
        build_config(Detailed, {"hidden": 3})


def test_large_finite_floats_are_not_held_to_the_integer_range():
    """The +/-(2**63 - 1) limit is for integers (numpy / torch indices); a float key takes any
    finite number."""
    from plastix.sims.config import build_config

    assert build_config(Detailed, {"scale": 1e30}).scale == 1e30
    assert build_config(Detailed, {"rates": "1e30,-1e30"}).rates == [1e30, -1e30]


def test_fields_outside_init_are_not_config_keys():
    """A field with init=False (derived in __post_init__) is neither listed nor settable."""
    from plastix.sims.config import ConfigError, build_config, config_fields

    assert "derived" not in [f.name for f in config_fields(Detailed)]
    with pytest.raises(ConfigError, match="unknown config key 'derived'") as info:
        build_config(Detailed, {"derived": 1})
    assert "derived" not in str(info.value).split("valid keys:")[1]
    assert build_config(Detailed, {"steps": 4}).derived == 8


def test_a_config_class_without_a_default_reports_the_missing_key_as_a_config_error():
    """A key without a default must be given; leaving it out is a ConfigError naming it."""
    from plastix.sims.config import ConfigError, build_config

    @dataclass
    class Required:
        epochs: int

    with pytest.raises(ConfigError, match="epochs"):
        build_config(Required, {})
    assert build_config(Required, {"epochs": "2"}).epochs == 2


def test_a_top_level_key_named_config_that_is_not_a_table_is_an_ordinary_key(tmp_path):
    """Only a [config] table is unwrapped; `config = "x"` is a key like any other."""
    from plastix.sims.config import read_config_file

    path = tmp_path / "c.toml"
    path.write_text('config = "x"\nepochs = 2\n')
    assert read_config_file(path) == {"config": "x", "epochs": 2}


def test_type_names_of_sequences_give_the_item_type():
    """`plastix list` shows tuple[int, ...] as tuple[int] and list[float] as list[float]."""
    from plastix.sims.config import config_fields

    names = {f.name: f.type_name for f in config_fields(Detailed)}
    assert names["hidden"] == "tuple[int]" and names["rates"] == "list[float]"


def test_none_from_python_gives_none_for_an_optional_key():
    """A sweep grid written in Python may hold None for an optional key, as TOML cannot."""
    from plastix.sims.config import build_config

    assert build_config(Detailed, {"maybe": None}).maybe is None


# ------------------------------------------------------------------ runs and their context


@dataclass
class _ProbeConfig:
    steps: int = 1
    mode: str = "a"


PROBE: dict = {}


def _register_probe() -> None:
    from plastix.sims.experiments import experiment

    @experiment("test-config-data-probe", _ProbeConfig, description="(test only)")
    def _probe(cfg: _ProbeConfig, ctx) -> None:
        PROBE["cfg"] = cfg
        PROBE.pop("call", lambda ctx: None)(ctx)
        ctx.summary(steps=cfg.steps)

    @experiment("test-default-device", _ProbeConfig, description="(test only)",
                devices=("numpy", "cython"), default_device="cython")  # fmt: skip
    def _default_device(cfg: _ProbeConfig, ctx) -> None:
        ctx.summary(steps=cfg.steps)


_register_probe()


def test_set_values_override_the_config_file(tmp_path):
    """`--set` overrides a key of `--config` (the CLI's help: "override a config key"); keys
    only in the file keep the file's value."""
    from plastix.sims.experiments import prepare_run

    toml = tmp_path / "c.toml"
    toml.write_text('steps = 2\nmode = "b"\n')
    prepared = prepare_run(
        "test-config-data-probe", overrides={"steps": "5"}, config_file=toml, out=tmp_path / "r.h5"
    )
    assert (prepared.cfg.steps, prepared.cfg.mode) == (5, "b")


def test_run_context_dataset_uses_the_runs_seed_and_data_root(tmp_path):
    """ctx.dataset(name, ...) loads with the run's --seed and --data-root unless told
    otherwise: the draw is load_dataset's for that seed, from that folder."""
    from plastix.sims.experiments import run_experiment

    write_idx_folder(tmp_path / "mnist", n_train=24, n_test=12)
    draws = {s: load_dataset("mnist", tmp_path, n_train=8, n_test=4, seed=s) for s in (0, 3)}
    assert not np.array_equal(draws[0].x_train, draws[3].x_train)  # the seed matters here
    PROBE["call"] = lambda ctx: PROBE.update(ds=ctx.dataset("mnist", n_train=8, n_test=4))
    run_experiment("test-config-data-probe", seed=3, data_root=str(tmp_path), out=tmp_path / "r.h5")
    ds = PROBE["ds"]
    assert ds.source == str(tmp_path / "mnist")
    np.testing.assert_array_equal(ds.x_train, draws[3].x_train)
    np.testing.assert_array_equal(ds.y_test, draws[3].y_test)


def test_result_files_may_end_in_hdf5(tmp_path):
    """Both .h5 and .hdf5 name a result file."""
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    out = run_experiment("test-config-data-probe", {"steps": 2}, out=tmp_path / "r.hdf5")
    assert out == tmp_path / "r.hdf5" and read_result(out).summary["steps"] == 2


def test_summary_array_of_exactly_the_largest_size_is_stored(tmp_path):
    """MAX_SUMMARY_ARRAY_BYTES is the largest array summary() takes: one of exactly that many
    bytes is stored, one element more is refused."""
    from plastix.sims.experiments import MAX_SUMMARY_ARRAY_BYTES, run_experiment
    from plastix.sims.results import read_result

    n = MAX_SUMMARY_ARRAY_BYTES // 8
    PROBE["call"] = lambda ctx: ctx.summary(curve=np.arange(n, dtype=np.float64))
    out = run_experiment("test-config-data-probe", out=tmp_path / "r.h5")
    np.testing.assert_array_equal(read_result(out).summary["curve"], np.arange(n))
    PROBE["call"] = lambda ctx: ctx.summary(curve=np.arange(n + 1, dtype=np.float64))
    with pytest.raises(ValueError, match="an HDF5 attribute holds at most"):
        run_experiment("test-config-data-probe", out=tmp_path / "big.h5")


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_cannot_name_saved_arrays(tmp_path, name):
    """'.' and '..' are HDF5 path steps, not names: refused where they are given."""
    from plastix.sims.experiments import run_experiment

    PROBE["call"] = lambda ctx: ctx.save_array(name, np.zeros(2))
    with pytest.raises(ValueError, match=f"name {name!r} cannot name a dataset"):
        run_experiment("test-config-data-probe", out=tmp_path / "r.h5")


def test_log_without_values_is_refused_with_an_example(tmp_path):
    """log() needs at least its axis value; an empty call says so (not a StopIteration)."""
    from plastix.sims.experiments import run_experiment

    PROBE["call"] = lambda ctx: ctx.log()
    with pytest.raises(ValueError, match=r"log\(\) needs at least the axis value"):
        run_experiment("test-config-data-probe", out=tmp_path / "r.h5")


def test_n_test_is_checked_against_the_dataset_before_the_run(tmp_path):
    """A test split smaller than ``n_test`` is refused when the run is prepared, naming the
    key and the largest value, and nothing is written."""
    from plastix.sims.config import ConfigError
    from plastix.sims.experiments import prepare_run

    with pytest.raises(ConfigError, match=r"n_test=100000 is larger than the 360 test samples"):
        prepare_run(
            "ib-rate", overrides={"dataset": "digits", "n_test": 100000}, out=tmp_path / "r.h5"
        )
    assert list(tmp_path.iterdir()) == []


def test_a_run_without_a_device_gets_the_experiments_default(tmp_path):
    """``default_device`` need not be the first of ``devices``: a run given no device takes
    the default; one given a device takes that."""
    from plastix.sims.experiments import prepare_run

    default = prepare_run("test-default-device", out=tmp_path / "a.h5")
    chosen = prepare_run("test-default-device", device="numpy", out=tmp_path / "b.h5")
    assert (default.start[0].device, chosen.start[0].device) == ("cython", "numpy")


def test_run_context_rng_is_seeded_by_the_run_seed(tmp_path):
    """``ctx.rng`` is ``np.random.default_rng(seed)`` of the run: another seed, another draw."""
    from plastix.sims.experiments import run_experiment

    for seed in (0, 5):
        PROBE["call"] = lambda ctx: PROBE.update(draw=ctx.rng.random(3))
        run_experiment("test-config-data-probe", seed=seed, out=tmp_path / f"r{seed}.h5")
        np.testing.assert_array_equal(PROBE["draw"], np.random.default_rng(seed).random(3))


def test_a_resumed_run_keeps_each_metric_on_the_axis_it_was_logged_against(tmp_path):
    """The rows of the checkpoint a run resumes from fix each metric's axis as well: 'loss'
    logged per epoch before the interruption cannot be logged per step after it."""
    from plastix.sims.experiments import RunContext
    from plastix.sims.results import RunRecord

    rows = [{"epoch": 0, "loss": 1.0}]
    record = RunRecord("test-config-data-probe", {}, 0, "cpu", rows=rows)
    ctx = RunContext(record, tmp_path / "r.h5")
    with pytest.raises(ValueError, match="metric 'loss' was logged against 'epoch' before"):
        ctx.log(step=0, loss=0.2)
    ctx.log(epoch=1, loss=0.5)


def test_an_experiment_name_taken_by_another_function_is_refused():
    """Two experiments cannot share a name (the second would silently replace the first);
    registering the same function again (a module imported twice) is allowed."""
    from plastix.sims.experiments import experiment, get_experiment

    spec = get_experiment("test-config-data-probe")
    with pytest.raises(ValueError, match="'test-config-data-probe' is registered twice"):
        experiment("test-config-data-probe", _ProbeConfig)(lambda cfg, ctx: None)
    experiment("test-config-data-probe", _ProbeConfig, description="(test only)")(spec.fn)
    assert get_experiment("test-config-data-probe").fn is spec.fn
