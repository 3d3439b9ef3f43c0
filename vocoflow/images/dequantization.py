"""Dequantisation: turning 8-bit images into continuous data a density model can fit.

Uniform dequantisation (Theis, van den Oord & Bethge, 2016, "A note on the evaluation of
generative models"; Uria et al., 2013) adds ``u ~ U[0, 1)^D`` to the integer pixels; the
continuous log-density of ``x + u`` on ``[0, 256)^D`` is then, in expectation, a lower bound on
the discrete log-likelihood of ``x``. Variational dequantisation (Ho et al., 2019, "Flow++")
learns the noise distribution ``q(u | x)`` and uses ``log p(x) >= E_q[log p(x + u) - log q(u|x)]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vocoflow.flows import AffineCoupling, ConvNet, Sequential

__all__ = ["uniform_noise", "VariationalDequantizer"]


def uniform_noise(shape: tuple[int, ...], indices, seed: int, step: int = 0,
                  dtype=torch.float32) -> torch.Tensor:
    """``U[0, 1)`` noise of ``(len(indices), *shape)``, one generator per item seeded from
    ``(seed, index, step)``: the same draw for an item whatever the batch split or process
    count, and a fresh draw for every step.

    >>> a = uniform_noise((1, 2, 2), [3, 5], seed=0, step=1)
    >>> b = uniform_noise((1, 2, 2), [5], seed=0, step=1)
    >>> bool((a[1] == b[0]).all()), a.shape
    (True, torch.Size([2, 1, 2, 2]))
    """
    out = torch.empty(len(indices), *shape, dtype=torch.float64)
    for k, i in enumerate(indices):
        g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(i)) * 7_919 + int(step))
        out[k] = torch.rand(shape, generator=g, dtype=torch.float64)
    return out.to(dtype)


class VariationalDequantizer(nn.Module):
    """Learned dequantisation noise ``q(u | x)`` (Flow++, Ho et al., 2019).

    ``u = sigmoid(f(v; x))`` with ``v = logit(noise)`` (a standard logistic sample made from
    uniform noise) and ``f`` a few checkerboard affine couplings conditioned on the (scaled)
    image. ``forward(x, noise) -> (u, log q(u | x))`` per item. At initialisation ``f`` is the
    identity, so ``u = noise`` and ``log q = 0``: uniform dequantisation.

    >>> import torch
    >>> deq = VariationalDequantizer(1, n_couplings=2, hidden=8)
    >>> noise = torch.rand(2, 1, 4, 4) * 0.98 + 0.01
    >>> u, log_q = deq(torch.zeros(2, 1, 4, 4), noise)
    >>> torch.allclose(u, noise, atol=1e-6), torch.allclose(log_q, torch.zeros(2), atol=1e-4)
    (True, True)
    """

    def __init__(self, channels: int, n_couplings: int = 4, hidden: int = 32,
                 n_layers: int = 3):
        super().__init__()

        def factory(i, o, c):
            return ConvNet(i, o, c, hidden=hidden, n_layers=n_layers, ndim=2)

        self.flow = Sequential(*[
            AffineCoupling(channels, mask="checkerboard", parity=k % 2, cond_channels=channels,
                           conditioner=factory, ndim=2)
            for k in range(n_couplings)
        ])

    def forward(self, x: torch.Tensor, noise: torch.Tensor):
        eps = torch.finfo(noise.dtype).eps
        noise = noise.clamp(eps, 1 - eps)
        v = torch.log(noise) - torch.log1p(-noise)
        log_p_v = (-v - 2 * F.softplus(-v)).reshape(v.shape[0], -1).sum(1)
        w, ld = self.flow(v, x.to(v.dtype) / 256.0 - 0.5)
        u = torch.sigmoid(w)
        log_sig_prime = -(F.softplus(-w) + F.softplus(w))
        log_q = log_p_v - ld - log_sig_prime.reshape(w.shape[0], -1).sum(1)
        return u, log_q
