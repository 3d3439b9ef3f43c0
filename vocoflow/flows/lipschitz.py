"""Lipschitz-constrained layers for invertible residual blocks.

* :class:`SpectralNormLayer`: a linear / conv1d / conv2d layer whose weight is rescaled so that
  its operator norm (Lipschitz constant) is at most ``coeff`` (convolutions are bounded through
  their frequency response, below);
* :class:`LipSwish`: the 1-Lipschitz activation of Residual Flows (Chen et al., 2019);
* :class:`CLipSwish`: the concatenated LipSwish of i-DenseNets (Perugachi-Diaz et al., 2021),
  1-Lipschitz with twice the channels out;
* :data:`ACTIVATIONS`: the registry of these activations (the ``activation`` of a
  :class:`~vocoflow.flows.residual.ResidualBlock`); each class says by ``expansion`` how many
  times its input channels it returns.

How the conv layers are normalised
----------------------------------
A convolution's Lipschitz constant is the operator norm of the convolution, not the norm of the
reshaped ``(out, in*k)`` weight matrix used by SN-GAN and i-ResNet's fast approximation (a
smoothing kernel with equal taps has operator norm ``sqrt(k)`` times the reshaped norm, so the
reshaped normalisation does not bound ``Lip(g)``). By default (``conv_norm="frequency"``) this
module bounds the true operator norm instead. For a "same"-padded convolution with centred taps
``W_j`` (offsets ``|j| <= n = (k-1)/2`` on each axis) and any input length, the operator norm is
at most ``sup_w ||W(w)||_2`` with ``W(w) = sum_j W_j exp(-i w.j)`` (zero padding restricts the
bi-infinite convolution, whose operator norm is that supremum). ``||W(w)||`` is tracked by power
iteration at every point of a frequency grid (one pair of complex vectors per frequency, stored as
buffers), and the grid maximum is converted into a bound on the supremum: for unit ``a, b`` the
function ``Re(e^{-it} a^H W(w) b)`` is a real trigonometric polynomial of degree ``n`` per axis, so
Bernstein's inequality bounds its curvature at the maximum and gives
``sup ||W(w)|| <= max_grid ||W(w)|| / (1 - eps)`` with ``eps = (sum_axes n * delta)^2 / 2`` and
``delta`` the largest distance to a grid point. The grid is fine enough that ``eps`` is about
0.005 for conv1d and 0.019 for conv2d, so the bound costs at most that much of ``coeff``. The grid
has ``16 n + 1`` frequencies for conv1d and ``(16 n + 1) * 32 n`` for conv2d (17 and 544 for
``k = 3``); a power-iteration step costs about that many ``(out x in)`` matrix-vector products, and
the differentiable ``sigma`` only evaluates the peak frequency found by the last step.
``conv_norm="reshape"`` selects i-ResNet's fast approximation (normalise the reshaped matrix); it is
cheaper but does **not** guarantee ``Lip(g) < 1`` for kernels wider than one tap. For linear
layers and 1x1 convolutions both choices are the same, exact, matrix normalisation.
"""

from __future__ import annotations

import functools
import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from vocoflow.registry import ClassChoices

__all__ = ["SpectralNormLayer", "LipSwish", "CLipSwish", "ACTIVATIONS", "clipswish_constant"]

_MATERIALIZE_LIMIT = 1 << 22  # complex entries of W(w) held at once during power iteration


