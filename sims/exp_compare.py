"""Experiment ``compare``: one data set and architecture, four ways of learning it.

Arms (``arms``):

- ``spiking-ib``: the IB three-factor rule in the spiking Brian2 circuit
  (:class:`plastix.circuits.ib_network.ExactXiTrainer`): Poisson input -> LIF hidden layers ->
  rate readout trained by its delta rule.
- ``rate-ib``: the rate-based IB rule (:class:`plastix.bridges.ib_training.IBTrainer`) on a
  ``RateMLP`` with the same layer sizes.
- ``snntorch-bptt``: surrogate-gradient BPTT in snntorch on *the same spiking circuit*: the
  Brian2 circuit converted by :func:`plastix.circuits.feedforward.from_ib_circuit` and
  :func:`plastix.bridges.snntorch_bridge.to_snntorch` (hidden CubaLIF = snn.Synaptic, the
  rate readout as an LI layer, the logit bias outside the dynamics; no hidden biases, as in
  the circuit), from the same initial weights, with Bernoulli inputs of the same rate.
- ``backprop``: end-to-end cross-entropy on the ``RateMLP``.

``optimizer="nte"`` trains the torch arms with the neural tangent ensemble
(:class:`plastix.bridges.tangent_ensemble.NeuralTangentEnsemble`) instead of AdamW / Adam;
``pruning`` trains them on the subsets a :class:`plastix.bridges.pruning.PruningSampler`
selects (the IB arm reports per-sample losses from an extra forward pass; InfoBatch's loss
rescaling does not apply to it). The spiking arm always trains on every sample.

After training, weights cross simulators: the spiking arm's Brian2-learned weights are run in
snntorch, and the snntorch-learned weights in the Brian2 circuit; the accuracy differences are
reported. A third check runs the snntorch weights in the Brian2 form of
:mod:`plastix.circuits.feedforward` on the very input raster snntorch saw
(``same_raster_agreement``: fraction of equal predictions).

Stored: metrics on axis ``step``, one row per arm and evaluation (after every epoch and
before training), named ``<arm>_epoch``, ``<arm>_samples_seen``, ``<arm>_wall_s`` (training
time only; the spiking arm's first epoch includes a standalone build) and
``<arm>_test_accuracy``, with ``<arm>`` one of ``spiking_ib``, ``rate_ib``, ``snntorch_bptt``,
``backprop``; final weights ``weights/<arm>_w<k>`` (hidden layer k) and
``weights/<arm>_readout``; summary ``<arm>_test_accuracy``, ``<arm>_train_wall_s``,
``<arm>_samples_seen``, ``<arm>_samples_per_s`` and the transfer figures. The table is
printed; the figure is ``compare`` in :mod:`plastix.sims.plots_compare`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from brian2 import Hz, ms

from plastix.bridges.ib_training import AdamWSettings, IBRule, IBTrainer, evaluate
from plastix.bridges.pruning import UCB, EpsilonGreedy, InfoBatch, PruningSampler, UniformDynamic
from plastix.bridges.rate_networks import RateMLP
from plastix.bridges.snntorch_bridge import (
    BPTTConfig,
    bernoulli_raster,
    evaluate_snntorch,
    to_snntorch,
    train_bptt,
)
from plastix.bridges.tangent_ensemble import NeuralTangentEnsemble
from plastix.circuits.feedforward import from_ib_circuit, run_raster
from plastix.circuits.ib_network import (
    CircuitWeights,
    ExactXiTrainer,
    IBCircuitSpec,
    XiSettings,
    init_weights,
)
from plastix.circuits.layers import SampleTiming
from plastix.circuits.neurons import LIFParams
from plastix.plasticity.ib_rule import IBThreeFactor
from plastix.sims.exp_ib import check_window
from plastix.sims.experiments import BRIAN2_DEVICES, RunContext, experiment

ArmName = Literal["spiking-ib", "rate-ib", "snntorch-bptt", "backprop"]
ARMS: tuple[str, ...] = ("spiking-ib", "rate-ib", "snntorch-bptt", "backprop")
PREFIX = {arm: arm.replace("-", "_") for arm in ARMS}
_POS = {"min": 0.0, "min_exclusive": True}


@dataclass
class CompareConfig:
    dataset: Literal["digits", "mnist1d", "fashion-mnist", "mnist"] = "digits"
    n_train: int | None = field(default=500, metadata={"min": 1, "help": "training samples"})
    n_test: int | None = field(default=200, metadata={"min": 1, "help": "test samples"})
    hidden: tuple[int, ...] = field(default=(64,), metadata={"min": 1, "help": "hidden sizes"})
    epochs: int = field(default=3, metadata={"min": 1})
    arms: tuple[ArmName, ...] = ARMS
    # the spiking circuit, shared by spiking-ib and snntorch-bptt
    presentation_ms: float = field(default=50.0, metadata={**_POS, "help": "time per sample"})
    settle_ms: float = field(default=10.0, metadata={"min": 0.0, "help": "unread onset"})
    dt_ms: float = field(default=0.5, metadata={**_POS, "help": "time step (both simulators)"})
    input_rate_hz: float = field(default=100.0, metadata={**_POS, "help": "white-pixel rate"})
    t_ref_ms: float = field(
        default=0.0,
        metadata={
            "min": 0.0,
            "help": "hidden refractory period; snntorch has none (> 0 "
            "is dropped there, so the arms then differ)",
        },
    )
    w_init_mean: float = field(default=2.0, metadata={"help": "mean initial hidden weight"})
    w_init_spread: float = field(default=2.0, metadata={"min": 0.0})
    # the IB rule (spiking and rate)
    window: int = field(default=8, metadata={"min": 2, "help": "working memory B"})
    gamma: float = 2.0
    sigmas: tuple[float, ...] = field(default=(0.5, 0.1, 1.0), metadata=_POS)
    spiking_eta: float = field(default=300.0, metadata={"min": 0.0, "help": "IB rate (1/s)"})
    spiking_readout_eta: float = field(default=1.0, metadata={"min": 0.0})
    rate_ib_lr: float = field(default=1e-3, metadata=_POS)
    # torch arms
    backprop_lr: float = field(default=1e-3, metadata=_POS)
    backprop_batch: int = field(default=8, metadata={"min": 1})
    bptt_lr: float = field(default=2e-3, metadata=_POS)
    bptt_batch: int = field(default=32, metadata={"min": 1})
    optimizer: Literal["adamw", "nte"] = field(
        default="adamw", metadata={"help": "torch arms: AdamW/Adam or the NTE optimizer"}
    )
    nte_lr: float = field(default=0.01, metadata=_POS)
    nte_max_delta: float | None = field(default=None, metadata=_POS)
    pruning: Literal["none", "uniform", "epsilon-greedy", "ucb", "infobatch"] = "none"
    pruning_rate: float = field(default=0.3, metadata={"min": 0.0, "max": 0.95})

    def validate(self) -> None:
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms: {self.arms!r} repeats an arm")
        if len(self.sigmas) != 3:
            raise ValueError(f"sigmas: {self.sigmas!r}; give (sigma_x, sigma_y, sigma_z)")
        if self.settle_ms >= self.presentation_ms:
            raise ValueError(
                f"settle_ms: {self.settle_ms} >= presentation_ms {self.presentation_ms}; the "
                "read-out window would be empty"
            )
        for name in ("presentation_ms", "settle_ms", "t_ref_ms"):
            steps = getattr(self, name) / self.dt_ms
            if abs(steps - round(steps)) > 1e-9:
                raise ValueError(
                    f"{name}: {getattr(self, name)} is not a multiple of dt_ms {self.dt_ms}"
                )
        if self.input_rate_hz * self.dt_ms * 1e-3 > 1.0:
            raise ValueError(
                f"input_rate_hz: {self.input_rate_hz} Hz fires more than once per step of "
                f"{self.dt_ms} ms; lower it or dt_ms"
            )

    def check_data(self, data) -> None:
        """A window of more samples than the training set never fills."""
        check_window("window", self.window, len(data.x_train), self.dataset)


def circuit_spec(cfg: CompareConfig, n_input: int, n_classes: int) -> IBCircuitSpec:
    timing = SampleTiming(
        presentation=cfg.presentation_ms * ms,
        gap=0 * ms,
        settle=cfg.settle_ms * ms,
        dt=cfg.dt_ms * ms,
    )
    return IBCircuitSpec(
        n_input=n_input,
        hidden=tuple(cfg.hidden),
        n_classes=n_classes,
        lif=LIFParams(t_ref=cfg.t_ref_ms * ms),
        timing=timing,
        rule=IBThreeFactor(eta=cfg.spiking_eta * Hz),
        input_rate=cfg.input_rate_hz * Hz,
        readout_eta=cfg.spiking_readout_eta * Hz,
    )


@dataclass
class ArmLog:
    """Learning curve of one arm: (epoch, samples seen, training seconds, test accuracy)."""

    name: str
    points: list[tuple[int, int, float, float]] = field(default_factory=list)

    @property
    def final(self) -> tuple[int, int, float, float]:
        return self.points[-1]


class _Logger:
    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.row = 0
        self.arms: dict[str, ArmLog] = {}

    def point(self, arm: str, epoch: int, samples: int, wall: float, accuracy: float) -> None:
        p = PREFIX[arm]
        self.ctx.log(
            step=self.row,
            **{
                f"{p}_epoch": epoch,
                f"{p}_samples_seen": samples,
                f"{p}_wall_s": wall,
                f"{p}_test_accuracy": accuracy,
            },
        )
        self.row += 1
        self.arms.setdefault(arm, ArmLog(arm)).points.append((epoch, samples, wall, accuracy))


def _sampler(cfg: CompareConfig, n: int, seed: int) -> PruningSampler | None:
    strategies = {
        "uniform": UniformDynamic,
        "epsilon-greedy": EpsilonGreedy,
        "ucb": UCB,
        "infobatch": InfoBatch,
    }
    if cfg.pruning == "none":
        return None
    return PruningSampler(
        n, strategies[cfg.pruning](), rate=cfg.pruning_rate, epochs=cfg.epochs, seed=seed
    )


def _epoch_order(sampler: PruningSampler | None, n: int, gen: torch.Generator) -> torch.Tensor:
    if sampler is None:
        return torch.randperm(n, generator=gen)
    return torch.tensor(list(iter(sampler)), dtype=torch.int64)


def _nte(cfg: CompareConfig, params, seed: int) -> NeuralTangentEnsemble:
    return NeuralTangentEnsemble(
        [p for p in params if p.requires_grad],
        lr=cfg.nte_lr,
        max_delta=cfg.nte_max_delta,
        seed=seed,
    )


def _rate_mlp(cfg: CompareConfig, n_in: int, n_out: int, seed: int) -> RateMLP:
    """The rate network (same sizes as the circuit), initialised from ``seed`` without
    touching torch's global generator (``nn.Linear`` draws from it)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return RateMLP(n_in, cfg.hidden, n_out)


