"""Continual-learning harness: task streams, learners (NTE and baselines), accuracy matrix.

Scenarios (G. van de Ven & A. Tolias, "Three scenarios for continual learning", 2019):

- ``"domain"`` (domain-incremental): one shared head, every output unit active; permuted tasks
  (each task a fixed pixel permutation; task 1 unpermuted) are the standard example.
- ``"task"`` (task-incremental): the task identity is known; the logits of classes outside the
  current task are masked to −inf in training and testing (a "masked head").
- ``"class"`` (class-incremental): no task identity; the active units are all classes seen so
  far (masked to −inf otherwise), for training on task i and for testing after task i.

Metrics, from the accuracy matrix ``R[i, j]`` = test accuracy on task j after training task i
(all tasks, including those not trained yet):

- average accuracy after task i: ``mean_{j≤i} R[i, j]``;
- forgetting after task i (Chaudhry et al., ECCV 2018): ``mean_{j<i} (max_{j≤l<i} R[l, j] −
  R[i, j])``;
- task-1 retention ``R[i, 0]`` and task-1 forgetting ``R[0, 0] − R[T−1, 0]`` (positive = lost;
  the NTE paper's measure, Benjamin et al. 2024, up to its sign convention).

Learners wrap a model and an optimizer; baselines are SGD, SGD with momentum, Adam and EWC
(Kirkpatrick et al., PNAS 2017), next to the neural tangent ensemble (``tangent_ensemble``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plastix.bridges.checks import (
    check_adam_betas,
    check_labels,
    check_positive,
    check_seed,
    plain_seed,
)
from plastix.bridges.tangent_ensemble import NeuralTangentEnsemble, per_example_gradients
from plastix.scalars import is_finite_real, is_integer, is_real

Scenario = Literal["domain", "task", "class"]
OptimizerName = Literal["nte", "sgd", "adam", "ewc"]
Init = Literal["torch", "lecun"]

SCENARIOS = ("domain", "task", "class")
OPTIMIZERS = ("nte", "sgd", "adam", "ewc")
_INITS = ("torch", "lecun")
_TRUNCATED_NORMAL_STD = 0.87962566103423978  # of a unit normal truncated at ±2
DEFAULT_LRS = {"nte": 0.01, "sgd": 0.01, "ewc": 0.01, "adam": 1e-3}


# --- tasks -----------------------------------------------------------------------------------


@dataclass
class Task:
    """One task: its data and the output units (classes) it uses."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: Tensor

    def __post_init__(self) -> None:
        if self.x_train.shape[0] != self.y_train.shape[0]:
            raise ValueError(
                f"task {self.name!r}: x_train has {self.x_train.shape[0]} rows but y_train has "
                f"{self.y_train.shape[0]}"
            )
        if self.x_test.shape[0] != self.y_test.shape[0]:
            raise ValueError(
                f"task {self.name!r}: x_test has {self.x_test.shape[0]} rows but y_test has "
                f"{self.y_test.shape[0]}"
            )
        if self.x_train.shape[0] == 0 or self.x_test.shape[0] == 0:
            raise ValueError(f"task {self.name!r}: needs at least one train and one test example")


