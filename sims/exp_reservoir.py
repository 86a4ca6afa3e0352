"""Experiment ``reservoir-wm``: the reservoir as the working memory of the IB Hebbian rule.

Three parts (choose with ``parts``):

- ``capacity``: Jaeger's linear memory capacity (2002) of random tanh ESNs and of linear
  orthogonal ones, for every size in ``capacity_units``; ``MC <= N`` and the linear reservoir
  near ``N``.
- ``xi``: the xi-modulator (:mod:`plastix.reservoirs.xi_modulator`), trained a priori on
  synthetic streams, predicting xi on a real stream (``xi_dataset`` inputs and labels, ``z``
  from the first hidden layer of a freshly initialised ReLU+LayerNorm MLP). Agreement
  (cosine, effective cosine after the LayerNorm projection, NRMSE) for every window ``B`` in
  ``xi_windows`` and reservoir size ``N`` in ``xi_units``, plus a memoryless control
  (spectral radius 0: the readout sees only the current sample). With
  ``architecture = kernel-memory`` an orthogonal memory has ``N`` units (``memory_ratio = N /
  ((B - 1) dim(u))``); a delay line has its fixed size ``(B - 1) dim(u)`` in every column.
- ``loop``: the rate IB rule on ``dataset`` with xi from ``sources``: ``exact`` (computed
  from the window), ``exact-row-centred`` (its first-order form, ``xi_method`` of the
  kernel-memory default), ``reservoir`` (the modulators in the loop), ``labels`` (exact xi from the
  labels alone, without ``K_X`` and ``K_Z``: what a factorised modulator can know),
  ``no-kz`` (exact xi with ``K_Z = 1``) and ``zero`` (hidden layers frozen: readout alone).
  Same initial weights and sample order for every source.

Stored: metrics on axis ``delay`` (``r2_tanh_n<N>``, ``r2_linear_n<N>``), axis ``epoch``
(``test_accuracy_<source>``, ``train_accuracy_<source>``, ``epoch_s_<source>``; for the
reservoir also ``xi_cosine_layer<l>``, ``xi_effective_cosine_layer<l>`` and
``xi_update_cosine_layer<l>`` measured in the loop against the exact xi); arrays
``xi_windows``, ``xi_units``, ``xi_cosine``, ``xi_effective_cosine``, ``xi_nrmse``
(windows x units), ``xi_memoryless_effective_cosine``,
``xi_memoryless_nrmse`` (windows), ``capacity_units``, ``memory_capacity_tanh``,
``memory_capacity_linear``. Summary: ``test_accuracy`` (reservoir in the loop),
``test_accuracy_exact``, ``test_accuracy_zero``, ``accuracy_gap_points`` (exact - reservoir),
``memory_capacity_tanh_n<N>`` / ``..._linear_n<N>``, ``xi_effective_cosine`` at the loop's
``window`` and ``n_units`` where measured.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from plastix.bridges.ib_reservoir import ReservoirIBTrainer, fit_layer_modulators
from plastix.bridges.ib_training import AdamWSettings, IBRule, IBTrainer, evaluate
from plastix.bridges.rate_networks import RateMLP
from plastix.reservoirs.esn import ESNConfig, init_esn_weights
from plastix.reservoirs.memory import memory_capacity
from plastix.reservoirs.xi_modulator import (
    XiModulatorConfig,
    fit_xi_modulator,
    xi_agreement,
    xi_targets,
)
from plastix.sims.experiments import RunContext, experiment

_POS = {"min": 0.0, "min_exclusive": True}
Part = Literal["capacity", "xi", "loop"]
Source = Literal["exact", "exact-row-centred", "reservoir", "labels", "no-kz", "zero"]


@dataclass
class ReservoirWMConfig:
    parts: tuple[Part, ...] = ("capacity", "xi", "loop")
    # memory capacity
    capacity_units: tuple[int, ...] = field(
        default=(20, 50, 100), metadata={"min": 1, "help": "reservoir sizes for the MC curve"}
    )
    capacity_steps: int = field(default=5000, metadata={"min": 200, "help": "input length"})
    capacity_radius: float = field(default=0.9, metadata={"min": 0.0, "help": "spectral radius"})
    # xi-modulator design
    architecture: Literal["factorised", "global", "kernel-memory"] = field(
        default="factorised",
        metadata={
            "help": "factorised: one small reservoir per neuron; global: one reservoir; "
            "kernel-memory: linear memory reservoir + kernel units (set gated=false, "
            "window_products=false)"
        },
    )
    memory_topology: Literal["delay-line", "orthogonal"] = field(
        default="delay-line",
        metadata={"help": "kernel-memory: delay line (exact memory) or random orthogonal"},
    )
    memory_ratio: float = field(
        default=1.0,
        metadata={
            **_POS,
            "help": "kernel-memory, orthogonal: N = ratio x (B-1) x dim(u) in the loop "
            "(the delay line needs 1)",
        },
    )
    xi_method: Literal["exact", "row-centred", "diagonal"] = field(
        default="row-centred",
        metadata={"help": "kernel-memory: the xi its kernel stage computes"},
    )
    gated: bool = field(default=True, metadata={"help": "readout selected by the current label"})
    window_products: bool = field(
        default=True,
        metadata={"help": "factorised: add count x sum products of decoded window statistics"},
    )
    activation: Literal["identity", "tanh"] = "identity"
    spectral_radius: float = field(default=0.9, metadata={"min": 0.0})
    input_scaling: float = field(default=0.5, metadata=_POS)
    x_projection: int = field(default=16, metadata={"min": 1, "help": "global: dims of P x"})
    modulator_chunks: int = field(
        default=4, metadata={"min": 1, "help": "batches of 8 synthetic streams for the fit"}
    )
    # xi agreement table
    xi_windows: tuple[int, ...] = field(default=(4, 8, 16), metadata={"min": 2})
    xi_units: tuple[int, ...] = field(default=(100, 200, 400), metadata={"min": 1})
    xi_neurons: int = field(default=64, metadata={"min": 1, "help": "width of the probed layer"})
    xi_dataset: Literal["digits", "fashion-mnist"] = "digits"
    xi_samples: int = field(default=1000, metadata={"min": 20, "help": "stream length"})
    # reservoir in the loop
    dataset: Literal["digits", "fashion-mnist"] = "digits"
    hidden: tuple[int, ...] = field(default=(128, 64), metadata={"min": 1})
    window: int = field(default=8, metadata={"min": 2, "help": "B"})
    n_units: int = field(default=400, metadata={"min": 1, "help": "reservoir size in the loop"})
    sources: tuple[Source, ...] = field(
        default=("exact", "reservoir", "labels", "zero"),
        metadata={
            "help": "exact: xi from the window; exact-row-centred: its first-order form; "
            "reservoir: the modulators; labels: exact xi "
            "from labels only (what a factorised modulator sees); no-kz: exact xi with K_Z = 1; "
            "zero: readout only"
        },
    )
    epochs: int = field(default=10, metadata={"min": 1})
    lr: float = field(default=1e-4, metadata=_POS)
    n_train: int | None = field(default=None, metadata={"min": 2})
    n_test: int | None = field(default=None, metadata={"min": 1})
    gamma: float = 2.0
    sigmas: tuple[float, ...] = field(default=(0.5, 0.1, 1.0), metadata=_POS)
    threads: int | None = field(default=1, metadata={"min": 1, "help": "torch CPU threads"})

    def validate(self) -> None:
        if self.window_products and self.architecture != "factorised":
            raise ValueError(
                "window_products: only the factorised architecture has them; set "
                f"window_products=false with architecture={self.architecture}"
            )
        for key in ("parts", "sources"):
            names = getattr(self, key)
            if len(set(names)) != len(names):
                raise ValueError(f"{key}: {names} repeats a name; list each once")
        if len(self.sigmas) != 3:
            raise ValueError(f"sigmas: expected three widths (x, y, z), got {list(self.sigmas)}")
        if "xi" in self.parts and self.xi_samples <= max(self.xi_windows):
            raise ValueError(
                f"xi_samples: {self.xi_samples} must exceed the largest window "
                f"{max(self.xi_windows)}"
            )
        if self.n_train is not None and self.n_train < self.window:
            raise ValueError(f"n_train: {self.n_train} is smaller than window = {self.window}")
        self.modulator()  # the modulator's own checks, named by the same keys

    def _architecture_fields(self) -> dict:
        if self.architecture != "kernel-memory":
            return {}  # xi_method stays "exact": the learnt readouts fit the exact xi
        return {
            "memory_topology": self.memory_topology,
            "memory_ratio": self.memory_ratio,
            "xi_method": self.xi_method,
        }

    def modulator(self, **changes) -> XiModulatorConfig:
        base = XiModulatorConfig(
            gamma=self.gamma,
            sigmas=tuple(self.sigmas),
            architecture=self.architecture,
            gated=self.gated,
            window_products=self.window_products,
            activation=self.activation,
            spectral_radius=self.spectral_radius,
            input_scaling=self.input_scaling,
            x_projection=self.x_projection,
            n_chunks=self.modulator_chunks,
            n_units=self.n_units,
            window=self.window,
            **self._architecture_fields(),
        )
        changed = replace(base, **changes)
        # a fixed in-degree of about 20 recurrent connections per unit, whatever N
        return replace(changed, connectivity=min(1.0, 20 / changed.n_units))


@contextlib.contextmanager
def _threads(n: int | None):
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _mlp(n_in: int, hidden: tuple[int, ...], n_classes: int, seed: int) -> RateMLP:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RateMLP(n_in, hidden, n_classes)


def _capacity(cfg: ReservoirWMConfig, ctx: RunContext) -> None:
    units = list(cfg.capacity_units)
    max_delay = 2 * max(units)
    tanh_mc, linear_mc = [], []
    curves: dict[str, np.ndarray] = {}
    for n in ctx.progress(units, desc="capacity"):
        for kind in ("tanh", "linear"):
            esn = ESNConfig(
                n_inputs=1,
                n_units=n,
                spectral_radius=cfg.capacity_radius,
                connectivity=min(1.0, 10 / n),
                input_scaling=0.1 if kind == "tanh" else 1.0,
                activation="tanh" if kind == "tanh" else "identity",
                recurrent_init="sparse_normal" if kind == "tanh" else "orthogonal",
            )
            curve = memory_capacity(
                init_esn_weights(esn, seed=ctx.seed + n),
                n_steps=max(cfg.capacity_steps, 20 * n),
                max_delay=max_delay,
                seed=ctx.seed,
            )
            curves[f"r2_{kind}_n{n}"] = curve.r2
            (tanh_mc if kind == "tanh" else linear_mc).append(curve.capacity)
            ctx.summary(**{f"memory_capacity_{kind}_n{n}": curve.capacity})
    for d in range(max_delay):
        ctx.log(delay=d + 1, **{k: v[d] for k, v in curves.items()})
    ctx.save_array("capacity_units", np.array(units))
    ctx.save_array("memory_capacity_tanh", np.array(tanh_mc))
    ctx.save_array("memory_capacity_linear", np.array(linear_mc))


def _xi_stream(cfg: ReservoirWMConfig, ctx: RunContext):
    ds = ctx.dataset(cfg.xi_dataset, n_train=cfg.xi_samples, n_test=1).flat()
    x = torch.as_tensor(ds.x_train, dtype=torch.float64)
    y = torch.as_tensor(ds.y_train, dtype=torch.int64)
    net = _mlp(x.shape[1], (cfg.xi_neurons,), len(ds.classes), ctx.seed)
    with torch.no_grad():
        traces, _ = net.trace(x.float())
    z = traces[0].z("norm").double()
    return x, torch.nn.functional.one_hot(y, len(ds.classes)).double(), z


def _memory_of_size(mcfg: XiModulatorConfig, n_units: int) -> XiModulatorConfig:
    """Kernel-memory: an orthogonal memory of ``n_units`` (ratio ``N / ((B - 1) dim(u))``);
    a delay line keeps its fixed size ``(B - 1) dim(u)``."""
    if mcfg.memory_topology == "delay-line":
        return mcfg
    return replace(mcfg, memory_ratio=n_units / ((mcfg.window - 1) * mcfg.n_inputs))


def _xi_table(cfg: ReservoirWMConfig, ctx: RunContext) -> None:
    x, y, z = _xi_stream(cfg, ctx)
    windows, units = list(cfg.xi_windows), list(cfg.xi_units)
    shape = (len(windows), len(units))
    cos, eff, nrmse = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    mem_eff, mem_nrmse = np.full(len(windows), np.nan), np.full(len(windows), np.nan)
    grid = [(i, j) for i in range(len(windows)) for j in range(-1, len(units))]
    for i, j in ctx.progress(grid, desc="xi table"):
        b = windows[i]
        size = units[j] if j >= 0 else min(units)
        mcfg = cfg.modulator(
            n_neurons=cfg.xi_neurons, n_classes=y.shape[1], window=b, n_units=size, seed=ctx.seed
        )
        if j < 0:  # memoryless control of the smallest size: spectral radius 0, state W_in e_t
            mcfg = replace(mcfg, spectral_radius=0.0)
            if cfg.architecture == "kernel-memory":
                mcfg = replace(mcfg, memory_topology="orthogonal", activation="identity")
        if cfg.architecture == "kernel-memory":
            mcfg = _memory_of_size(mcfg, size)
        modulator = fit_xi_modulator(mcfg)
        pred = modulator.predict(x, y, z)[b - 1 :]
        agreement = xi_agreement(pred, xi_targets(x, y, z, mcfg), z[b - 1 :])
        if j < 0:
            mem_eff[i], mem_nrmse[i] = agreement.effective_cosine, agreement.nrmse
        else:
            cos[i, j] = agreement.cosine
            eff[i, j] = agreement.effective_cosine
            nrmse[i, j] = agreement.nrmse
    ctx.save_array("xi_windows", np.array(windows))
    ctx.save_array("xi_units", np.array(units))
    ctx.save_array("xi_cosine", cos)
    ctx.save_array("xi_effective_cosine", eff)
    ctx.save_array("xi_nrmse", nrmse)
    ctx.save_array("xi_memoryless_effective_cosine", mem_eff)
    ctx.save_array("xi_memoryless_nrmse", mem_nrmse)
    if cfg.window in windows and cfg.n_units in units:
        i, j = windows.index(cfg.window), units.index(cfg.n_units)
        ctx.summary(xi_effective_cosine=eff[i, j], xi_cosine=cos[i, j], xi_nrmse=nrmse[i, j])


def _loop(cfg: ReservoirWMConfig, ctx: RunContext, state: dict) -> None:
    ds = ctx.dataset(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test).flat()
    x = torch.as_tensor(ds.x_train, dtype=torch.float32)
    y = torch.as_tensor(ds.y_train, dtype=torch.int64)
    xt = torch.as_tensor(ds.x_test, dtype=torch.float32)
    yt = torch.as_tensor(ds.y_test, dtype=torch.int64)
    n_classes = len(ds.classes)
    rule = IBRule(gamma=cfg.gamma, sigmas=tuple(cfg.sigmas), window=cfg.window)
    optim = AdamWSettings(lr=cfg.lr)
    for source in cfg.sources:
        key = f"loop:{source}"
        if key in state["done"]:
            continue
        net = _mlp(x.shape[1], tuple(cfg.hidden), n_classes, ctx.seed)
        if source == "exact":
            trainer = IBTrainer(net, rule, optim)
        elif source == "exact-row-centred":
            trainer = IBTrainer(net, replace(rule, xi_method="row-centred"), optim)
        else:
            modulators = None
            if source == "reservoir":
                modulators = fit_layer_modulators(net, rule, cfg.modulator(seed=ctx.seed))
            trainer = ReservoirIBTrainer(net, modulators, rule, optim, xi_source=source)
            trainer.track_agreement = source == "reservoir"
        order_gen = torch.Generator().manual_seed(ctx.seed)
        test_acc = train_acc = float("nan")
        for epoch in ctx.progress(range(cfg.epochs), desc=source):
            start = time.perf_counter()
            trainer.train_epoch(x, y, order_gen)
            seconds = time.perf_counter() - start
            test_acc, _ = evaluate(net, xt, yt)
            train_acc, _ = evaluate(net, x, y)
            row = {
                f"test_accuracy_{source}": test_acc,
                f"train_accuracy_{source}": train_acc,
                f"epoch_s_{source}": seconds,
            }
            if source == "reservoir":
                for layer, a in enumerate(trainer.agreement()):
                    row[f"xi_cosine_layer{layer}"] = a["cosine"]
                    row[f"xi_effective_cosine_layer{layer}"] = a["effective_cosine"]
                    row[f"xi_update_cosine_layer{layer}"] = a["update_cosine"]
            ctx.log(epoch=epoch, **row)
        summary_key = "test_accuracy" if source == "reservoir" else f"test_accuracy_{source}"
        ctx.summary(**{summary_key: test_acc, f"train_accuracy_{source}": train_acc})
        state["done"].append(key)
        state["final"][source] = test_acc
        ctx.checkpoint(state)


@experiment(
    "reservoir-wm",
    ReservoirWMConfig,
    description="reservoir working memory: memory capacity, xi-modulator agreement, "
    "reservoir-in-the-loop IB training",
)
def run_reservoir_wm(cfg: ReservoirWMConfig, ctx: RunContext) -> None:
    state = ctx.resume_state() or {"done": [], "final": {}}
    with _threads(cfg.threads):
        if "capacity" in cfg.parts and "capacity" not in state["done"]:
            _capacity(cfg, ctx)
            state["done"].append("capacity")
            ctx.checkpoint(state)
        if "xi" in cfg.parts and "xi" not in state["done"]:
            _xi_table(cfg, ctx)
            state["done"].append("xi")
            ctx.checkpoint(state)
        if "loop" in cfg.parts:
            _loop(cfg, ctx, state)
    final = state["final"]
    if "reservoir" in final and "exact" in final:
        ctx.summary(accuracy_gap_points=100.0 * (final["exact"] - final["reservoir"]))