# -- arms ------------------------------------------------------------------------------------


def _run_spiking_ib(cfg, ctx, log, spec, w0, data, backend) -> CircuitWeights:
    x_train, y_train, x_test, y_test = data
    xi = XiSettings(cfg.gamma, tuple(cfg.sigmas), cfg.window, "exact", "norm")
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    wall = 0.0
    with ExactXiTrainer(
        spec,
        w0,
        xi,
        backend=backend,
        directory=ctx.workdir / "build",
        project_cache=ctx.build_cache,
        seed=ctx.seed,
        raster_samples=0,
    ) as trainer:
        log.point("spiking-ib", 0, 0, 0.0, trainer.evaluate(x_test, y_test).accuracy)
        for epoch in ctx.progress(range(cfg.epochs), desc="spiking-ib"):
            order = ctx.rng.permutation(len(x_train))
            result = trainer.train_epoch(x_train[order], y_train[order])
            wall += result.wall_s
            accuracy = trainer.evaluate(x_test, y_test).accuracy
            log.point("spiking-ib", epoch + 1, (epoch + 1) * len(order), wall, accuracy)
        return trainer.weights.copy()


def _run_rate_ib(cfg, ctx, log, data, gen) -> RateMLP:
    x_train, y_train, x_test, y_test = data
    net = _rate_mlp(cfg, x_train.shape[1], int(y_train.max()) + 1, ctx.seed)
    rule = IBRule(gamma=cfg.gamma, sigmas=tuple(cfg.sigmas), window=cfg.window)
    trainer = IBTrainer(net, rule, AdamWSettings(lr=cfg.rate_ib_lr))
    if cfg.optimizer == "nte":
        trainer.optimizer = _nte(cfg, trainer.params, ctx.seed)
    sampler = _sampler(cfg, len(x_train), ctx.seed)
    log.point("rate-ib", 0, 0, 0.0, evaluate(net, x_test, y_test)[0])
    wall, seen = 0.0, 0
    for epoch in ctx.progress(range(cfg.epochs), desc="rate-ib"):
        order = _epoch_order(sampler, len(x_train), gen)
        if len(order) < cfg.window:
            raise ValueError(
                f"pruning_rate: keeps {len(order)} samples in an epoch, fewer than the IB "
                f"window {cfg.window}; lower pruning_rate or raise n_train"
            )
        stats = trainer.train_epoch(x_train[order], y_train[order], generator=gen)
        wall += stats.seconds
        if sampler is not None:
            with torch.no_grad():
                losses = F.cross_entropy(net(x_train[order]), y_train[order], reduction="none")
            sampler.update(order, losses)
        seen += len(order)
        log.point("rate-ib", epoch + 1, seen, wall, evaluate(net, x_test, y_test)[0])
    return net


