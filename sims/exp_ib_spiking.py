"""Experiment ``ib-spiking``: the IB three-factor rule in a spiking Brian2 network.

Poisson input (one channel per pixel, rate ``input_rate_hz`` x pixel value) drives LIF hidden
layers whose input weights learn with the IB rule (:mod:`plastix.plasticity.ib_rule`); a rate
readout learns by the softmax cross-entropy delta rule (:mod:`plastix.circuits.ib_network`).
``xi_source="exact"``: after each sample Python computes ξ from the working memory of the last
``window`` samples (Daruwalla & Lipasti 2024; :class:`~plastix.circuits.ib_network.
ExactXiTrainer`) — runtime: one run with a per-sample callback; cpp/cuda standalone: one build
re-run per sample with ``run_args``. ``xi_source="reservoir"``: one ξ-modulator per hidden
layer (:mod:`plastix.reservoirs.xi_modulator`, fitted a priori on synthetic streams, no
dataset; ``modulator="kernel-memory"``: a delay-line working-memory reservoir whose readout
recalls the last B - 1 samples and kernel units that compute the row-centred ξ,
:mod:`plastix.circuits.kernel_memory`; ``"factorised"``: one small reservoir per neuron with a
label-gated readout) runs inside the simulation and every epoch — training then
test samples — is ONE run with no Python between samples
(:class:`~plastix.circuits.ib_network.CompiledEpochTrainer`); standalone backends build once
and re-run per epoch. ``xi_source="none"``: the same compiled epochs with the hidden layer
frozen (readout-only baseline). Every sample starts from rest in every mode, and all
weight updates are applied at the end of each sample, so the modes differ only in where ξ
comes from (and in their random numbers).

Defaults (the README's main job, ``plastix run ib-spiking``): digits (1437 train / 360
test), 64-100-10, 3 epochs, exact ξ, 100 ms per sample (learning window 10-100 ms), dt 0.5
ms, Poisson inputs up to 300 Hz, IB rate 75/s, initial hidden weights 0.7 mV, readout 2.5/s,
B = 8, gamma 2, sigmas (0.5, 0.1, 1.0), device ``auto`` (cpp_standalone where a C++ compiler
works). Fashion-MNIST and MNIST change two of them (:data:`DATASET_DEFAULTS`: 1.4 mV, 1/s).

Stored: metrics per ``epoch`` (``train_accuracy`` — online, before each sample's update —,
``test_accuracy``, ``samples_per_s``, ``mean_rate_hz``), spike rasters of the first
``raster_samples`` test samples (``spikes/input``, ``spikes/hidden<k>``), weights after every
epoch (``weights/w<k>_epoch<e>``, ``weights/readout_epoch<e>``) and the initial ones
(``..._init``); summary ``test_accuracy``, ``train_accuracy``, ``samples_per_s`` (exact ξ:
training samples per second of training time; compiled modes: train + test samples per second
of the epoch runs), ``backend``, and the ``w_init_mean`` and ``readout_eta`` used. A
checkpoint after every epoch (weights, rate means, RNG) lets an interrupted run resume at the
next epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from brian2 import Hz, ms

from plastix.circuits.ib_network import (
    CircuitWeights,
    CompiledEpochTrainer,
    ExactXiTrainer,
    IBCircuitSpec,
    XiSettings,
    init_weights,
)
from plastix.circuits.layers import SampleTiming
from plastix.plasticity.ib_rule import IBThreeFactor
from plastix.reservoirs.xi_modulator import (
    XiModulatorConfig,
    fit_kernel_memory_modulator,
    fit_xi_modulator,
)
from plastix.sims.experiments import BRIAN2_DEVICES, RunContext, experiment

_POS = {"min": 0.0, "min_exclusive": True}
#: The kernel-memory modulator's default input coordinates at most: a random projection to k
#: dimensions distorts distances by about sqrt(2 / k) (9 % here; 18 % at 64 let the hidden
#: rates drift upwards on Fashion-MNIST, benchmarks/RESULTS.md, section ib-spiking-tuning).
MAX_X_PROJECTION = 256
#: Values of the keys left at None, per dataset (chosen by the runs in benchmarks/RESULTS.md,
#: section ib-spiking-tuning): on 784-pixel images the readout's delta rule needs more hidden
#: spikes per sample and a slower rate. MNIST (not measured) takes the Fashion-MNIST values.
DATASET_DEFAULTS: dict[str, dict[str, float]] = {
    "digits": {"w_init_mean": 0.7, "readout_eta": 2.5},
    "fashion-mnist": {"w_init_mean": 1.4, "readout_eta": 1.0},
    "mnist": {"w_init_mean": 1.4, "readout_eta": 1.0},
}


@dataclass
class IBSpikingConfig:
    dataset: Literal["digits", "fashion-mnist", "mnist"] = "digits"
    n_train: int | None = field(
        default=None, metadata={"min": 1, "help": "training samples (None: all)"}
    )
    n_test: int | None = field(
        default=None, metadata={"min": 1, "help": "test samples (None: all)"}
    )
    epochs: int = field(default=3, metadata={"min": 1, "help": "training epochs"})
    hidden: tuple[int, ...] = field(default=(100,), metadata={"min": 1, "help": "hidden sizes"})
    xi_source: Literal["exact", "reservoir", "none"] = field(
        default="exact",
        metadata={
            "help": "exact: Python computes ξ per sample (reference); reservoir: ξ-modulator "
            "inside the simulation, one run per epoch; none: hidden layer frozen"
        },
    )
    presentation_ms: float = field(default=100.0, metadata={**_POS, "help": "time per sample"})
    gap_ms: float = field(default=0.0, metadata={"min": 0.0, "help": "silence between samples"})
    settle_ms: float = field(
        default=10.0, metadata={"min": 0.0, "help": "no learning this long after onset"}
    )
    dt_ms: float = field(default=0.5, metadata={**_POS, "help": "Brian2 time step"})
    input_rate_hz: float = field(default=300.0, metadata={**_POS, "help": "rate of a white pixel"})
    eta: float = field(default=75.0, metadata={"min": 0.0, "help": "IB learning rate (1/s)"})
    readout_eta: float | None = field(
        default=None,
        metadata={
            "min": 0.0,
            "help": "readout delta-rule learning rate (1/s); None: 2.5 for digits, 1 for "
            "fashion-mnist and mnist",
        },
    )
    window: int = field(default=8, metadata={"min": 2, "help": "working memory B (samples)"})
    gamma: float = field(default=2.0, metadata={"help": "IB trade-off HSIC(X,Z) - gamma HSIC(Y,Z)"})
    sigmas: tuple[float, ...] = field(
        default=(0.5, 0.1, 1.0), metadata={**_POS, "help": "kernel widths (x, y, z)"}
    )
    xi_site: Literal["norm", "rate"] = field(
        default="norm", metadata={"help": "ξ of layer-normalised rates (norm) or of rates"}
    )
    w_init_mean: float | None = field(
        default=None,
        metadata={
            "help": "mean initial hidden weight (mV); None: 0.7 for digits, 1.4 for "
            "fashion-mnist and mnist"
        },
    )
    w_init_spread: float = field(default=0.7, metadata={"min": 0.0, "help": "its spread (mV)"})
    raster_samples: int = field(default=3, metadata={"min": 0, "help": "test samples to raster"})
    warmup_samples: int | None = field(
        default=None,
        metadata={
            "min": 0,
            "help": "samples shown before learning starts (None: three rate-mean time constants)",
        },
    )
    modulator: Literal["kernel-memory", "factorised"] = field(
        default="kernel-memory",
        metadata={
            "help": "reservoir ξ: kernel-memory (delay-line working memory + kernel units, "
            "row-centred ξ) or factorised (one small reservoir per neuron, label-gated readout)"
        },
    )
    modulator_x_projection: int | None = field(
        default=None,
        metadata={
            "min": 1,
            "help": "kernel-memory: input coordinates kept (JL projection; None: all of them, "
            f"at most {MAX_X_PROJECTION})",
        },
    )
    modulator_units: int = field(
        default=200, metadata={"min": 1, "help": "factorised: reservoir units per neuron"}
    )
    modulator_chunks: int = field(
        default=4, metadata={"min": 1, "help": "synthetic stream batches to fit the modulator"}
    )

    def resolved(self) -> IBSpikingConfig:
        """This config with the keys left at None set to the dataset's values
        (:data:`DATASET_DEFAULTS`)."""
        chosen = DATASET_DEFAULTS[self.dataset]
        return replace(self, **{k: v for k, v in chosen.items() if getattr(self, k) is None})

    def validate(self) -> None:
        if len(self.sigmas) != 3:
            raise ValueError(
                f"sigmas: {self.sigmas!r}; give three widths (sigma_x, sigma_y, sigma_z)"
            )
        if self.settle_ms >= self.presentation_ms:
            raise ValueError(
                f"settle_ms: {self.settle_ms} leaves no learning window in presentation_ms "
                f"{self.presentation_ms}; use settle_ms < presentation_ms"
            )
        for name in ("presentation_ms", "gap_ms", "settle_ms"):
            steps = getattr(self, name) / self.dt_ms
            if abs(steps - round(steps)) > 1e-9:
                raise ValueError(
                    f"{name}: {getattr(self, name)} is not a multiple of dt_ms {self.dt_ms}; "
                    "choose a whole number of time steps"
                )


def circuit_spec(cfg: IBSpikingConfig, n_input: int, n_classes: int) -> IBCircuitSpec:
    """The circuit a configuration describes (keys left at None: the dataset's values)."""
    cfg = cfg.resolved()
    timing = SampleTiming(
        presentation=cfg.presentation_ms * ms,
        gap=cfg.gap_ms * ms,
        settle=cfg.settle_ms * ms,
        dt=cfg.dt_ms * ms,
    )
    return IBCircuitSpec(
        n_input=n_input,
        hidden=tuple(cfg.hidden),
        n_classes=n_classes,
        timing=timing,
        rule=IBThreeFactor(eta=cfg.eta * Hz),
        input_rate=cfg.input_rate_hz * Hz,
        readout_eta=cfg.readout_eta * Hz,
    )


def fit_modulator(cfg: IBSpikingConfig, n_neurons: int, n_classes: int, n_input: int, seed: int):
    """The ξ-modulator of one hidden layer for ``n_input`` input channels, fitted a priori on
    synthetic streams."""
    common = dict(
        n_neurons=n_neurons,
        n_classes=n_classes,
        window=cfg.window,
        gamma=cfg.gamma,
        sigmas=tuple(cfg.sigmas),
        n_chunks=cfg.modulator_chunks,
        window_products=False,
        seed=seed,
    )
    if cfg.modulator == "factorised":
        return fit_xi_modulator(XiModulatorConfig(n_units=cfg.modulator_units, **common))
    return fit_kernel_memory_modulator(
        XiModulatorConfig(
            architecture="kernel-memory",
            x_projection=cfg.modulator_x_projection or min(n_input, MAX_X_PROJECTION),
            xi_method="row-centred",
            gated=False,
            memory_topology="delay-line",
            activation="identity",
            leak=1.0,
            **common,
        )
    )


def _save_weights(ctx: RunContext, weights: CircuitWeights, tag: str) -> None:
    for k, w in enumerate(weights.hidden):
        ctx.save_weights(f"w{k}_{tag}", w)
    ctx.save_weights(f"readout_{tag}", weights.readout)
    ctx.save_weights(f"bias_{tag}", weights.bias)


@experiment(
    "ib-spiking",
    IBSpikingConfig,
    description="IB three-factor rule in a spiking Brian2 network (digits by default)",
    devices=BRIAN2_DEVICES,
    default_device="auto",
)
def run_ib_spiking(cfg: IBSpikingConfig, ctx: RunContext) -> None:
    from plastix.circuits.backend import resolve_backend

    backend = resolve_backend(ctx.device)
    cfg = cfg.resolved()
    ds = ctx.dataset(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test).flat()
    data = (
        np.asarray(ds.x_train, float),
        np.asarray(ds.y_train),
        np.asarray(ds.x_test, float),
        np.asarray(ds.y_test),
    )
    spec = circuit_spec(cfg, data[0].shape[1], len(ds.classes))
    weights = init_weights(spec, ctx.rng, mean=cfg.w_init_mean, spread=cfg.w_init_spread)
    _save_weights(ctx, weights, "init")
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    if cfg.xi_source == "exact":
        run = _run_exact
    else:
        run = _run_compiled
    train_acc, test_acc, samples_per_s = run(cfg, ctx, spec, weights, backend, data)
    ctx.summary(
        test_accuracy=test_acc,
        train_accuracy=train_acc,
        samples_per_s=samples_per_s,
        backend=backend,
        w_init_mean=cfg.w_init_mean,
        readout_eta=cfg.readout_eta,
    )


def _resume(ctx: RunContext, trainer) -> int:
    """Restore trainer state from the last checkpoint; returns the first epoch to run."""
    state = ctx.resume_state()
    if state is None:
        return 0
    trainer.weights = CircuitWeights(
        [np.asarray(w) for w in state["hidden"]],
        np.asarray(state["readout"]),
        np.asarray(state["bias"]),
    )
    trainer.rate_means = [np.asarray(m) for m in state["rate_means"]]
    trainer.skip_warmup()
    ctx.rng.bit_generator.state = state["rng"]
    return int(state["epoch"]) + 1


def _log_epoch(ctx: RunContext, epoch: int, train, test, trainer, last: bool) -> None:
    ctx.log(
        epoch=epoch,
        train_accuracy=train.accuracy,
        test_accuracy=test.accuracy,
        samples_per_s=train.samples_per_s,
        mean_rate_hz=float(np.mean(np.concatenate(train.mean_rates))),
    )
    _save_weights(ctx, trainer.weights, f"epoch{epoch}")
    if last:  # the result file follows; a crash before it re-runs this epoch
        return
    ctx.checkpoint(
        {
            "epoch": epoch,
            "hidden": [w.copy() for w in trainer.weights.hidden],
            "readout": trainer.weights.readout.copy(),
            "bias": trainer.weights.bias.copy(),
            "rate_means": [m.copy() for m in trainer.rate_means],
            "rng": ctx.rng.bit_generator.state,
        }
    )


def _trainer_options(cfg, ctx: RunContext, backend: str) -> dict:
    """The keyword arguments both trainers take from the run: backend, build folder, cache of
    compiled circuits, seed, raster samples and warm-up."""
    return dict(
        backend=backend,
        directory=ctx.workdir / "build",
        project_cache=ctx.build_cache,
        seed=ctx.seed,
        raster_samples=cfg.raster_samples,
        warmup=cfg.warmup_samples,
    )


def _train_epochs(cfg, ctx: RunContext, trainer, x_train, y_train, run_epoch):
    """Run the epochs left (from :func:`_resume`) to ``cfg.epochs``, each on a fresh shuffle of
    the training set; ``run_epoch(x, y)`` trains on it and returns the (train, test) passes.
    Logs and checkpoints every epoch and saves the last test pass's spikes; returns the last
    (train, test) passes, the number of epochs this call ran (fewer than ``cfg.epochs`` after
    a resume) and their summed training seconds."""
    seconds, epochs = 0.0, range(_resume(ctx, trainer), cfg.epochs)
    for epoch in ctx.progress(epochs, desc="epoch"):
        order = ctx.rng.permutation(len(x_train))
        train, test = run_epoch(x_train[order], y_train[order])
        seconds += train.wall_s
        _log_epoch(ctx, epoch, train, test, trainer, epoch + 1 == cfg.epochs)
    for name, (i, t) in test.spikes.items():
        ctx.save_spikes(name, i, t)
    return train, test, len(epochs), seconds


def _run_exact(cfg, ctx, spec, weights, backend, data):
    x_train, y_train, x_test, y_test = data
    xi = XiSettings(cfg.gamma, tuple(cfg.sigmas), cfg.window, "exact", cfg.xi_site)
    with ExactXiTrainer(spec, weights, xi, **_trainer_options(cfg, ctx, backend)) as trainer:

        def run_epoch(x, y):
            return trainer.train_epoch(x, y), trainer.evaluate(x_test, y_test)

        train, test, epochs, seconds = _train_epochs(cfg, ctx, trainer, x_train, y_train, run_epoch)
    return train.accuracy, test.accuracy, epochs * len(x_train) / seconds


def _run_compiled(cfg, ctx, spec, weights, backend, data):
    """Whole epochs (train + test) as single runs; ξ from in-simulation modulators."""
    x_train, y_train, x_test, y_test = data
    modulators = None
    if cfg.xi_source == "reservoir":
        start = time.perf_counter()
        modulators = [
            fit_modulator(cfg, n, spec.n_classes, spec.n_input, seed=ctx.seed + k)
            for k, n in enumerate(spec.hidden)
        ]
        ctx.summary(modulator_fit_s=time.perf_counter() - start)
    with CompiledEpochTrainer(
        spec,
        weights,
        len(x_train),
        len(x_test),
        xi_source=cfg.xi_source,
        xi_modulators=modulators,
        **_trainer_options(cfg, ctx, backend),
    ) as trainer:

        def run_epoch(x, y):
            return trainer.run_epoch(x, y, x_test, y_test)

        train, test, epochs, seconds = _train_epochs(cfg, ctx, trainer, x_train, y_train, run_epoch)
    # one run covers train and test: samples/s counts both
    return train.accuracy, test.accuracy, epochs * (len(x_train) + len(x_test)) / seconds
