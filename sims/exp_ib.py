"""Experiments for the rate-based IB Hebbian rule and its baselines (torch).

- ``ib-rate``: the three-factor IB rule of Daruwalla & Lipasti (2024) on a sliding window of
  the last ``window`` samples (:class:`plastix.bridges.ib_training.IBTrainer`).
- ``backprop``: the same network trained end to end, minibatches of ``window`` samples.
- ``hsic-layerwise``: each hidden layer minimises its exact HSIC objective by autograd over
  the same sliding window (Ma et al. 2020).
- ``phsic``: Pogodin & Latham (2020) pHSIC layer-local objectives, minibatches of ``window``.
- ``readout-only``: control; hidden layers frozen at initialisation, readout by cross-entropy.
- ``ib-bsweep``: ``ib-rate`` once per window size B (working-memory capacity).

Stored: metrics per ``epoch`` (``train_accuracy``, ``test_accuracy``, ``train_loss``,
``test_loss``, ``epoch_s``, ``step_ms``; HSIC methods also ``hsic_x_layer<l>`` and
``hsic_y_layer<l>`` on 256 test samples), final weights (``weights/<parameter name>``),
summary ``test_accuracy``, ``train_accuracy``, ``samples_per_s``, ``step_ms``, ``steps``.
``ib-bsweep`` logs one row per ``window`` and stores the per-epoch curves under
``arrays/test_accuracy_curves`` and ``arrays/train_accuracy_curves`` (rows: windows).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from plastix.bridges.ib_training import (
    IBRule,
    PHSICRule,
    evaluate,
    layer_hsic,
    make_trainer,
)
from plastix.bridges.rate_networks import LeakyIntegration, LeakyRateMLP, RateCNN, RateMLP
from plastix.sims.experiments import RunContext, experiment

_POS = {"min": 0.0, "min_exclusive": True}
HSIC_PROBE_SAMPLES = 256

Dataset = Literal["xor", "linear", "digits", "mnist1d", "fashion-mnist"]
Model = Literal["mlp", "cnn", "leaky-mlp"]


@dataclass
class RateConfig:
    """Keys shared by every rate-network experiment."""

    dataset: Dataset = "digits"
    model: Model = field(
        default="mlp",
        metadata={
            "help": "mlp: Dense-ReLU-LayerNorm; cnn: conv3x3-ReLU-pool-LayerNorm; "
            "leaky-mlp: mlp with leaky-integrator units"
        },
    )
    hidden: tuple[int, ...] = field(
        default=(128, 64), metadata={"min": 1, "help": "hidden widths (mlp) or channels (cnn)"}
    )
    epochs: int = field(default=5, metadata={"min": 1, "help": "training epochs"})
    window: int = field(
        default=8, metadata={"min": 2, "help": "B: IB working memory / minibatch size"}
    )
    lr: float = field(default=1e-4, metadata={**_POS, "help": "AdamW learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"min": 0.0, "help": "AdamW decay"})
    n_train: int | None = field(
        default=None, metadata={"min": 2, "help": "training samples (None: all)"}
    )
    n_test: int | None = field(
        default=None, metadata={"min": 1, "help": "test samples (None: all)"}
    )
    tau_ms: float = field(default=5.0, metadata={**_POS, "help": "leaky-mlp time constant"})
    dt_ms: float = field(default=1.0, metadata={**_POS, "help": "leaky-mlp Euler step"})
    steps: int = field(default=20, metadata={"min": 2, "help": "leaky-mlp steps per sample"})
    threads: int | None = field(
        default=1,
        metadata={
            "min": 1,
            "help": "torch CPU threads during the run (None: torch default); "
            "1 is fastest for these small per-sample steps",
        },
    )

    def validate(self) -> None:
        if self.model == "cnn" and self.dataset not in ("digits", "fashion-mnist"):
            raise ValueError(
                f"model: 'cnn' needs an image dataset (digits, fashion-mnist), not "
                f"{self.dataset!r}; use model='mlp'"
            )
        if self.model == "leaky-mlp" and self.dt_ms > self.tau_ms:
            raise ValueError(f"dt_ms: {self.dt_ms} exceeds tau_ms = {self.tau_ms}; use dt <= tau")

    def check_data(self, data) -> None:
        """A window of more samples than the training set never fills."""
        check_window("window", self.window, len(data.x_train), self.dataset)


@dataclass
class IBConfig(RateConfig):
    """Keys of the HSIC-based rules (defaults: MNIST config of the reference code)."""

    gamma: float = field(default=2.0, metadata={"help": "L = HSIC(X,Z) - gamma HSIC(Y,Z)"})
    sigmas: tuple[float, ...] = field(
        default=(0.5, 0.1, 1.0), metadata={**_POS, "help": "kernel widths (x, y, z), x sqrt(dim)"}
    )
    xi_method: Literal["exact", "row-centred", "diagonal"] = field(
        default="exact", metadata={"help": "exact dL/dz_B or a published approximation"}
    )
    xi_site: Literal["norm", "relu"] = field(
        default="norm", metadata={"help": "z measured after LayerNorm (norm) or after ReLU"}
    )

    def validate(self) -> None:
        super().validate()
        if len(self.sigmas) != 3:
            raise ValueError(
                f"sigmas: expected three widths (x, y, z), got {list(self.sigmas)}; "
                "e.g. sigmas=0.5,0.1,1.0"
            )
        if self.model == "cnn" and self.xi_site != "relu":
            raise ValueError("xi_site: the cnn supports only 'relu'; set xi_site=relu")

    def rule(self, window: int | None = None) -> IBRule:
        return IBRule(
            gamma=self.gamma,
            sigmas=tuple(self.sigmas),
            window=window or self.window,
            xi_method=self.xi_method,
            xi_site=self.xi_site,
        )


@dataclass
class BackpropConfig(RateConfig):
    lr: float = field(default=1e-3, metadata={**_POS, "help": "AdamW learning rate"})


@dataclass
class PHSICConfig(RateConfig):
    lr: float = field(default=1e-3, metadata={**_POS, "help": "AdamW learning rate"})
    gamma: float = field(default=2.0, metadata={"help": "pHSIC(Z,Z) - gamma pHSIC(Z,Y)"})
    sigma_z: float = field(
        default=5.0, metadata={**_POS, "help": "Gaussian width on Z (not scaled by dim)"}
    )

    def validate(self) -> None:
        super().validate()
        if self.model == "leaky-mlp":
            raise ValueError("model: phsic supports 'mlp' and 'cnn'; set model=mlp")


@dataclass
class LayerwiseHSICConfig(IBConfig):
    def validate(self) -> None:
        super().validate()
        if self.model == "leaky-mlp":
            raise ValueError("model: hsic-layerwise supports 'mlp' and 'cnn'; set model=mlp")


@dataclass
class BSweepConfig(IBConfig):
    windows: tuple[int, ...] = field(
        default=(2, 4, 8, 16, 32), metadata={"min": 2, "help": "window sizes B to sweep"}
    )

    def check_data(self, data) -> None:
        check_window("windows", max(self.windows), len(data.x_train), self.dataset)


def check_window(key: str, window: int, n_train: int, dataset: str) -> None:
    """Refuse a window ``B`` longer than the ``n_train`` training samples of ``dataset``."""
    if window > n_train:
        raise ValueError(
            f"{key}: a window of {window} samples is longer than the {n_train} training samples "
            f"of {dataset!r}; lower {key} or raise n_train"
        )


def _load(cfg: RateConfig, ctx: RunContext):
    ds = ctx.dataset(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test)
    device = torch.device(ctx.device)

    def tensor(a, dtype):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)

    x, xt = tensor(ds.x_train, torch.float32), tensor(ds.x_test, torch.float32)
    y, yt = tensor(ds.y_train, torch.int64), tensor(ds.y_test, torch.int64)
    if cfg.model != "cnn":
        x, xt = x.flatten(1), xt.flatten(1)
    return ds, x, y, xt, yt


def _build_net(cfg: RateConfig, sample_shape: tuple[int, ...], n_classes: int, seed: int):
    """The network of ``cfg.model``, initialised from ``seed`` without touching the global
    torch RNG of the caller."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.model == "cnn":
            return RateCNN(sample_shape, cfg.hidden, n_classes)
        n_in = math.prod(sample_shape)
        if cfg.model == "leaky-mlp":
            integration = LeakyIntegration(cfg.tau_ms * 1e-3, cfg.dt_ms * 1e-3, cfg.steps)
            return LeakyRateMLP(n_in, cfg.hidden, n_classes, integration=integration)
        return RateMLP(n_in, cfg.hidden, n_classes)


