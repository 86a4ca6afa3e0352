"""cuda_standalone through plastix.circuits.backend: code generation without a GPU, compilation
where nvcc and cuRAND are present (slow), and a run where a GPU is visible (gpu).

brian2cuda 1.0b1 pins brian2 2.10.1 (Python >= 3.12), so these tests skip in the main
environment and run in the separate CUDA environment that .ci/run creates.
"""

import os

import numpy as np
import pytest

from plastix.circuits.backend import activate_backend, backend_report

STATUS = {s.name: s for s in backend_report()}


def _skip_reason(*names):
    missing = [m for name in names for m in STATUS[name].missing]
    return "; ".join(missing) or "unavailable"


pytestmark = pytest.mark.skipif(
    not STATUS["brian2cuda"].available,
    reason=f"brian2cuda not importable here: {_skip_reason('brian2cuda')}",
)
needs_toolchain = pytest.mark.skipif(
    not (STATUS["nvcc"].available and STATUS["curand"].available),
    reason=f"cannot compile CUDA here: {_skip_reason('nvcc', 'curand')}",
)
needs_gpu = pytest.mark.skipif(
    not STATUS["cuda_standalone"].available,
    reason=f"cannot run CUDA here: {_skip_reason('cuda_standalone')}",
)


def plastic_lif_network():
    """Poisson input -> LIF layer through a three-factor plastic synapse.

    dw = eta * mod_post * apre on each postsynaptic spike (presynaptic trace x postsynaptic
    spike x modulatory signal; the three-factor form of Fremaux & Gerstner 2016,
    Front. Neural Circuits 9:85), with eta a (shared, constant) parameter for run_args.
    """
    from brian2 import Hz, Network, NeuronGroup, PoissonGroup, SpikeMonitor, Synapses, ms

    inputs = PoissonGroup(20, rates=60 * Hz, name="cu_inputs")
    lif = NeuronGroup(
        8,
        "dv/dt = -v / (10*ms) : 1\nmod : 1 (constant)",
        threshold="v > 1",
        reset="v = 0",
        method="exact",
        name="cu_lif",
    )
    lif.mod = "1.0 - 0.25 * i"
    syn = Synapses(
        inputs,
        lif,
        """w : 1
        eta : 1 (shared, constant)
        dapre/dt = -apre / (20*ms) : 1 (event-driven)""",
        on_pre="v_post += w\napre += 1",
        on_post="w = clip(w + eta * mod_post * apre, 0, 1)",
        name="cu_syn",
    )
    syn.connect(p=0.5)
    syn.w = 0.3
    syn.eta = 0.01
    spikes = SpikeMonitor(lif, name="cu_spikes")
    net = Network(inputs, lif, syn, spikes, name="cu_net")
    net.run(100 * ms)
    return syn, spikes


def test_cuda_code_generation_without_gpu(tmp_path):
    project = tmp_path / "cuda_project"
    with activate_backend("cuda_standalone", directory=project, codegen_only=True) as sim:
        plastic_lif_network()
        assert sim.build() == project
    makefile = (project / "makefile").read_text()
    assert "-std=c++17" in makefile  # CUDA 13's Thrust/CUB need C++17
    assert "-arch=sm_90" in makefile  # compute capability set without a GPU
    assert (project / "main.cu").is_file()
    post = (project / "code_objects" / "cu_syn_post_codeobject.cu").read_text()
    assert "__global__" in post and "eta" in post and "clip" in post
    assert "set_from_command_line" in (project / "main.cu").read_text()  # run_args support
    assert not (project / "main").exists()  # generated only


@pytest.mark.slow
@needs_toolchain
def test_cuda_project_compiles(brian_build_cache):
    with activate_backend("cuda_standalone", cache_root=brian_build_cache) as sim:
        plastic_lif_network()
        directory = sim.build(run=False)
    binary = directory / "main"
    assert binary.is_file() and os.access(binary, os.X_OK)
    assert "-std=c++17" in (directory / "makefile").read_text()


@pytest.mark.slow
@pytest.mark.gpu
@needs_gpu
def test_cuda_run_and_rerun_with_run_args(brian_build_cache):
    with activate_backend("cuda_standalone", cache_root=brian_build_cache) as sim:
        syn, spikes = plastic_lif_network()
        sim.build(run=False)
        sim.run(run_args={syn.eta: 0.0})
        frozen = np.asarray(syn.w[:]).copy()
        assert spikes.num_spikes > 0
        sim.run(run_args={syn.eta: 0.05})
        learned = np.asarray(syn.w[:]).copy()
    np.testing.assert_allclose(frozen, 0.3)  # eta = 0: no plasticity
    assert np.any(np.abs(learned - 0.3) > 1e-6)  # eta > 0: weights moved


def test_cuda_session_keeps_your_compiler_preferences(tmp_path):
    import brian2cuda  # noqa: F401 - registers the preferences set below
    from brian2 import prefs

    cb = "devices.cuda_standalone.cuda_backend"
    names = (f"{cb}.extra_compile_args_nvcc", f"{cb}.cuda_path")
    before = {name: prefs[name] for name in names}
    prefs[f"{cb}.extra_compile_args_nvcc"] = ["-w", "-lineinfo"]
    prefs[f"{cb}.cuda_path"] = "/opt/your-cuda"
    try:
        with activate_backend("cuda_standalone", tmp_path / "p", codegen_only=True):
            nvcc = prefs[f"{cb}.extra_compile_args_nvcc"]
            assert "-lineinfo" in nvcc and nvcc[-1] == "-std=c++17"  # yours, plus C++17
            assert prefs[f"{cb}.cuda_path"] == "/opt/your-cuda"
        assert prefs[f"{cb}.extra_compile_args_nvcc"] == ["-w", "-lineinfo"]
    finally:
        for name, value in before.items():
            prefs[name] = value