def _run_backprop(cfg, ctx, log, data, gen) -> RateMLP:
    x_train, y_train, x_test, y_test = data
    net = _rate_mlp(cfg, x_train.shape[1], int(y_train.max()) + 1, ctx.seed)
    if cfg.optimizer == "nte":
        optimizer = _nte(cfg, net.parameters(), ctx.seed)
    else:
        optimizer = AdamWSettings(lr=cfg.backprop_lr).build(net.parameters())
    sampler = _sampler(cfg, len(x_train), ctx.seed)
    log.point("backprop", 0, 0, 0.0, evaluate(net, x_test, y_test)[0])
    wall, seen = 0.0, 0
    for epoch in ctx.progress(range(cfg.epochs), desc="backprop"):
        order = _epoch_order(sampler, len(x_train), gen)
        start = time.perf_counter()
        for begin in range(0, len(order), cfg.backprop_batch):
            idx = order[begin : begin + cfg.backprop_batch]
            per_sample = F.cross_entropy(net(x_train[idx]), y_train[idx], reduction="none")
            weights = sampler.update(idx, per_sample.detach()) if sampler is not None else None
            loss = per_sample.mean() if weights is None else (per_sample * weights.float()).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if isinstance(optimizer, NeuralTangentEnsemble):
                optimizer.step(batch_size=len(idx))
            else:
                optimizer.step()
        wall += time.perf_counter() - start
        seen += len(order)
        log.point("backprop", epoch + 1, seen, wall, evaluate(net, x_test, y_test)[0])
    return net


