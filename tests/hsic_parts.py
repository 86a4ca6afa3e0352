"""Gaussian kernel and HSIC written out by hand, and a recorder of a trainer's first
gradients, for the tests of plasticity.hsic and the IB trainers."""

from __future__ import annotations

import torch


def kernel_by_hand(a, sigma):
    """Gaussian kernel written out: exp(-|a_i - a_j|^2 / (2 s^2)), s = sigma sqrt(dim)."""
    s2 = sigma**2 * a.shape[-1]
    return torch.exp(-((a[:, None, :] - a[None, :, :]) ** 2).sum(-1) / (2 * s2))


def hsic_by_hand(k, m):
    """tr(K H M H) / (B - 1)^2 written out."""
    b = k.shape[0]
    h = torch.eye(b, dtype=k.dtype) - 1.0 / b
    return torch.trace(k @ h @ m @ h) / (b - 1) ** 2


def capture_first_step(trainer):
    """Make the trainer's optimiser record the gradients of its first step (then step)."""
    grads, step = [], trainer.optimizer.step

    def recording(*args, **kwargs):
        if not grads:
            grads.extend(p.grad.detach().clone() for p in trainer.params)
        return step(*args, **kwargs)

    trainer.optimizer.step = recording
    return grads
