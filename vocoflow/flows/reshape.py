"""Shape-changing bijectors: ``Squeeze`` and multi-scale ``Split`` (early outputs)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from .base import Bijector

__all__ = ["Squeeze", "Split"]


class Squeeze(Bijector):
    """Fold space or time into channels (a permutation: log-determinant 0).

    * audio ``(B, C, T) -> (B, C*g, T/g)``: ``g`` consecutive samples become channels
      (WaveGlow's ``n_group``): ``z[b, c*g + j, t] = x[b, c, t*g + j]``.
    * image ``(B, C, H, W) -> (B, C*f*f, H/f, W/f)``: space-to-depth (RealNVP, Glow).

    >>> import torch
    >>> Squeeze(4)(torch.arange(8.).reshape(1, 1, 8))[0][0].tolist()
    [[0.0, 4.0], [1.0, 5.0], [2.0, 6.0], [3.0, 7.0]]
    """

    def __init__(self, factor: int = 2):
        super().__init__()
        if factor < 1:
            raise ValueError("squeeze factor must be >= 1")
        self.factor = int(factor)

    def _check(self, x):
        for n in x.shape[2:]:
            if n % self.factor:
                raise ValueError(f"Squeeze({self.factor}): size {tuple(x.shape[2:])} is not "
                                 f"divisible by {self.factor}")

    def forward(self, x, cond=None):
        self._check(x)
        f = self.factor
        if x.dim() == 3:
            z = rearrange(x, "b c (t g) -> b (c g) t", g=f)
        elif x.dim() == 4:
            z = rearrange(x, "b c (h f1) (w f2) -> b (c f1 f2) h w", f1=f, f2=f)
        else:
            raise ValueError(f"Squeeze takes (B, C, T) or (B, C, H, W), got {tuple(x.shape)}")
        return z, self._zero_logdet(x)

    def inverse(self, z, cond=None):
        f = self.factor
        if z.dim() == 3:
            if z.shape[1] % f:
                raise ValueError(f"unsqueeze: {z.shape[1]} channels not divisible by {f}")
            x = rearrange(z, "b (c g) t -> b c (t g)", g=f)
        elif z.dim() == 4:
            if z.shape[1] % (f * f):
                raise ValueError(f"unsqueeze: {z.shape[1]} channels not divisible by {f * f}")
            x = rearrange(z, "b (c f1 f2) h w -> b c (h f1) (w f2)", f1=f, f2=f)
        else:
            raise ValueError(f"Squeeze takes (B, C, T) or (B, C, H, W), got {tuple(z.shape)}")
        return x, self._zero_logdet(z)


class Split(Bijector):
    """Multi-scale architecture: factor out ``n_early`` channels, transform the rest.

    ``forward``: ``x = [x_early, x_rest]`` along channels; ``z_rest = inner(x_rest)``; with a
    learned conditional prior (Glow), ``z_early = (x_early - mu(z_rest)) * exp(-log_sigma(
    z_rest))`` so a standard base density on ``z_early`` is ``N(mu, sigma)`` on ``x_early``;
    otherwise ``z_early = x_early`` (RealNVP, WaveGlow early outputs). The latent is assembled
    back as ``[z_early, z_rest]``, so ``inner`` must return the shape it receives (wrap
    shape-changing parts as ``Sequential(Squeeze(2), ..., Inverse(Squeeze(2)))``). ``inverse``
    splits the latent the same way, inverts ``inner`` and the prior.

    Args:
        n_early: channels factored out at this level.
        inner: the bijector applied to the remaining channels (may itself contain ``Split``).
        prior: ``None`` or a module ``net(z_rest, cond) -> 2 * n_early`` channels
            (``mu, log_sigma``), zero-initialised for a standard prior at the start;
            ``log_sigma`` is soft-clamped to ``(-max_log_sigma, max_log_sigma)``.

    >>> import torch
    >>> from vocoflow.flows import Sequential, AffineCoupling, Split
    >>> f = Split(2, AffineCoupling(4))
    >>> x = torch.randn(3, 6, 8)
    >>> z, ld = f(x)
    >>> torch.equal(z[:, :2], x[:, :2]), torch.allclose(f.inverse(z)[0], x)
    (True, True)
    """

    def __init__(self, n_early: int, inner: Bijector, prior: nn.Module | None = None,
                 max_log_sigma: float = 5.0):
        super().__init__()
        self.max_log_sigma = float(max_log_sigma)
        self.n_early = int(n_early)
        self.inner = inner
        self.prior = prior

    def _prior(self, z_rest, cond, like):
        mu, h = self.prior(z_rest, cond).chunk(2, dim=1)
        if mu.shape != like.shape:
            raise ValueError(f"Split prior produced {tuple(mu.shape)}, expected {tuple(like.shape)}")
        # smooth bound on the log standard deviation, 0 at 0
        return mu, self.max_log_sigma * torch.tanh(h / self.max_log_sigma)

    def forward(self, x, cond=None):
        if x.shape[1] <= self.n_early:
            raise ValueError(f"Split({self.n_early}) needs more channels than that, got "
                             f"{tuple(x.shape)}")
        early, rest = x[:, : self.n_early], x[:, self.n_early:]
        z_rest, ld = self.inner(rest, cond)
        if self.prior is not None:
            mu, log_sigma = self._prior(z_rest, cond, early)
            early = (early - mu) * torch.exp(-log_sigma)
            ld = ld - log_sigma.reshape(x.shape[0], -1).sum(1)
        return torch.cat([early, z_rest], dim=1), ld

    def inverse(self, z, cond=None):
        early, z_rest = z[:, : self.n_early], z[:, self.n_early:]
        ld_prior = z.new_zeros(z.shape[0])
        if self.prior is not None:
            mu, log_sigma = self._prior(z_rest, cond, early)
            early = early * torch.exp(log_sigma) + mu
            ld_prior = log_sigma.reshape(z.shape[0], -1).sum(1)
        rest, ld = self.inner.inverse(z_rest, cond)
        return torch.cat([early, rest], dim=1), ld + ld_prior