def _run_bptt(cfg, ctx, log, spec, w0, data, gen, bptt: BPTTConfig):
    x_train, y_train, x_test, y_test = data
    ff, bias = from_ib_circuit(spec, w0)
    net = to_snntorch(ff, spec.timing.dt, drop_refractory=cfg.t_ref_ms > 0)
    for linear in net.linears:  # the circuit has no biases inside its dynamics
        linear.bias.requires_grad_(False)
    offset = torch.nn.Parameter(torch.as_tensor(bias, dtype=torch.float32))
    params = [p for p in net.parameters() if p.requires_grad] + [offset]
    if cfg.optimizer == "nte":
        optimizer = _nte(cfg, params, ctx.seed)
    else:
        optimizer = torch.optim.Adam(params, lr=cfg.bptt_lr)
    sampler = _sampler(cfg, len(x_train), ctx.seed)
    eval_gen = torch.Generator().manual_seed(ctx.seed + 1)

    def test_accuracy() -> float:
        return evaluate_snntorch(net, x_test, y_test, bptt, generator=eval_gen, offset=offset)[0]

    log.point("snntorch-bptt", 0, 0, 0.0, test_accuracy())
    wall, seen = 0.0, 0
    for epoch in ctx.progress(range(cfg.epochs), desc="snntorch-bptt"):
        order = _epoch_order(sampler, len(x_train), gen)
        stats = train_bptt(
            net,
            x_train,
            y_train,
            bptt,
            generator=gen,
            optimizer=optimizer,
            order=order,
            offset=offset,
            loss_weights=sampler.update if sampler is not None else None,
        )
        wall += stats["seconds"]
        seen += len(order)
        log.point("snntorch-bptt", epoch + 1, seen, wall, test_accuracy())
    return net, offset


# -- transfer between simulators ---------------------------------------------------------------