def _trainer(method: str, cfg: RateConfig, net, window: int):
    kwargs = {"window": window, "lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if method in ("ib", "hsic"):
        kwargs["ib_rule"] = cfg.rule(window)  # type: ignore[attr-defined]
    if method == "phsic":
        kwargs["phsic_rule"] = PHSICRule(gamma=cfg.gamma, sigma_z=cfg.sigma_z)  # type: ignore
    return make_trainer(method, net, **kwargs)


def _train(
    method: str,
    cfg: RateConfig,
    ctx: RunContext,
    data,
    window: int,
    *,
    log: bool = True,
    state: dict | None = None,
):
    """Train one network; log one row per epoch when ``log``. Returns the network, the
    per-epoch (train, test) accuracies and the training throughput figures."""
    ds, x, y, xt, yt = data
    net = _build_net(cfg, ds.sample_shape, ds.n_classes, ctx.seed).to(ctx.device)
    trainer = _trainer(method, cfg, net, window)
    generator = torch.Generator().manual_seed(ctx.seed)
    curves: list[tuple[float, float]] = []
    seconds = steps = samples = 0.0
    start_epoch = 0
    if state is not None:
        net.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        curves = [tuple(c) for c in state["curves"]]
        seconds, steps, samples = state["seconds"], state["steps"], state["samples"]
        start_epoch = state["epoch"] + 1
    probe = (xt[:HSIC_PROBE_SAMPLES], yt[:HSIC_PROBE_SAMPLES])
    for epoch in ctx.progress(range(start_epoch, cfg.epochs), desc=f"{method} B={window}"):
        stats = trainer.train_epoch(x, y, generator)
        seconds += stats.seconds
        steps += stats.steps
        samples += stats.samples
        train_acc, train_loss = evaluate(net, x, y)
        test_acc, test_loss = evaluate(net, xt, yt)
        curves.append((train_acc, test_acc))
        if log:
            row = {
                "epoch": epoch,
                "train_accuracy": train_acc,
                "test_accuracy": test_acc,
                "train_loss": train_loss,
                "test_loss": test_loss,
                "epoch_s": stats.seconds,
                "step_ms": 1e3 * stats.seconds_per_step,
            }
            if method in ("ib", "hsic") and probe[0].shape[0] >= 2:
                for layer, (hx, hy) in enumerate(layer_hsic(net, *probe, trainer.rule)):
                    row[f"hsic_x_layer{layer}"] = hx
                    row[f"hsic_y_layer{layer}"] = hy
            ctx.log(**row)
            ctx.checkpoint(
                {
                    "epoch": epoch,
                    "model": net.state_dict(),
                    "optimizer": trainer.optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "curves": curves,
                    "seconds": seconds,
                    "steps": steps,
                    "samples": samples,
                }
            )
    throughput = {
        "samples_per_s": samples / max(seconds, 1e-12),
        "step_ms": 1e3 * seconds / max(steps, 1),
        "steps": int(steps),
    }
    return net, curves, throughput


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """Run with ``threads`` torch CPU threads, restoring the previous setting afterwards."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _run_single(method: str, cfg: RateConfig, ctx: RunContext) -> None:
    with _torch_threads(cfg.threads):
        _run_single_inner(method, cfg, ctx)


def _run_single_inner(method: str, cfg: RateConfig, ctx: RunContext) -> None:
    data = _load(cfg, ctx)
    net, curves, throughput = _train(method, cfg, ctx, data, cfg.window, state=ctx.resume_state())
    train_acc, test_acc = curves[-1]
    ctx.summary(test_accuracy=test_acc, train_accuracy=train_acc, **throughput)
    for name, param in net.state_dict().items():
        ctx.save_weights(name, param.detach().cpu().numpy())


@experiment("ib-rate", IBConfig, description="IB three-factor Hebbian rule on rate networks")
def run_ib_rate(cfg: IBConfig, ctx: RunContext) -> None:
    _run_single("ib", cfg, ctx)


@experiment("backprop", BackpropConfig, description="backprop baseline, same rate networks")
def run_backprop(cfg: BackpropConfig, ctx: RunContext) -> None:
    _run_single("backprop", cfg, ctx)


@experiment(
    "readout-only",
    BackpropConfig,
    description="control: hidden layers frozen at initialisation, readout by cross-entropy",
)
def run_readout_only(cfg: BackpropConfig, ctx: RunContext) -> None:
    _run_single("readout", cfg, ctx)


@experiment(
    "hsic-layerwise",
    LayerwiseHSICConfig,
    description="layer-wise exact HSIC objectives by autograd (Ma et al. 2020)",
)
def run_hsic_layerwise(cfg: LayerwiseHSICConfig, ctx: RunContext) -> None:
    _run_single("hsic", cfg, ctx)


@experiment("phsic", PHSICConfig, description="pHSIC layer-local baseline (Pogodin & Latham 2020)")
def run_phsic(cfg: PHSICConfig, ctx: RunContext) -> None:
    _run_single("phsic", cfg, ctx)


@experiment("ib-bsweep", BSweepConfig, description="IB rule accuracy against window size B")
def run_ib_bsweep(cfg: BSweepConfig, ctx: RunContext) -> None:
    with _torch_threads(cfg.threads):
        _run_bsweep(cfg, ctx)


def _run_bsweep(cfg: BSweepConfig, ctx: RunContext) -> None:
    data = _load(cfg, ctx)
    state = ctx.resume_state() or {"done": []}
    done = list(state["done"])
    for window in cfg.windows[len(done) :]:
        _, curves, throughput = _train("ib", cfg, ctx, data, window, log=False)
        done.append({"window": window, "curves": curves, **throughput})
        ctx.log(
            window=window,
            final_train_accuracy=curves[-1][0],
            final_test_accuracy=curves[-1][1],
            sweep_step_ms=throughput["step_ms"],
        )
        ctx.checkpoint({"done": done})
    curves = np.asarray([d["curves"] for d in done])  # (windows, epochs, 2)
    ctx.save_array("windows", np.asarray([d["window"] for d in done]))
    ctx.save_array("train_accuracy_curves", curves[:, :, 0])
    ctx.save_array("test_accuracy_curves", curves[:, :, 1])
    best = int(np.argmax(curves[:, -1, 1]))
    ctx.summary(
        best_window=int(done[best]["window"]),
        test_accuracy=float(curves[best, -1, 1]),
        train_accuracy=float(curves[best, -1, 0]),
    )