def _as_tensors(x_train: Any, y_train: Any, x_test: Any, y_test: Any) -> tuple[Tensor, ...]:
    """Inputs as float32 ``(n, d)``, labels as int64, after checking that train and test
    inputs have the same features and the labels are whole numbers >= 0 (never truncated)."""
    xs = [np.asarray(x, dtype=np.float64) for x in (x_train, x_test)]
    ys = [np.asarray(y) for y in (y_train, y_test)]
    for name, x, y in zip(("train", "test"), xs, ys, strict=True):
        if x.ndim < 1 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{name}: {x.shape[0] if x.ndim else 0} inputs but labels of shape {y.shape}; "
                "give one label per input"
            )
        if y.size and (not np.all(np.mod(y, 1) == 0) or y.min() < 0):
            raise ValueError(f"y_{name}: labels must be whole class indices >= 0; got {y[:5]}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"x_{name}: contains NaN or inf")
    if xs[0].shape[1:] != xs[1].shape[1:]:
        raise ValueError(
            f"x_test: sample shape {xs[1].shape[1:]} but x_train has {xs[0].shape[1:]}; give "
            "both the same features"
        )
    return (
        torch.as_tensor(xs[0], dtype=torch.float32),
        torch.as_tensor(ys[0].astype(np.int64)),
        torch.as_tensor(xs[1], dtype=torch.float32),
        torch.as_tensor(ys[1].astype(np.int64)),
    )


def permuted_tasks(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any, n_tasks: int, seed: int = 0
) -> list[Task]:
    """``n_tasks`` tasks sharing labels, each with its own fixed permutation of the input
    features (inputs flattened to (n, d)); task 1 keeps the original order."""
    if not is_integer(n_tasks) or n_tasks < 1:
        raise ValueError(f"n_tasks must be a positive integer, got {n_tasks!r}")
    n_tasks = int(n_tasks)
    xtr, ytr, xte, yte = _as_tensors(x_train, y_train, x_test, y_test)
    xtr, xte = xtr.reshape(xtr.shape[0], -1), xte.reshape(xte.shape[0], -1)
    n_classes = int(max(ytr.max(), yte.max())) + 1
    generator = torch.Generator().manual_seed(plain_seed(seed))
    tasks = []
    for t in range(n_tasks):
        perm = (
            torch.arange(xtr.shape[1])
            if t == 0
            else torch.randperm(xtr.shape[1], generator=generator)
        )
        tasks.append(
            Task(f"permuted-{t + 1}", xtr[:, perm], ytr, xte[:, perm], yte, torch.arange(n_classes))
        )
    return tasks


def split_tasks(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    n_tasks: int,
    class_order: Sequence[int] | None = None,
) -> list[Task]:
    """Split the classes into ``n_tasks`` equal groups (in ``class_order``, default ascending);
    task t holds the examples of its classes. Labels keep their original values."""
    xtr, ytr, xte, yte = _as_tensors(x_train, y_train, x_test, y_test)
    classes = torch.unique(torch.cat([ytr, yte]))
    order = classes if class_order is None else torch.as_tensor(list(class_order))
    if class_order is not None and sorted(order.tolist()) != classes.tolist():
        raise ValueError(
            f"class_order={list(class_order)!r} must be a permutation of the labels "
            f"{classes.tolist()}"
        )
    if not is_integer(n_tasks) or n_tasks < 1 or len(order) % n_tasks:
        raise ValueError(
            f"n_tasks={n_tasks!r} must be a positive divisor of the number of classes "
            f"({len(order)})"
        )
    n_tasks = int(n_tasks)
    per_task = len(order) // n_tasks
    tasks = []
    for t in range(n_tasks):
        cls = order[t * per_task : (t + 1) * per_task]
        tr, te = torch.isin(ytr, cls), torch.isin(yte, cls)
        name = "split-" + "-".join(str(int(c)) for c in cls)
        tasks.append(Task(name, xtr[tr], ytr[tr], xte[te], yte[te], cls.clone()))
    return tasks


def output_mask(
    tasks: Sequence[Task], task_index: int, scenario: Scenario, n_outputs: int
) -> Tensor | None:
    """Boolean mask of active output units when training on / testing task ``task_index``;
    None when all are active (domain-incremental)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario={scenario!r} is not valid; choose one of {SCENARIOS}")
    if scenario == "domain":
        return None
    mask = torch.zeros(n_outputs, dtype=torch.bool)
    chosen = [tasks[task_index]] if scenario == "task" else tasks[: task_index + 1]
    for task in chosen:
        if int(task.classes.max()) >= n_outputs:
            raise ValueError(
                f"task {task.name!r} uses class {int(task.classes.max())} but the model has "
                f"only {n_outputs} outputs"
            )
        mask[task.classes] = True
    return mask


def masked_logits(logits: Tensor, mask: Tensor | None) -> Tensor:
    """Logits with inactive units set to −inf (softmax probability 0)."""
    return logits if mask is None else logits.masked_fill(~mask, float("-inf"))


# --- metrics ---------------------------------------------------------------------------------


def average_accuracy(matrix: Any) -> np.ndarray:
    """``A_i = mean_{j≤i} R[i, j]`` for every row i of the accuracy matrix."""
    r = _square(matrix)
    return np.array([r[i, : i + 1].mean() for i in range(r.shape[0])])


def forgetting(matrix: Any) -> np.ndarray:
    """``F_i = mean_{j<i} (max_{j≤l<i} R[l, j] − R[i, j])`` (Chaudhry et al. 2018); F_0 = 0."""
    r = _square(matrix)
    out = np.zeros(r.shape[0])
    for i in range(1, r.shape[0]):
        out[i] = np.mean([r[j:i, j].max() - r[i, j] for j in range(i)])
    return out


def task1_forgetting(matrix: Any) -> float:
    """``R[0, 0] − R[T−1, 0]``: accuracy on task 1 lost by the end (positive = forgotten)."""
    r = _square(matrix)
    return float(r[0, 0] - r[-1, 0])


def _square(matrix: Any) -> np.ndarray:
    r = np.asarray(matrix, dtype=float)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
        raise ValueError(f"the accuracy matrix must be square (T, T), got shape {r.shape}")
    return r


# --- learners --------------------------------------------------------------------------------


class Learner(Protocol):
    """What :func:`run_continual` drives: one optimisation step per batch, hooks per task."""

    model: nn.Module

    def begin_task(self, task_index: int) -> None: ...

    def train_batch(self, x: Tensor, y: Tensor, mask: Tensor | None) -> float: ...

    def end_task(self, task_index: int, task: Task, mask: Tensor | None) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _loss(model: nn.Module, x: Tensor, y: Tensor, mask: Tensor | None) -> Tensor:
    return F.cross_entropy(masked_logits(model(x), mask), y)


class _OptimizerStateLearner:
    """A learner whose whole state is its optimizer's: nothing to do when a task ends, and the
    optimizer's state dict is the checkpoint."""

    optimizer: torch.optim.Optimizer

    def end_task(self, task_index: int, task: Task, mask: Tensor | None) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])


