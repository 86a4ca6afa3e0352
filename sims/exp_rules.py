"""Experiment ``rule-demo``: any registered plasticity rule, chosen by name, on one LIF population.

``n_pre`` Poisson inputs (the first half at ``rate_high``, the rest at ``rate_low``) drive
``n_post`` leaky integrate-and-fire neurons through synapses that carry the chosen rule's
Brian2 form. The mean weight of each input half is recorded over time, so rules can be compared
side by side (e.g. Hebbian rules separate the two halves, STDP with dominant depression does
not). Three-factor rules get their modulator from a Poisson "reward" source. The result holds
the final weights ``final`` as (n_post, n_pre), and ``w_high_final`` / ``w_low_final`` are their
means over each input half at the end of the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plastix.sims.experiments import RunContext, experiment

DEMO_NEURON_VARIABLES = frozenset({"v", "lastspike", "not_refractory"})


@dataclass
class RuleDemoConfig:
    rule: str = field(default="stdp", metadata={"help": "rule name (see `plastix list`)"})
    rule_params: tuple[str, ...] = field(
        default=(),
        metadata={
            "allow_empty": True,
            "help": "rule parameters as name=value, e.g. tau_plus=10*ms",
        },
    )
    n_pre: int = field(default=100, metadata={"min": 2})
    n_post: int = field(default=10, metadata={"min": 1})
    rate_high: float = field(default=30.0, metadata={"min": 0.0, "help": "Hz, first half"})
    rate_low: float = field(default=10.0, metadata={"min": 0.0, "help": "Hz, second half"})
    duration: float = field(
        default=5.0, metadata={"min": 0.0, "min_exclusive": True, "help": "simulated seconds"}
    )
    w_init: float = 0.5
    w_scale_mV: float = field(default=1.0, metadata={"help": "PSP jump per unit weight (mV)"})
    modulator_rate: float = field(
        default=5.0, metadata={"min": 0.0, "help": "Hz, three-factor rules only"}
    )
    record_dt: float = field(default=0.1, metadata={"min": 0.0, "min_exclusive": True})

    def validate(self) -> None:
        from plastix.plasticity.rules import list_rules

        rules = list_rules()
        if self.rule not in rules:
            raise ValueError(
                f"rule: {self.rule!r} is not registered; available: {', '.join(sorted(rules))}"
            )
        missing = self.build_rule().brian2_form().postsynaptic_variables() - DEMO_NEURON_VARIABLES
        if missing:
            raise ValueError(
                f"rule: {self.rule!r} reads postsynaptic variables "
                f"{', '.join(sorted(missing))} that rule-demo's LIF neurons do not have (they "
                f"define {', '.join(sorted(DEMO_NEURON_VARIABLES))}); run it in an experiment "
                "whose neurons provide them (for the IB rule: ib-spiking)"
            )

    def build_rule(self):
        from plastix.plasticity.rules import list_rules

        values = {}
        for item in self.rule_params:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"rule_params: {item!r} is not name=value")
            values[key.strip()] = value.strip()
        try:
            return list_rules()[self.rule].create_from_config(values)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"rule_params: {exc}") from None


@experiment(
    "rule-demo",
    RuleDemoConfig,
    devices=("runtime",),
    description="any registered plasticity rule by name on Poisson-driven LIF neurons",
)
def run_rule_demo(cfg: RuleDemoConfig, ctx: RunContext) -> None:
    import brian2 as b2

    rule = cfg.build_rule()
    form = rule.brian2_form()
    b2.start_scope()
    b2.prefs.codegen.target = "numpy"
    b2.seed(ctx.seed)
    half = cfg.n_pre // 2
    rates = np.where(np.arange(cfg.n_pre) < half, cfg.rate_high, cfg.rate_low) * b2.Hz
    pre = b2.PoissonGroup(cfg.n_pre, rates=rates)
    post = b2.NeuronGroup(
        cfg.n_post,
        "dv/dt = (v_rest - v) / tau_m : volt (unless refractory)",
        threshold="v > v_th",
        reset="v = v_reset",
        refractory=2 * b2.ms,
        method="exact",
        namespace={
            "v_rest": -70 * b2.mV,
            "tau_m": 20 * b2.ms,
            "v_th": -54 * b2.mV,
            "v_reset": -60 * b2.mV,
        },
    )
    post.v = -70 * b2.mV
    kwargs = form.synapses_kwargs(on_pre_effect="v_post += w * w_scale")
    kwargs["namespace"]["w_scale"] = cfg.w_scale_mV * b2.mV
    syn = b2.Synapses(pre, post, **kwargs)
    syn.connect()
    syn.w = cfg.w_init
    objects = [pre, post, syn]
    if form.modulator is not None:
        reward = b2.PoissonGroup(1, rates=cfg.modulator_rate * b2.Hz)
        modulation = b2.Synapses(reward, syn, on_pre=f"{form.modulator}_post += 1")
        modulation.connect()
        objects += [reward, modulation]
    weights = b2.StateMonitor(syn, "w", record=True, dt=cfg.record_dt * b2.second)
    spikes = b2.SpikeMonitor(post)
    net = b2.Network(*objects, weights, spikes)
    net.run(cfg.duration * b2.second, namespace={})

    w = np.asarray(weights.w)  # (n_synapses, n_records)
    high = np.asarray(syn.i[:]) < half
    for k, t in enumerate(np.asarray(weights.t)):
        ctx.log(time=t, w_high=w[high, k].mean(), w_low=w[~high, k].mean())
    final = np.zeros((cfg.n_post, cfg.n_pre))  # the nn.Linear layout (post, pre) of all rules
    final[np.asarray(syn.j[:]), np.asarray(syn.i[:])] = np.asarray(syn.w[:])
    ctx.save_weights("final", final)
    ctx.save_spikes("post", np.asarray(spikes.i), np.asarray(spikes.t))
    ctx.summary(
        w_high_final=float(final[:, :half].mean()),
        w_low_final=float(final[:, half:].mean()),
        post_rate_hz=spikes.num_spikes / (cfg.n_post * cfg.duration),
    )