def _brian2_in_snntorch(cfg, spec, weights, data, bptt) -> float:
    """Accuracy of Brian2-learned circuit weights run in snntorch."""
    _, _, x_test, y_test = data
    ff, bias = from_ib_circuit(spec, weights)
    net = to_snntorch(ff, spec.timing.dt, drop_refractory=cfg.t_ref_ms > 0)
    gen = torch.Generator().manual_seed(7)
    offset = torch.as_tensor(bias, dtype=torch.float32)
    return evaluate_snntorch(net, x_test, y_test, bptt, generator=gen, offset=offset)[0]


def _snntorch_weights(net, offset) -> CircuitWeights:
    spec = net.to_spec()
    return CircuitWeights(
        [layer.weight for layer in spec.layers[:-1]],
        spec.layers[-1].weight,
        offset.detach().double().numpy(),
    )


def _snntorch_in_brian2(spec, weights: CircuitWeights, data, backend, ctx) -> float:
    """Accuracy of snntorch-learned weights in the Brian2 circuit (its own Poisson input)."""
    _, _, x_test, y_test = data
    xi = XiSettings(window=2)
    with ExactXiTrainer(
        spec,
        weights,
        xi,
        backend=backend,
        directory=ctx.workdir / "build_eval",
        project_cache=ctx.build_cache,
        seed=ctx.seed + 1,
        raster_samples=0,
    ) as trainer:
        return trainer.evaluate(x_test, y_test).accuracy


def _same_raster_agreement(net, offset, data, bptt, seed: int) -> tuple[float, float]:
    """Run snntorch and the Brian2 feed-forward form on one input raster; returns the
    Brian2 accuracy and the fraction of test samples both classify alike."""
    _, _, x_test, y_test = data
    gen = torch.Generator().manual_seed(seed)
    raster = bernoulli_raster(x_test, bptt.steps, bptt.p_max, gen)
    _, snn_logits = evaluate_snntorch(net, x_test, y_test, bptt, offset=offset, raster=raster)
    spec = net.to_spec()
    readout = spec.layers[-1].name
    n_layers = len(spec.layers)
    _, membranes = run_raster(
        spec,
        raster.numpy().astype(bool),
        net.dt * 1e3 * ms,
        record_membrane=(readout,),
        backend="numpy",
    )
    # Brian2 layer k lags snntorch by k + 1 steps (plastix.bridges.snntorch_bridge)
    v = membranes[readout][n_layers + bptt.settle : n_layers + bptt.steps]
    leak = spec.layers[-1].neuron.values(spec.layers[-1].n_out)["v_leak"]
    logits = (v - leak).mean(0) + offset.detach().double().numpy()
    brian_pred = logits.argmax(-1)
    accuracy = float(np.mean(brian_pred == y_test.numpy()))
    return accuracy, float(np.mean(brian_pred == snn_logits.argmax(-1).numpy()))


# -- the experiment ----------------------------------------------------------------------------


def bptt_config(cfg: CompareConfig, spec: IBCircuitSpec) -> BPTTConfig:
    """BPTT over the circuit's presentation: ``on_steps`` steps of dt, the readout from the
    settle step on, Bernoulli inputs of probability rate * dt per step."""
    timing = spec.timing
    return BPTTConfig(
        steps=timing.on_steps,
        settle=timing.settle_steps,
        p_max=float(spec.input_rate * timing.dt),
        lr=cfg.bptt_lr,
        batch=cfg.bptt_batch,
    )


def _save_arm_weights(ctx: RunContext, arm: str, hidden, readout) -> None:
    """Every arm's trained weights under one scheme: ``<arm>_w<k>`` for hidden layer k
    (outputs x inputs) and ``<arm>_readout``, as ib-spiking stores its circuit."""
    p = PREFIX[arm]
    for k, w in enumerate(hidden):
        ctx.save_weights(f"{p}_w{k}", w)
    ctx.save_weights(f"{p}_readout", readout)


def _table(log: _Logger, transfer: dict[str, float]) -> str:
    lines = [
        "| arm | test accuracy | training wall s | samples seen | samples/s |",
        "|---|---|---|---|---|",
    ]
    for arm, curve in log.arms.items():
        _, seen, wall, acc = curve.final
        rate = seen / wall if wall > 0 else float("nan")
        lines.append(f"| {arm} | {acc:.3f} | {wall:.1f} | {seen} | {rate:.1f} |")
    for key, value in transfer.items():
        lines.append(f"| {key} | {value:.3f} | | | |")
    return "\n".join(lines)