class OptimizerLearner(_OptimizerStateLearner):
    """Cross-entropy with any ``torch.optim`` optimizer (SGD, SGD + momentum, Adam...).

    ``reset_between_tasks`` clears the optimizer state (e.g. the momentum buffer) when a new task
    begins.
    """

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, reset_between_tasks: bool = False
    ):
        self.model = model
        self.optimizer = optimizer
        self.reset_between_tasks = reset_between_tasks

    def begin_task(self, task_index: int) -> None:
        if self.reset_between_tasks and task_index > 0:
            self.optimizer.state.clear()

    def loss(self, x: Tensor, y: Tensor, mask: Tensor | None) -> Tensor:
        return _loss(self.model, x, y, mask)

    def train_batch(self, x: Tensor, y: Tensor, mask: Tensor | None) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(x, y, mask)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


class NTELearner(_OptimizerStateLearner):
    """Neural tangent ensemble steps: the batch form (default) or exact per-example factors."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: NeuralTangentEnsemble,
        per_example: bool = False,
        per_example_method: Literal["vmap", "loop"] = "vmap",
    ):
        if not isinstance(optimizer, NeuralTangentEnsemble):
            raise TypeError(f"NTELearner needs a NeuralTangentEnsemble, got {type(optimizer)!r}")
        self.model = model
        self.optimizer = optimizer
        self.per_example = per_example
        self.per_example_method = per_example_method

    def begin_task(self, task_index: int) -> None:
        return None

    def train_batch(self, x: Tensor, y: Tensor, mask: Tensor | None) -> float:
        if self.per_example:

            def loss_fn(out: Tensor, target: Tensor) -> Tensor:
                return F.cross_entropy(masked_logits(out, mask), target)

            loss = self.optimizer.step_per_example(
                self.model, loss_fn, x, y, method=self.per_example_method
            )
            return float(loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss = _loss(self.model, x, y, mask)
        loss.backward()
        self.optimizer.step(batch_size=x.shape[0])
        return float(loss.detach())


class EWCLearner(OptimizerLearner):
    """Elastic weight consolidation (Kirkpatrick et al., PNAS 2017), one penalty per past task:

        L = CE + (λ/2) Σ_t Σ_i F_{t,i} (θ_i − θ*_{t,i})²

    with ``F_t`` the diagonal empirical Fisher (mean squared per-example gradient of the
    log-likelihood of the true label) on up to ``fisher_samples`` training examples of task t
    and ``θ*_t`` the parameters at the end of task t. ``per_example_method="loop"`` computes the
    per-example gradients without torch.func (needed for snntorch surrogate spikes).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        ewc_lambda: float = 400.0,
        fisher_samples: int = 200,
        reset_between_tasks: bool = False,
        seed: int = 0,
        per_example_method: Literal["vmap", "loop"] = "vmap",
    ):
        _check_ewc_lambda(ewc_lambda)
        if not is_integer(fisher_samples) or fisher_samples < 1:
            raise ValueError(f"fisher_samples must be a positive integer, got {fisher_samples!r}")
        super().__init__(model, optimizer, reset_between_tasks)
        self.ewc_lambda = ewc_lambda
        self.fisher_samples = int(fisher_samples)
        self.seed = plain_seed(seed)
        self.per_example_method = per_example_method
        self.penalties: list[tuple[dict[str, Tensor], dict[str, Tensor]]] = []

    def loss(self, x: Tensor, y: Tensor, mask: Tensor | None) -> Tensor:
        loss = _loss(self.model, x, y, mask)
        if not self.penalties or self.ewc_lambda == 0:
            return loss
        params = dict(self.model.named_parameters())
        penalty = sum(
            (fisher[k] * (params[k] - anchor[k]).pow(2)).sum()
            for fisher, anchor in self.penalties
            for k in fisher
        )
        return loss + 0.5 * self.ewc_lambda * penalty

    def end_task(self, task_index: int, task: Task, mask: Tensor | None) -> None:
        generator = torch.Generator().manual_seed(self.seed + task_index)
        n = min(self.fisher_samples, task.x_train.shape[0])
        idx = torch.randperm(task.x_train.shape[0], generator=generator)[:n]
        params = {k: p for k, p in self.model.named_parameters() if p.requires_grad}
        fisher = {k: torch.zeros_like(p) for k, p in params.items()}

        def loss_fn(out: Tensor, target: Tensor) -> Tensor:
            return F.cross_entropy(masked_logits(out, mask), target)

        for start in range(0, n, 64):
            batch = idx[start : start + 64]
            x, y = task.x_train[batch], task.y_train[batch]
            grads, _ = per_example_gradients(
                self.model, loss_fn, x, y, params, self.per_example_method
            )
            for k, g in grads.items():
                fisher[k] += g.detach().pow(2).sum(0)
        fisher = {k: f / n for k, f in fisher.items()}
        anchor = {k: p.detach().clone() for k, p in params.items()}
        self.penalties.append((fisher, anchor))

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "penalties": self.penalties}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.penalties = list(state["penalties"])


