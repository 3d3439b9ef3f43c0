"""Image-specific bijectors and base densities: the data scaling (with its change of
variables), flattening, fixed permutations and a uniform box density.

Pixel data enter every image flow as continuous values in ``[0, 256)`` (an 8-bit value plus
dequantisation noise in ``[0, 1)``). :class:`DataScaling` maps them to the model's range and
contributes its log-Jacobian, so ``-log p(x) / (D log 2)`` of the whole flow is directly the
bits per dimension of the 8-bit data.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vocoflow.flows import Bijector

__all__ = ["DataScaling", "Flatten", "Permute", "UniformBox", "SCALINGS"]

SCALINGS = ("centered", "unit", "logit")


class DataScaling(Bijector):
    """Map pixel values in ``[0, 256)`` to the model's range, with the log-Jacobian.

    * ``"centered"``: ``y = x / 256 - 0.5`` in ``[-0.5, 0.5)`` (Glow);
      ``log|det| = -D log 256``.
    * ``"unit"``: ``y = x / 256`` in ``[0, 1)`` (NICE).
    * ``"logit"``: ``y = logit(alpha + (1 - 2 alpha) x / 256)`` (RealNVP, Residual Flows;
      RealNVP uses ``alpha = 0.05``); ``log|det| = sum log((1 - 2 alpha) / 256) - log s -
      log(1 - s)`` with ``s = alpha + (1 - 2 alpha) x / 256``. ``alpha`` must be positive
      unless the data avoid 0 exactly.

    Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using Real NVP", section 4.1
    (the logit transform and its Jacobian in the reported bits/dim).

    >>> import torch
    >>> s = DataScaling("centered")
    >>> y, ld = s(torch.full((1, 1, 2, 2), 128.0))
    >>> y.flatten().tolist(), round(ld.item() / -4 / math.log(2), 6)
    ([0.0, 0.0, 0.0, 0.0], 8.0)
    """

    def __init__(self, kind: str = "centered", alpha: float = 0.05):
        super().__init__()
        if kind not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, not {kind!r}")
        if kind == "logit" and not 0.0 <= alpha < 0.5:
            raise ValueError(f"logit scaling needs 0 <= alpha < 0.5, got {alpha}")
        self.kind = kind
        self.alpha = float(alpha)

    def extra_repr(self) -> str:
        return f"{self.kind!r}" + (f", alpha={self.alpha}" if self.kind == "logit" else "")

    def _n(self, x):
        return x[0].numel()

    def forward(self, x, cond=None):
        if self.kind in ("centered", "unit"):
            y = x / 256.0 - (0.5 if self.kind == "centered" else 0.0)
            ld = x.new_full((x.shape[0],), -self._n(x) * math.log(256.0))
            return y, ld
        a = self.alpha
        s = a + (1 - 2 * a) * x / 256.0
        y = torch.log(s) - torch.log1p(-s)
        ld = math.log((1 - 2 * a) / 256.0) * self._n(x) - (torch.log(s) + torch.log1p(-s)).reshape(
            x.shape[0], -1).sum(1)
        return y, ld

    def inverse(self, z, cond=None):
        if self.kind in ("centered", "unit"):
            x = (z + (0.5 if self.kind == "centered" else 0.0)) * 256.0
            return x, z.new_full((z.shape[0],), self._n(z) * math.log(256.0))
        a = self.alpha
        s = torch.sigmoid(z)
        x = (s - a) / (1 - 2 * a) * 256.0
        # log ds/dz = log s + log(1 - s) = -softplus(-z) - softplus(z)
        log_ds = -(torch.nn.functional.softplus(-z) + torch.nn.functional.softplus(z))
        ld = log_ds.reshape(z.shape[0], -1).sum(1) - math.log((1 - 2 * a) / 256.0) * self._n(z)
        return x, ld


class Flatten(Bijector):
    """``(B, *shape) -> (B, prod(shape))`` (log-determinant 0); ``Inverse(Flatten(shape))``
    restores the shape.

    >>> import torch
    >>> Flatten((1, 2, 2))(torch.zeros(3, 1, 2, 2))[0].shape
    torch.Size([3, 4])
    """

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x, cond=None):
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"Flatten built for {self.shape}, got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1), self._zero_logdet(x)

    def inverse(self, z, cond=None):
        return z.reshape(z.shape[0], *self.shape), self._zero_logdet(z)


class Permute(Bijector):
    """A fixed permutation of dim 1 (``z[:, i] = x[:, perm[i]]``), log-determinant 0.

    ``Permute.even_odd(D)`` puts the even indices first, so that a channel-split coupling on
    the result partitions the input into odd and even components, as NICE does (Dinh, Krueger
    & Bengio, 2014, "NICE: Non-linear Independent Components Estimation").

    >>> import torch
    >>> Permute.even_odd(5)(torch.arange(5.).reshape(1, 5))[0].tolist()
    [[0.0, 2.0, 4.0, 1.0, 3.0]]
    """

    def __init__(self, perm):
        super().__init__()
        perm = torch.as_tensor(perm, dtype=torch.long)
        if not torch.equal(torch.sort(perm).values, torch.arange(perm.numel())):
            raise ValueError("not a permutation")
        self.register_buffer("perm", perm)
        self.register_buffer("inv", torch.argsort(perm))

    @classmethod
    def even_odd(cls, n: int) -> "Permute":
        return cls(torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2)]))

    def forward(self, x, cond=None):
        return x[:, self.perm], self._zero_logdet(x)

    def inverse(self, z, cond=None):
        return z[:, self.inv], self._zero_logdet(z)


class UniformBox(nn.Module):
    """Uniform density on the box ``[low, high)^D`` (``-inf`` outside), a base distribution
    with the interface of :class:`vocoflow.flows.Normal`. With the identity bijector and
    ``DataScaling("centered")`` it is the uniform density on ``[0, 256)^D``: exactly 8 bits per
    dimension on dequantised 8-bit data.

    >>> import torch
    >>> UniformBox().log_prob(torch.tensor([[0.0, 0.2], [0.0, 0.7]])).tolist()
    [0.0, -inf]
    """

    def __init__(self, low: float = -0.5, high: float = 0.5):
        super().__init__()
        if not high > low:
            raise ValueError("need high > low")
        self.low, self.high = float(low), float(high)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        inside = ((z >= self.low) & (z < self.high)).reshape(z.shape[0], -1).all(1)
        val = -z[0].numel() * math.log(self.high - self.low) + 0.0
        return torch.where(inside, z.new_full((z.shape[0],), val),
                           z.new_full((z.shape[0],), -math.inf))

    def sample(self, shape, temperature: float | None = None, generator=None, device=None,
               dtype=None) -> torch.Tensor:
        u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
        return self.low + (self.high - self.low) * u