@experiment(
    "compare",
    CompareConfig,
    description="spiking IB (Brian2) vs rate IB vs snntorch BPTT vs backprop; weight transfer",
    devices=(*BRIAN2_DEVICES, "numpy", "cython"),
    default_device="auto",
)
def run_compare(cfg: CompareConfig, ctx: RunContext) -> None:
    from plastix.circuits.backend import resolve_backend

    backend = resolve_backend(ctx.device)
    ds = ctx.dataset(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test).flat()
    x_train_np, x_test_np = np.asarray(ds.x_train, float), np.asarray(ds.x_test, float)
    if min(x_train_np.min(), x_test_np.min()) < 0 or max(x_train_np.max(), x_test_np.max()) > 1:
        raise ValueError(
            f"dataset: {cfg.dataset!r} features leave [0, 1]; the spiking arms need pixel-like "
            "values as firing probabilities"
        )
    y_train_np, y_test_np = np.asarray(ds.y_train), np.asarray(ds.y_test)
    n_classes = len(ds.classes)
    spec = circuit_spec(cfg, x_train_np.shape[1], n_classes)
    w0 = init_weights(spec, ctx.rng, mean=cfg.w_init_mean, spread=cfg.w_init_spread)
    torch_data = (
        torch.as_tensor(x_train_np, dtype=torch.float32),
        torch.as_tensor(y_train_np, dtype=torch.int64),
        torch.as_tensor(x_test_np, dtype=torch.float32),
        torch.as_tensor(y_test_np, dtype=torch.int64),
    )
    np_data = (x_train_np, y_train_np, x_test_np, y_test_np)
    bptt = bptt_config(cfg, spec)
    log = _Logger(ctx)
    gen = torch.Generator().manual_seed(ctx.seed)
    transfer: dict[str, float] = {}
    spiking_weights = bptt_net = None
    if "spiking-ib" in cfg.arms:
        spiking_weights = _run_spiking_ib(cfg, ctx, log, spec, w0, np_data, backend)
        _save_arm_weights(ctx, "spiking-ib", spiking_weights.hidden, spiking_weights.readout)
    if "rate-ib" in cfg.arms:
        net = _run_rate_ib(cfg, ctx, log, torch_data, gen)
        _save_arm_weights(ctx, "rate-ib", [b.linear.weight for b in net.blocks], net.readout.weight)
    if "snntorch-bptt" in cfg.arms:
        bptt_net, offset = _run_bptt(cfg, ctx, log, spec, w0, torch_data, gen, bptt)
        *hidden, readout = (linear.weight for linear in bptt_net.linears)
        _save_arm_weights(ctx, "snntorch-bptt", hidden, readout)
    if "backprop" in cfg.arms:
        net = _run_backprop(cfg, ctx, log, torch_data, gen)
        hidden = [block.linear.weight for block in net.blocks]
        _save_arm_weights(ctx, "backprop", hidden, net.readout.weight)

    if spiking_weights is not None:
        acc = _brian2_in_snntorch(cfg, spec, spiking_weights, torch_data, bptt)
        transfer["spiking_ib_in_snntorch_accuracy"] = acc
        transfer["spiking_ib_transfer_difference"] = acc - log.arms["spiking-ib"].final[3]
    if bptt_net is not None:
        weights = _snntorch_weights(bptt_net, offset)
        acc = _snntorch_in_brian2(spec, weights, np_data, backend, ctx)
        transfer["snntorch_bptt_in_brian2_accuracy"] = acc
        transfer["snntorch_bptt_transfer_difference"] = acc - log.arms["snntorch-bptt"].final[3]
        acc, agreement = _same_raster_agreement(bptt_net, offset, torch_data, bptt, ctx.seed)
        transfer["snntorch_bptt_same_raster_brian2_accuracy"] = acc
        transfer["snntorch_bptt_same_raster_agreement"] = agreement

    summary: dict[str, float | str] = {"backend": backend}
    for arm, curve in log.arms.items():
        _, seen, wall, acc = curve.final
        p = PREFIX[arm]
        summary[f"{p}_test_accuracy"] = acc
        summary[f"{p}_train_wall_s"] = wall
        summary[f"{p}_samples_seen"] = seen
        summary[f"{p}_samples_per_s"] = seen / wall if wall > 0 else math.nan
    summary.update(transfer)
    ctx.summary(**summary)
    print(_table(log, transfer))
