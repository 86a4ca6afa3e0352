"""Experiments take a plasticity rule by name, including a third-party plugin's."""

from __future__ import annotations

import numpy as np
import pytest

from plastix.sims.config import ConfigError
from plastix.sims.experiments import run_experiment
from plastix.sims.results import read_result


def test_hebbian_rule_by_name_strengthens_the_more_active_inputs(tmp_path):
    out = run_experiment(
        "rule-demo",
        {"rule": "hebbian", "duration": 1.0, "n_post": 4},
        out=tmp_path / "h.h5",
        seed=1,
    )
    res = read_result(out)
    assert res.summary["w_high_final"] > res.summary["w_low_final"] > 0.5
    final = res.weights["final"]
    assert final.shape == (4, 100)  # (n_post, n_pre), as nn.Linear and the rules' rate forms
    assert final[:, :50].mean() == pytest.approx(res.summary["w_high_final"])
    assert final[:, :50].mean() > final[:, 50:].mean()
    assert len(res.metrics["time"]) == 10


def test_plugin_rule_is_usable_by_name(tmp_path):
    """The example plugin's rule runs by name with its own equations: without the Hebbian
    term its weights decay as w0 exp(-t / tau_decay); with it, the more active inputs grow."""
    pytest.importorskip("plastix_rule_example")
    decay_only = read_result(
        run_experiment(
            "rule-demo",
            {
                "rule": "decaying-hebbian",
                "duration": 0.5,
                "w_init": 0.8,
                "rule_params": ("eta=0*second", "tau_decay=1*second"),
            },
            out=tmp_path / "decay.h5",
        )
    )
    t = decay_only.metrics["time"]
    np.testing.assert_allclose(decay_only.metrics["w_high"], 0.8 * np.exp(-t), rtol=1e-6)
    np.testing.assert_allclose(decay_only.metrics["w_low"], 0.8 * np.exp(-t), rtol=1e-6)
    hebbian = read_result(
        run_experiment(
            "rule-demo", {"rule": "decaying-hebbian", "duration": 0.5}, out=tmp_path / "p.h5"
        )
    )
    assert hebbian.summary["w_high_final"] > hebbian.summary["w_low_final"]


def test_three_factor_rule_gets_a_modulator(tmp_path):
    out = run_experiment(
        "rule-demo",
        {"rule": "reward-stdp", "duration": 0.5, "rule_params": ("eta=50*Hz",)},
        out=tmp_path / "r.h5",
    )
    w = read_result(out).metrics["w_high"]
    assert w[-1] != pytest.approx(0.5, abs=1e-6)  # the modulated rule changed the weights


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"rule": "nope"}, "'nope' is not registered; available:"),
        ({"rule_params": ("tau_plus=5",)}, "parameter 'tau_plus'"),
        ({"rule_params": ("tau_plus",)}, "is not name=value"),
        ({"rule": "ib"}, "reads postsynaptic variables gate, psi that rule-demo"),
    ],
)
def test_bad_rule_choice_is_refused_before_running(tmp_path, overrides, fragment):
    with pytest.raises(ConfigError, match=fragment):
        run_experiment("rule-demo", overrides, out=tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()
