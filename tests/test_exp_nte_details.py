"""Details of the nte-continual experiment not checked elsewhere: the run, task, width, momentum
and optimizer columns of its metrics rows, the training loss it logs, the initial weights its
runs share, the per-run forgetting it stores, the output masks of the split scenarios, the
dataset sizes it asks for, and the config values it refuses or accepts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_TINY = {
    "dataset": "digits",
    "epochs": 1,
    "batch_size": 32,
    "n_train": 96,
    "n_test": 50,
    "sgd_lr": 0.5,
}

# sgd listed before nte: the optimizer index must follow this order, not a built-in one
_GRID = {**_TINY, "n_tasks": 3, "optimizers": "sgd,nte", "widths": "8,12", "momenta": "0,0.5"}
_GRID_RUNS = [  # (optimizer index, width, momentum) in run order
    (0, 8, 0.0),
    (0, 8, 0.5),
    (1, 8, 0.0),
    (0, 12, 0.0),
    (0, 12, 0.5),
    (1, 12, 0.0),
]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """One small grid run (3 permuted tasks, sgd at two momenta and nte, two widths, seed 7),
    with what its learners saw: each run's initial parameters and the loss of every training
    batch per task, and the sizes of the data handed to ``permuted_tasks``."""
    from plastix.sims import exp_nte
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    runs, data = [], []
    make_learner, permuted_tasks = exp_nte.make_learner, exp_nte.permuted_tasks

    def recording_make_learner(model, config):
        run = {"initial": [p.detach().clone() for p in model.parameters()], "losses": []}
        runs.append(run)
        learner = make_learner(model, config)
        begin_task, train_batch = learner.begin_task, learner.train_batch

        def recording_begin_task(i):
            run["losses"].append([])
            begin_task(i)

        def recording_train_batch(x, y, mask):
            loss = train_batch(x, y, mask)
            run["losses"][-1].append(loss)
            return loss

        learner.begin_task, learner.train_batch = recording_begin_task, recording_train_batch
        return learner

    def recording_permuted_tasks(x_train, y_train, x_test, y_test, n_tasks, seed):
        data.append((tuple(x_train.shape), tuple(x_test.shape)))
        return permuted_tasks(x_train, y_train, x_test, y_test, n_tasks, seed=seed)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(exp_nte, "make_learner", recording_make_learner)
            mp.setattr(exp_nte, "permuted_tasks", recording_permuted_tasks)
            out = tmp_path_factory.mktemp("nte") / "r.h5"
            res = read_result(run_experiment("nte-continual", _GRID, out=out, seed=7))
    finally:
        torch.set_num_threads(threads)
    return res, runs, data


def test_metrics_rows_name_the_run_task_width_momentum_and_config_optimizer(grid):
    """One row per run and task in run order: step ``r·T + i``, ``run`` r, ``task`` i, the run's
    width and momentum, and ``optimizer`` as an index into the config's own ``optimizers``
    (sgd listed first is 0, nte 1), the same index as the stored ``run_optimizer``."""
    res, _, _ = grid
    m, n_tasks = res.metrics, 3
    expected = np.repeat(np.array(_GRID_RUNS, dtype=float), n_tasks, axis=0)
    np.testing.assert_array_equal(m["step"], np.arange(len(_GRID_RUNS) * n_tasks))
    np.testing.assert_array_equal(m["run"], np.repeat(np.arange(len(_GRID_RUNS)), n_tasks))
    np.testing.assert_array_equal(m["task"], np.tile(np.arange(n_tasks), len(_GRID_RUNS)))
    np.testing.assert_array_equal(m["optimizer"], expected[:, 0])
    np.testing.assert_array_equal(m["width"], expected[:, 1])
    np.testing.assert_array_equal(m["momentum"], expected[:, 2])
    assert res.arrays["run_optimizer"].tolist() == [o for o, _, _ in _GRID_RUNS]
    assert res.config["optimizers"] == ["sgd", "nte"]


def test_logged_train_loss_is_the_mean_batch_loss_of_each_task(grid):
    """``train_loss`` of row (r, i) is the mean of the losses the learner returned for the
    training batches of task i in run r (96 examples in batches of 32: three per task)."""
    res, runs, _ = grid
    assert [len(batches) for run in runs for batches in run["losses"]] == [3] * 18
    expected = [np.mean(batches) for run in runs for batches in run["losses"]]
    np.testing.assert_allclose(res.metrics["train_loss"], expected, rtol=1e-6)
    assert len(set(expected)) == len(expected)  # the tasks' losses told apart


def test_runs_at_one_width_start_from_the_seeds_initial_weights(grid):
    """Every run at one width starts from the same weights: the MLP ``_initial_model`` builds
    from the run's seed, with one output per class of the dataset (10 for digits)."""
    from plastix.sims.exp_nte import _initial_model

    _, runs, _ = grid
    assert len(runs) == len(_GRID_RUNS)
    for run, (_, width, _) in zip(runs, _GRID_RUNS, strict=True):
        expected = list(_initial_model(64, width, 2, 10, "torch", seed=7).parameters())
        assert [tuple(p.shape) for p in run["initial"]] == [tuple(p.shape) for p in expected]
        for p, q in zip(run["initial"], expected, strict=True):
            torch.testing.assert_close(p, q.detach(), rtol=0, atol=0)