# ----------------------------------------------------------------------------------------------
# Spectral normalisation
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _frequency_grid(kernel_size: int, ndim: int, oversample: int = 1) -> tuple[torch.Tensor, float]:
    """Phase arguments ``w . j`` on a frequency grid, and the grid's Bernstein slack ``eps``.

    Returns ``(phase, eps)`` with ``phase`` of shape ``(n_freq, kernel_size ** ndim)`` (float64;
    taps in the row-major order of ``weight.reshape(out, in, -1)``, offsets centred on 0) and
    ``eps`` such that ``sup_w ||W(w)|| <= max_grid ||W(w)|| / (1 - eps)``.

    Axis 0 covers ``[0, pi]`` (a real kernel has ``W(-w) = conj(W(w))``, same singular values),
    the other axes the full circle. Grid spacing per axis is ``pi / (16 n oversample)``, so the
    largest distance to a grid point is ``delta = pi / (32 n oversample)`` per axis.
    """
    n = (kernel_size - 1) // 2
    spacing = math.pi / (16 * n * oversample)
    axes = [torch.linspace(0.0, math.pi, 16 * n * oversample + 1, dtype=torch.float64)]
    for _ in range(ndim - 1):
        m = 32 * n * oversample
        axes.append(-math.pi + spacing * torch.arange(m, dtype=torch.float64))
    freqs = torch.cartesian_prod(*axes).reshape(-1, ndim)
    offsets = torch.tensor(
        list(itertools.product(range(-n, n + 1), repeat=ndim)), dtype=torch.float64
    ).reshape(-1, ndim)
    eps = (ndim * n * spacing / 2) ** 2 / 2
    return freqs @ offsets.T, eps


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _normalize(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Unit-normalise the rows of ``new``; keep ``old`` where ``new`` is (numerically) zero."""
    norm = torch.linalg.vector_norm(new, dim=-1, keepdim=True)
    tiny = torch.finfo(norm.dtype).tiny ** 0.5
    return torch.where(norm > tiny, new / norm.clamp_min(tiny), old)


class SpectralNormLayer(nn.Module):
    """Linear (``ndim=0``), conv1d or conv2d layer with Lipschitz constant at most ``coeff``.

    The weight used is ``W * min(1, coeff / sigma)`` where ``sigma`` estimates the layer's
    operator norm by power iteration (Miyato et al., 2018, "Spectral Normalization for GANs";
    i-ResNet, Behrmann et al., 2019). It only shrinks the weight when ``sigma > coeff``. For
    linear layers and 1x1 convolutions ``sigma`` is the largest singular value of the weight
    matrix. For wider convolutions ``conv_norm="frequency"`` (default) bounds the true operator
    norm through the kernel's frequency response (see the module docstring);
    ``conv_norm="reshape"`` is i-ResNet's fast approximation on the ``(out, in*k)`` matrix.

    The power-iteration vectors are buffers (saved in ``state_dict``). They are updated by
    ``n_power_iterations`` warm-started steps at the start of every call in training mode, and
    iterated to convergence when the layer leaves training mode (``.eval()``); eval-mode calls
    never update them, so they are deterministic.

    >>> import torch
    >>> layer = SpectralNormLayer(3, 8, kernel_size=3, ndim=1, coeff=0.9)
    >>> with torch.no_grad():
    ...     _ = layer.weight.mul_(10.0)
    >>> layer.refresh(100)
    >>> layer(torch.randn(2, 3, 7)).shape
    torch.Size([2, 8, 7])
    >>> layer.operator_norm_bound() < 0.9 + 1e-4
    True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        ndim: int = 1,
        coeff: float = 0.97,
        bias: bool = True,
        n_power_iterations: int = 5,
        conv_norm: str = "frequency",
        n_init_iterations: int = 50,
    ):
        super().__init__()
        if ndim not in (0, 1, 2):
            raise ValueError(f"ndim must be 0 (linear), 1 (conv1d) or 2 (conv2d), got {ndim}")
        if ndim == 0:
            kernel_size = 1
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive ('same' padding), got {kernel_size}")
        if not 0.0 < coeff:
            raise ValueError(f"coeff must be positive, got {coeff}")
        if conv_norm not in ("frequency", "reshape"):
            raise ValueError(f"conv_norm must be 'frequency' or 'reshape', got {conv_norm!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.ndim, self.coeff = kernel_size, ndim, float(coeff)
        self.n_power_iterations = int(n_power_iterations)
        self.conv_norm = conv_norm
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *([kernel_size] * ndim)))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

        n_taps = kernel_size**ndim
        self._matrix = n_taps == 1 or conv_norm == "reshape"
        if self._matrix:
            n_freq, in_eff, self._eps = 1, in_channels * n_taps, 0.0
        else:
            phase, self._eps = _frequency_grid(kernel_size, ndim)
            n_freq, in_eff = phase.shape[0], in_channels
        u = torch.view_as_complex(torch.randn(n_freq, out_channels, 2))
        v = torch.view_as_complex(torch.randn(n_freq, in_eff, 2))
        self.register_buffer("u", torch.view_as_real(_normalize(u, u)).contiguous())
        self.register_buffer("v", torch.view_as_real(_normalize(v, v)).contiguous())
        self.register_buffer("index", torch.zeros((), dtype=torch.long))
        self.refresh(n_init_iterations)

    def reset_parameters(self) -> None:
        """The default initialisation of ``nn.Linear`` / ``nn.Conv*``."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    # -- the operator W(w): taps (out, in_eff, K) and phases (F, K) ---------------------------
    def _operator(self, weight: torch.Tensor, oversample: int = 1, matrix: bool | None = None):
        matrix = self._matrix if matrix is None else matrix
        cdtype = _complex_dtype(weight.dtype)
        out = weight.shape[0]
        if matrix:
            taps = weight.reshape(out, -1, 1).to(cdtype)
            phase = torch.ones(1, 1, dtype=cdtype, device=weight.device)
            return taps, phase, 0.0
        taps = weight.reshape(out, self.in_channels, -1).to(cdtype)
        arg, eps = _frequency_grid(self.kernel_size, self.ndim, oversample)
        phase = torch.polar(torch.ones_like(arg), -arg).to(device=weight.device, dtype=cdtype)
        return taps, phase, eps

    @staticmethod
    def _matvec(taps, phase, v):  # W(w_f) v_f for every f: (F, in) -> (F, out)
        return torch.einsum("fok,fk->fo", torch.einsum("oik,fi->fok", taps, v), phase)

    @staticmethod
    def _rmatvec(taps, phase, u):  # W(w_f)^H u_f: (F, out) -> (F, in)
        return torch.einsum("fik,fk->fi", torch.einsum("oik,fo->fik", taps, u), phase.conj())

    @torch.no_grad()
    def refresh(self, n_iterations: int | None = None, rtol: float | None = None) -> None:
        """Run power iterations (default ``n_power_iterations``) and store the vectors.

        With ``rtol``, stop early once the estimate of ``sigma`` changes by less than ``rtol``
        (relative). Also records the frequency where the estimate peaks (buffer ``index``), the
        only one :meth:`sigma` evaluates. Call it with a large count after editing the weight.
        """
        n = self.n_power_iterations if n_iterations is None else int(n_iterations)
        if n <= 0:
            return
        taps, phase, _ = self._operator(self.weight.detach())
        u = torch.view_as_complex(self.u).to(taps.dtype)
        v = torch.view_as_complex(self.v).to(taps.dtype)
        n_freq, (n_out, n_in, _) = phase.shape[0], taps.shape
        if n_freq * n_out * n_in <= _MATERIALIZE_LIMIT:  # W(w_f) as matrices: K times cheaper
            mats = torch.einsum("oik,fk->foi", taps, phase)
            mats_h = mats.transpose(1, 2).conj()

            def matvec(x):
                return torch.bmm(mats, x.unsqueeze(-1)).squeeze(-1)

            def rmatvec(y):
                return torch.bmm(mats_h, y.unsqueeze(-1)).squeeze(-1)

        else:  # never hold (F, out, in): contract tap by tap

            def matvec(x):
                return self._matvec(taps, phase, x)

            def rmatvec(y):
                return self._rmatvec(taps, phase, y)

        previous = None
        for _ in range(n):
            v = _normalize(rmatvec(u), v)
            wv = matvec(v)
            u = _normalize(wv, u)
            estimates = torch.linalg.vector_norm(wv, dim=-1)  # = |u_f^H W(w_f) v_f|
            if rtol is not None:
                estimate = float(estimates.max())
                if previous is not None and abs(estimate - previous) <= rtol * estimate:
                    break
                previous = estimate
        self.u.copy_(torch.view_as_real(u))
        self.v.copy_(torch.view_as_real(v))
        self.index.fill_(int(estimates.argmax()))

    def train(self, mode: bool = True):
        """Leaving training mode iterates the vectors to convergence (the last optimiser step
        moved the weight after the last update), so eval-mode forwards use an accurate, fixed
        ``sigma``."""
        if self.training and not mode:
            self.refresh(1000, rtol=1e-10)
        return super().train(mode)

    def sigma(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Power-iteration estimate of the operator norm (differentiable in the weight).

        ``|u_f^H W(w_f) v_f| / (1 - eps)`` at the grid frequency ``f = index`` where the last
        refresh found the largest value: a lower bound of the grid maximum and, with converged
        vectors, an upper bound of the operator norm for every input length.
        """
        weight = self.weight if weight is None else weight
        taps, phase, eps = self._operator(weight)
        f = self.index
        # clone: later in-place power iterations must not touch tensors saved for backward
        u = torch.view_as_complex(self.u[f].clone()).to(taps.dtype)
        v = torch.view_as_complex(self.v[f].clone()).to(taps.dtype)
        mat = torch.einsum("oik,k->oi", taps, phase[f])
        return (u.conj() @ mat @ v).abs() / (1.0 - eps)

    def normalized_weight(self, update: bool | None = None) -> torch.Tensor:
        """``W / max(1, sigma / coeff)``; ``update`` (default: ``self.training``) first iterates."""
        if self.training if update is None else update:
            self.refresh()
        return self.weight / torch.clamp(self.sigma() / self.coeff, min=1.0)

    def apply_weight(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The layer's linear map with a given (normalised) weight."""
        if self.ndim == 0:
            return F.linear(x, weight, self.bias)
        conv = F.conv1d if self.ndim == 1 else F.conv2d
        return conv(x, weight, self.bias, padding=self.kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_weight(x, self.normalized_weight())

    @torch.no_grad()
    def operator_norm_bound(self, weight: torch.Tensor | None = None) -> float:
        """An exact (SVD-based) upper bound on the operator norm of the normalised layer.

        Linear / 1x1: ``torch.linalg.matrix_norm(W, ord=2)`` (exact). Wider convolutions:
        ``max ||W(w)||_2 / (1 - eps)`` over a frequency grid twice as fine as the one used for
        normalisation, with exact singular values; valid for every input length and for either
        ``conv_norm`` (the reshape approximation can exceed ``coeff`` here).
        """
        weight = self.normalized_weight(update=False) if weight is None else weight
        if self.kernel_size**self.ndim == 1:
            return float(torch.linalg.matrix_norm(weight.reshape(weight.shape[0], -1), ord=2))
        taps, phase, eps = self._operator(weight, oversample=2, matrix=False)
        best = 0.0
        for chunk in phase.split(256):
            mats = torch.einsum("oik,fk->foi", taps, chunk)
            best = max(best, float(torch.linalg.matrix_norm(mats, ord=2).max()))
        return best / (1.0 - eps)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"ndim={self.ndim}, coeff={self.coeff}, conv_norm={self.conv_norm!r}"
        )


class LipSwish(nn.Module):
    """``x * sigmoid(beta * x) / 1.1`` with a learnable per-channel ``beta = softplus(raw) > 0``.

    Residual Flows (Chen et al., 2019). ``d/dx [x sigmoid(beta x)]`` lies in ``[-0.1, 1.1]`` for
    every ``beta > 0``, so the activation is 1-Lipschitz.

    >>> import torch
    >>> act = LipSwish(2)
    >>> act(torch.zeros(1, 2, 3)).abs().max().item()
    0.0
    """

    #: output channels per input channel
    expansion = 1

    def __init__(self, channels: int):
        super().__init__()
        self.raw_beta = nn.Parameter(torch.full((channels,), 0.5))

    def beta(self, x: torch.Tensor) -> torch.Tensor:
        """``softplus(raw_beta)`` shaped to broadcast over ``x`` ``(B, C, *spatial)``."""
        return F.softplus(self.raw_beta).reshape(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta(x) * x) / 1.1


def _swish_max_slope() -> float:
    """The largest slope of ``t * sigmoid(t)``: ``u(t) = s + t s (1 - s)`` with ``s = sigmoid(t)``
    peaks where ``u'(t) = s (1 - s) (2 - t tanh(t / 2)) = 0``, i.e. at the root of
    ``t tanh(t / 2) = 2`` (``t = 2.3994...``, ``u = 1.0998...``), found here by bisection."""
    lo, hi = 1.0, 4.0  # t tanh(t/2) - 2 is increasing on t > 0: negative at 1, positive at 4
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid * math.tanh(mid / 2) < 2.0:
            lo = mid
        else:
            hi = mid
    s = 1.0 / (1.0 + math.exp(-lo))
    return s + lo * s * (1.0 - s)


def clipswish_constant() -> float:
    """The Lipschitz constant of ``x -> (LipSwish(x), LipSwish(-x))`` (about 1.00397).

    Per element the Jacobian is the column ``(u(t), -u(-t)) / 1.1`` with ``t = beta x`` and
    ``u`` the slope of ``t sigmoid(t)``; ``u(-t) = 1 - u(t)``, so its norm is
    ``sqrt(u^2 + (1 - u)^2) / 1.1``, convex in ``u`` and largest at the extremes of ``u``:
    ``u_max = 1.0998`` and ``u_min = 1 - u_max`` give the same value, for every ``beta > 0``.

    >>> round(clipswish_constant(), 5)
    1.00397
    """
    u = _swish_max_slope()
    return math.sqrt(u * u + (1.0 - u) ** 2) / 1.1


_CLIPSWISH_CONSTANT = clipswish_constant()


class CLipSwish(LipSwish):
    """Concatenated LipSwish ``(LipSwish(x), LipSwish(-x)) / 1.00397`` along the channels.

    Perugachi-Diaz, Tomczak, Bhulai, "Invertible DenseNets with Concatenated LipSwish",
    NeurIPS 2021. Both halves share the learnable per-channel ``beta`` of :class:`LipSwish`;
    the divisor is :func:`clipswish_constant` (the paper's 1.004, here computed exactly), so
    the map is 1-Lipschitz (the bound is attained). ``(B, C, *spatial)`` becomes
    ``(B, 2C, *spatial)``: the layer after it takes twice the channels (``expansion = 2``).
    Unlike LipSwish, no direction is lost: the slope of one half is large wherever the
    other's is near zero.

    >>> import torch
    >>> act = CLipSwish(3)
    >>> act(torch.randn(2, 3, 5)).shape
    torch.Size([2, 6, 5])
    """

    expansion = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bx = self.beta(x) * x
        both = torch.cat([x * torch.sigmoid(bx), -x * torch.sigmoid(-bx)], dim=1)
        return both / (1.1 * _CLIPSWISH_CONSTANT)


#: activations of residual branches by name (``ResidualBlock(activation=...)``)
ACTIVATIONS = ClassChoices("residual activation", default="lipswish")
ACTIVATIONS.register("lipswish", LipSwish)
ACTIVATIONS.register("clipswish", CLipSwish)