def _check_ewc_lambda(value: Any) -> None:
    if not is_finite_real(value) or value < 0:
        raise ValueError(f"ewc_lambda must be a finite number >= 0, got {value!r}")


@dataclass
class LearnerConfig:
    """Which optimizer and its hyper-parameters (defaults: the NTE repository's MNIST configs).

    ``lr`` None means the optimizer's default: SGD / EWC 0.01, Adam 1e-3, NTE η = 0.01.
    ``momentum`` applies to SGD and to EWC's inner SGD.
    """

    optimizer: OptimizerName = "nte"
    lr: float | None = None
    momentum: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.99)
    reset_between_tasks: bool = False
    nte_exponent: float = 1.0
    nte_max_delta: float | None = 0.1
    nte_expansion: Literal["origin", "init"] = "origin"
    nte_per_example: bool = False
    ewc_lambda: float = 400.0
    ewc_fisher_samples: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer={self.optimizer!r} is not valid; choose one of {OPTIMIZERS}"
            )
        if self.lr is not None:
            check_positive("lr", self.lr, "or lr=None for the optimizer's default")
        if not is_real(self.momentum) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        check_adam_betas("adam_betas", self.adam_betas)
        check_positive("nte_exponent", self.nte_exponent, "e.g. nte_exponent=1.0")
        if self.nte_max_delta is not None:
            check_positive("nte_max_delta", self.nte_max_delta, "or None for no clipping")
        _check_ewc_lambda(self.ewc_lambda)
        if not is_integer(self.ewc_fisher_samples) or self.ewc_fisher_samples < 1:
            raise ValueError(
                f"ewc_fisher_samples must be a positive integer, got {self.ewc_fisher_samples!r}"
            )
        check_seed(self.seed)
        if self.momentum and self.optimizer in ("nte", "adam"):
            raise ValueError(
                f"momentum={self.momentum!r} applies to 'sgd' and 'ewc' only, not "
                f"{self.optimizer!r}; set momentum=0"
            )

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LRS[self.optimizer]


