"""Small xi-modulator configs and random streams shared by the modulator tests."""

import torch

from plastix.reservoirs.xi_modulator import XiModulatorConfig


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def kernel_memory_config(**changes) -> XiModulatorConfig:
    """A small ungated kernel-memory config (6 neurons, 3 classes, B = 4, row-centred xi)."""
    base = dict(
        architecture="kernel-memory",
        gated=False,
        window_products=False,
        n_neurons=6,
        n_classes=3,
        window=4,
        x_projection=5,
        n_streams=2,
        stream_length=40,
        n_chunks=1,
        xi_method="row-centred",
        seed=2,
    )
    base.update(changes)
    return XiModulatorConfig(**base)


def random_streams(
    n_classes: int, n_neurons: int, n_streams: int = 1, length: int = 12, x_dim: int = 4, seed=7
):
    """Inputs in [0, 1), one-hot labels and Gaussian activities, float64, shaped
    (n_streams, length, ...)."""
    g = generator(seed)
    x = torch.rand(n_streams, length, x_dim, generator=g, dtype=torch.float64)
    labels = torch.randint(0, n_classes, (n_streams, length), generator=g)
    y = torch.nn.functional.one_hot(labels, n_classes).double()
    z = torch.randn(n_streams, length, n_neurons, generator=g, dtype=torch.float64)
    return x, y, z


def recording_run_esn(monkeypatch, module) -> list[torch.Tensor]:
    """The input streams of every ``run_esn`` call ``module`` makes from now on, in order."""
    seen = []
    original = module.run_esn

    def recording(weights, inputs, *args, **kwargs):
        seen.append(inputs)
        return original(weights, inputs, *args, **kwargs)

    monkeypatch.setattr(module, "run_esn", recording)
    return seen
