"""Channel permutations and invertible 1x1 convolutions (Glow, WaveGlow)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Bijector

__all__ = ["Reverse", "Shuffle", "Invertible1x1Conv", "spatial_size"]


def spatial_size(x: torch.Tensor) -> int:
    """Number of positions a per-channel map is repeated over (``T`` or ``H*W``; 1 for vectors)."""
    n = 1
    for s in x.shape[2:]:
        n *= s
    return n


class _Permutation(Bijector):
    def _perm(self, c: int) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x, cond=None):
        return x[:, self._perm(x.shape[1])], self._zero_logdet(x)

    def inverse(self, z, cond=None):
        return z[:, torch.argsort(self._perm(z.shape[1]))], self._zero_logdet(z)


class Reverse(_Permutation):
    """Reverse the channel order (RealNVP/NICE's alternating partitions).

    >>> import torch
    >>> Reverse()(torch.arange(3.).reshape(1, 3))[0].tolist()
    [[2.0, 1.0, 0.0]]
    """

    def _perm(self, c):
        return torch.arange(c - 1, -1, -1)


class Shuffle(_Permutation):
    """A fixed random channel permutation, drawn from ``seed`` and saved in ``state_dict``.

    >>> import torch
    >>> s = Shuffle(5, seed=1)
    >>> x = torch.randn(2, 5, 3)
    >>> torch.equal(s.inverse(s(x)[0])[0], x)
    True
    """

    def __init__(self, channels: int, seed: int | None = None):
        super().__init__()
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        self.register_buffer("perm", torch.randperm(channels, generator=g))

    def _perm(self, c):
        if c != self.perm.numel():
            raise ValueError(f"Shuffle built for {self.perm.numel()} channels, got {c}")
        return self.perm


def _apply_matrix(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    b, c = x.shape[:2]
    return (w @ x.reshape(b, c, -1)).reshape(x.shape)


class Invertible1x1Conv(Bijector):
    """Invertible 1x1 convolution over channels (Kingma & Dhariwal, "Glow", 2018), as used
    between WaveGlow's couplings.

    ``z[:, i] = sum_j W[i, j] x[:, j]`` at every position; ``logdet = positions * log|det W|``
    (correct for negative determinants). ``lu=True`` stores ``W = P L (U + diag(sign *
    exp(log_s)))`` with ``P`` fixed, ``L`` unit lower-triangular, ``U`` strictly upper, and a
    learned log-diagonal, so the log-determinant is ``sum(log_s)`` and costs nothing.
    The inverse matrix and ``log|det W|`` are computed from the current weights in float64
    (so a float16 or bfloat16 model works: ``slogdet`` and ``inv`` have no low-precision
    kernels) on every call in training mode, and cached only in eval mode without autograd,
    keyed on the parameters' versions, so they are never stale after an update (the cached
    tensors are also what a traced or exported graph holds as constants). Initialised to a
    random rotation.

    >>> import torch
    >>> conv = Invertible1x1Conv(4, lu=True)
    >>> x = torch.randn(2, 4, 6)
    >>> z, ld = conv(x)
    >>> torch.allclose(conv.inverse(z)[0], x, atol=1e-5)
    True
    """

    def __init__(self, channels: int, lu: bool = False, seed: int | None = None):
        super().__init__()
        self.channels = channels
        self.lu = lu
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        w = torch.linalg.qr(torch.randn(channels, channels, generator=g))[0]
        if not lu:
            self.weight = nn.Parameter(w)
        else:
            p, lower, upper = torch.linalg.lu(w)
            diag = torch.diagonal(upper)
            self.register_buffer("p", p)
            self.register_buffer("sign", torch.sign(diag))
            self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
            self.register_buffer("eye", torch.eye(channels))
            self.lower = nn.Parameter(lower * self.lower_mask)
            self.upper = nn.Parameter(torch.triu(upper, 1))
            self.log_s = nn.Parameter(torch.log(diag.abs()))
        self._cache: tuple | None = None

    def matrix(self) -> torch.Tensor:
        if not self.lu:
            return self.weight
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * torch.exp(self.log_s))
        return self.p @ lower @ upper

    def _log_abs_det(self) -> torch.Tensor:
        if self.lu:
            return self.log_s.sum()
        w = self.weight
        if w.dtype in (torch.float32, torch.float64):
            return torch.linalg.slogdet(w)[1]
        return torch.linalg.slogdet(w.double())[1].to(w.dtype)

    def _versions(self):
        return tuple((p.data_ptr(), p._version) for p in self.parameters())

    def _cached(self):
        """``(inverse matrix, log|det W|)`` from the cache (eval mode without autograd), or
        ``None`` when they must be computed afresh."""
        if self.training or torch.is_grad_enabled():
            return None
        if self._cache is None or self._cache[0] != self._versions():
            w = self.matrix()
            self._cache = (self._versions(), torch.linalg.inv(w.double()).to(w.dtype),
                           self._log_abs_det())
        return self._cache[1:]

    def log_abs_det(self) -> torch.Tensor:
        cached = self._cached()
        return self._log_abs_det() if cached is None else cached[1]

    def inverse_matrix(self) -> torch.Tensor:
        cached = self._cached()
        if cached is not None:
            return cached[0]
        w = self.matrix()
        return torch.linalg.inv(w.double()).to(w.dtype)

    def _check(self, x):
        if x.shape[1] != self.channels:
            raise ValueError(f"Invertible1x1Conv built for {self.channels} channels, "
                             f"got input of shape {tuple(x.shape)}")

    def forward(self, x, cond=None):
        self._check(x)
        ld = self.log_abs_det() * spatial_size(x)
        return _apply_matrix(self.matrix(), x), ld.expand(x.shape[0]).to(x.dtype)

    def inverse(self, z, cond=None):
        self._check(z)
        ld = -self.log_abs_det() * spatial_size(z)
        return _apply_matrix(self.inverse_matrix(), z), ld.expand(z.shape[0]).to(z.dtype)