def make_learner(model: nn.Module, config: LearnerConfig) -> Learner:
    """Build the learner (model + optimizer) that ``config`` describes."""
    lr = config.learning_rate
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "nte":
        optimizer = NeuralTangentEnsemble(
            params,
            lr=lr,
            exponent=config.nte_exponent,
            max_delta=config.nte_max_delta,
            expansion=config.nte_expansion,
            seed=config.seed,
        )
        return NTELearner(model, optimizer, per_example=config.nte_per_example)
    if config.optimizer == "adam":
        adam = torch.optim.Adam(params, lr=lr, betas=config.adam_betas)
        return OptimizerLearner(model, adam, config.reset_between_tasks)
    sgd = torch.optim.SGD(params, lr=lr, momentum=config.momentum)
    if config.optimizer == "ewc":
        return EWCLearner(
            model,
            sgd,
            config.ewc_lambda,
            config.ewc_fisher_samples,
            config.reset_between_tasks,
            config.seed,
        )
    return OptimizerLearner(model, sgd, config.reset_between_tasks)


def mlp(
    in_features: int, hidden: Sequence[int], n_outputs: int, init: Init = "torch"
) -> nn.Sequential:
    """``Linear → ReLU`` for each hidden width, then a linear read-out.

    ``init="torch"``: PyTorch's default, weights and biases ``U(−1/√fan_in, 1/√fan_in)``.
    ``init="lecun"``: Flax's ``nn.Dense`` default, used by the NTE authors' JAX code — weights
    from a normal truncated at ±2σ and rescaled to variance ``1/fan_in`` (LeCun et al., "Efficient
    BackProp", 1998), biases zero. Under the NTE about the origin each parameter's rate scales
    with its magnitude, so the two inits train differently (zero biases become 1e-3 noise there).
    """
    if not hidden or any(int(h) < 1 for h in hidden):
        raise ValueError(f"hidden must be a non-empty list of positive widths, got {hidden!r}")
    if init not in _INITS:
        raise ValueError(f"init={init!r} is not valid; choose one of {_INITS}")
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, n_outputs))
    if init == "lecun":
        for layer in layers:
            if isinstance(layer, nn.Linear):
                # σ of the untruncated normal whose ±2σ truncation has variance 1 / fan_in
                std = math.sqrt(1.0 / layer.in_features) / _TRUNCATED_NORMAL_STD
                nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
                nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