def test_task1_forgetting_is_the_loss_on_the_first_task_by_the_end(grid):
    """Stored ``task1_forgetting`` and each run's summary ``task1_forgetting_<label>`` are
    ``R[0, 0] − R[T−1, 0]`` (not the Chaudhry forgetting of the last task, which averages over
    every earlier task); ``average_accuracy_<label>`` is the mean of the last row."""
    res, _, _ = grid
    r = res.arrays["accuracy_matrices"]
    assert r.shape == (6, 3, 3)
    t1 = r[:, 0, 0] - r[:, 2, 0]
    chaudhry = [np.mean([m[:2, 0].max() - m[2, 0], m[1, 1] - m[2, 1]]) for m in r]
    assert not np.allclose(t1, chaudhry)  # the two measures differ on this grid
    np.testing.assert_allclose(res.arrays["task1_forgetting"], t1)
    labels = ["sgd_w8_m0", "sgd_w8_m0.5", "nte_w8", "sgd_w12_m0", "sgd_w12_m0.5", "nte_w12"]
    for label, forgot, row in zip(labels, t1, r[:, 2], strict=True):
        assert res.summary[f"task1_forgetting_{label}"] == pytest.approx(forgot)
        assert res.summary[f"average_accuracy_{label}"] == pytest.approx(row.mean())


def test_tasks_take_n_train_and_n_test_examples(grid):
    """The dataset is asked for ``n_train`` training and ``n_test`` test examples, flattened
    to features (digits: 8×8 = 64), and split once into the permuted tasks."""
    _, _, data = grid
    assert data == [((96, 64), (50, 64))]


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_split_scenarios_mask_the_outputs_as_named(tmp_path, scenario):
    """``class``: after task i only the classes seen so far can be predicted, so every later
    task scores exactly 0. ``task``: each task is tested through its own five-class head, so
    the not-yet-trained second task scores above 0 (chance 1/5 on 25 examples)."""
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    overrides = {**_TINY, "scenario": scenario, "n_tasks": 2, "optimizers": "sgd", "widths": "8"}
    res = read_result(run_experiment("nte-continual", overrides, out=tmp_path / "r.h5", seed=1))
    [r] = res.arrays["accuracy_matrices"]
    if scenario == "class":
        assert r[0, 1] == 0.0
    else:
        assert r[0, 1] > 0.0


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"n_tasks": 0}, "n_tasks"),
        ({"depth": 0}, "depth"),
        ({"momenta": "0,-0.1"}, "momenta"),
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"n_train": 0}, "n_train"),
        ({"n_test": 0}, "n_test"),
        ({"sgd_lr": 0}, "sgd_lr"),
        ({"adam_lr": 0}, "adam_lr"),
        ({"nte_lr": 0}, "nte_lr"),
        ({"nte_exponent": 0}, "nte_exponent"),
        ({"nte_max_delta": 0}, "nte_max_delta"),
        ({"ewc_lambda": -1}, "ewc_lambda"),
        ({"ewc_fisher_samples": 0}, "ewc_fisher_samples"),
        ({"scenario": "class", "n_tasks": 3}, "does not split 10 classes"),
        ({"scenario": "task", "n_tasks": 4}, "use 1, 2, 5 or 10"),
    ],
)
def test_config_refuses_impossible_values_before_any_work(overrides, match):
    """Values the run could not use are a ConfigError naming the key when the config is built,
    not a failure later in the run."""
    from plastix.sims.config import ConfigError, build_config
    from plastix.sims.exp_nte import NTEContinualConfig

    with pytest.raises(ConfigError, match=match):
        build_config(NTEContinualConfig, overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        *({"scenario": s, "n_tasks": n} for s in ("task", "class") for n in (1, 2, 5, 10)),
        {"scenario": "permuted", "n_tasks": 3},
        {"momenta": "0,0.99"},
        {"ewc_lambda": 0},
        {"nte_max_delta": "none"},
        {"n_train": "none", "n_test": "none"},
    ],
)
def test_config_accepts_the_edges_of_what_runs(overrides):
    """Every even split of the ten classes for the split scenarios, any task count for the
    permuted one, a momentum just under 1, no EWC penalty, no NTE clip and the full dataset
    are all valid."""
    from plastix.sims.config import build_config
    from plastix.sims.exp_nte import NTEContinualConfig

    build_config(NTEContinualConfig, overrides)


def test_resume_restores_the_learners_state_mid_run(tmp_path, monkeypatch):
    """A run interrupted after its first task resumes with the learner's state of that moment
    (EWC's Fisher penalty and anchor, SGD's momentum buffer), so it logs the same training
    losses and accuracies as a run never interrupted; a fresh learner would not."""
    from plastix.sims.experiments import RunContext, run_experiment
    from plastix.sims.results import read_result

    overrides = {
        **_TINY,
        "n_tasks": 2,
        "optimizers": "ewc",
        "widths": "8",
        "momenta": "0.9",
        "fixed_effective_lr": False,
        "sgd_lr": 0.1,
        "ewc_lambda": 50.0,
        "ewc_fisher_samples": 32,
    }
    reference = read_result(run_experiment("nte-continual", overrides, out=tmp_path / "a.h5"))
    original = RunContext.checkpoint

    def interrupt_after_the_first_task(self, state):
        original(self, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunContext, "checkpoint", interrupt_after_the_first_task)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("nte-continual", overrides, out=tmp_path / "b.h5")
    monkeypatch.setattr(RunContext, "checkpoint", original)
    resumed = read_result(run_experiment("nte-continual", overrides, out=tmp_path / "b.h5"))
    np.testing.assert_allclose(resumed.metrics["train_loss"], reference.metrics["train_loss"])
    np.testing.assert_array_equal(
        resumed.arrays["accuracy_matrices"], reference.arrays["accuracy_matrices"]
    )
