"""An example plastix rule plugin: Hebbian learning with passive weight decay."""

from dataclasses import dataclass

from brian2 import Quantity, ms, second

from plastix.plasticity.rules import Brian2Form, Rule, param


@dataclass
class DecayingHebbian(Rule):
    """Hebbian learning with passive decay: dW/dt = eta * r_post * r_pre - W / tau_decay.

    Hebb (1949) with forgetting (Gerstner & Kistler 2002, sec. 10.2). Spike form: a post
    spike adds eta * a_pre, where the pre rate trace a_pre jumps by 1/tau_rate per spike.
    """

    eta: Quantity = param(1e-4 * second, "learning rate (per s per Hz^2)", unit=second)
    tau_decay: Quantity = param(10 * second, "weight decay time", min=0 * ms, min_exclusive=True)
    tau_rate: Quantity = param(100 * ms, "rate trace time", min=0 * ms, min_exclusive=True)

    def brian2_form(self) -> Brian2Form:
        return Brian2Form(
            model="""dw/dt = -w / tau_decay : 1 (clock-driven)
                     dpre_trace/dt = -pre_trace / tau_rate : Hz (event-driven)""",
            on_pre="pre_trace += 1 / tau_rate",
            on_post="w += eta * pre_trace",
            namespace={"eta": self.eta, "tau_decay": self.tau_decay, "tau_rate": self.tau_rate},
        )

    def rate_update(self, pre_rate, post_rate, weight, modulator=None):
        hebb = self.batch_outer(post_rate, pre_rate, modulator)
        return float(self.eta) * hebb - weight / float(self.tau_decay)