# --- the loop --------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, mask: Tensor | None, batch_size: int = 1024
) -> float:
    """Fraction of ``x`` whose arg-max over the active logits equals ``y``."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, x.shape[0], batch_size):
        logits = masked_logits(model(x[start : start + batch_size]), mask)
        correct += int((logits.argmax(1) == y[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / x.shape[0]


@dataclass
class ContinualResult:
    """Accuracy matrix ``R[i, j]`` (after task i, on task j) and the metrics derived from it."""

    accuracy_matrix: np.ndarray
    train_loss: np.ndarray

    @property
    def average_accuracy(self) -> np.ndarray:
        return average_accuracy(self.accuracy_matrix)

    @property
    def forgetting(self) -> np.ndarray:
        return forgetting(self.accuracy_matrix)

    @property
    def task1_retention(self) -> np.ndarray:
        return self.accuracy_matrix[:, 0].copy()

    @property
    def task1_forgetting(self) -> float:
        return task1_forgetting(self.accuracy_matrix)


def run_continual(
    learner: Learner,
    tasks: Sequence[Task],
    scenario: Scenario,
    *,
    n_outputs: int,
    epochs: int = 1,
    batch_size: int = 128,
    seed: int = 0,
    eval_batch_size: int = 1024,
    start_task: int = 0,
    partial: ContinualResult | None = None,
    on_task_end: Callable[[int, ContinualResult], None] | None = None,
) -> ContinualResult:
    """Train ``learner`` on ``tasks`` in order; after each task test on every task.

    Batches are drawn without replacement in an order fixed by ``seed`` and the task index.
    ``on_task_end(i, result_so_far)`` is called after the evaluation of task i (for logging and
    checkpoints); ``start_task`` and ``partial`` resume from such a point (rows ≥ start_task are
    recomputed).
    """
    if not tasks:
        raise ValueError("tasks is empty; pass at least one Task")
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario={scenario!r} is not valid; choose one of {SCENARIOS}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("n_outputs", n_outputs)):
        if not is_integer(value) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    epochs, batch_size, n_outputs = int(epochs), int(batch_size), int(n_outputs)
    seed = plain_seed(seed)  # a numpy seed could also overflow in seed * 1_000_003 below
    if not 0 <= start_task <= len(tasks) or (start_task > 0 and partial is None):
        raise ValueError(
            f"start_task={start_task!r} needs 0 <= start_task <= {len(tasks)} and, when > 0, "
            "the partial result it resumes"
        )
    fix = f"the model has n_outputs={n_outputs}; give class indices 0..{n_outputs - 1}"
    for task in tasks:
        check_labels(task.y_train, n_outputs, fix, name=f"task {task.name!r}: y_train")
        check_labels(task.y_test, n_outputs, fix, name=f"task {task.name!r}: y_test")
    n = len(tasks)
    device = tasks[0].x_train.device
    masks = [output_mask(tasks, i, scenario, n_outputs) for i in range(n)]
    masks = [None if m is None else m.to(device) for m in masks]
    if partial is None:
        result = ContinualResult(np.full((n, n), np.nan), np.full(n, np.nan))
    else:
        if partial.accuracy_matrix.shape != (n, n) or partial.train_loss.shape != (n,):
            raise ValueError(
                f"partial: accuracy matrix {partial.accuracy_matrix.shape} and losses "
                f"{partial.train_loss.shape} do not belong to a run of {n} tasks"
            )
        result = ContinualResult(partial.accuracy_matrix.copy(), partial.train_loss.copy())
    learner.model.train()
    for i in range(start_task, n):
        task = tasks[i]
        learner.begin_task(i)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
        losses = []
        for _ in range(epochs):
            order = torch.randperm(task.x_train.shape[0], generator=generator)
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                losses.append(learner.train_batch(task.x_train[idx], task.y_train[idx], masks[i]))
        learner.end_task(i, task, masks[i])
        result.train_loss[i] = float(np.mean(losses))
        if not math.isfinite(result.train_loss[i]):
            raise FloatingPointError(
                f"training loss became {result.train_loss[i]} on task {task.name!r}; lower the "
                "learning rate"
            )
        for j, other in enumerate(tasks):
            eval_mask = masks[j] if scenario == "task" else masks[i]
            result.accuracy_matrix[i, j] = evaluate(
                learner.model, other.x_test, other.y_test, eval_mask, eval_batch_size
            )
        if on_task_end is not None:
            on_task_end(i, result)
    return result
