"""Stand-in results of the backend's tool probes, shared by the backend tests."""

from plastix.circuits import backend
from plastix.circuits.backend import CurandLocation

WHEEL_CURAND = CurandLocation("/w/include", "/w/lib", "/w/lib/libcurand.so.10", "pip wheel")


def cuda_probe(**changes):
    """A ``_probe_cuda`` result with every CUDA requirement met, changed by ``changes``."""
    probe = {
        "cuda_path": "/opt/cuda-13",
        "nvcc": "/opt/cuda-13/bin/nvcc",
        "nvcc_version": 13.0,
        "curand": WHEEL_CURAND,
        "gpu": {"nvidia_smi": "/usr/bin/nvidia-smi", "gpus": [{"name": "H100"}]},
        "brian2cuda": "1.0b1",
        "brian2cuda_requires": "brian2==2.10.1",
        "brian2cuda_matches": True,
        "brian2": "2.10.1",
    }
    probe.update(changes)
    return probe


def fake_probes(monkeypatch, cuda, cxx_works=True):
    """Make the backend see ``cuda`` as its CUDA probe and a C++ compiler that works or not."""
    cxx = {"works": cxx_works, "compiler": "/usr/bin/g++", "version": "g++ 13", "make": "make"}
    if not cxx_works:
        cxx["error"] = "g++ failed on a test program"
    monkeypatch.setattr(backend, "_probe_cxx", lambda: cxx)
    monkeypatch.setattr(backend, "_probe_cuda", lambda: cuda)
