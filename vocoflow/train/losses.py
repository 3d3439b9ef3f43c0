"""Losses of probability density distillation (Parallel WaveNet, ClariNet).

* :func:`gaussian_kl`: ``KL(N(mu_q, s_q^2) || N(mu_p, s_p^2))`` elementwise.
* :func:`closed_form_kl`: ClariNet's estimator of ``KL(q || p)`` for an affine Gaussian student
  and a Gaussian autoregressive teacher: a student sample ``x ~ q`` fixes ``x_<t``; given it,
  both per-step conditionals are Gaussians and their KL is exact; summed over ``t``.
* :func:`monte_carlo_kl`: ``log q(x) - log p(x)`` at student samples (any student, any teacher
  with a density), the unbiased single-sample estimator of ``KL(q || p)``.
* :class:`MultiResolutionSTFTLoss`: spectral convergence + log-magnitude distance over several
  STFT resolutions (Yamamoto et al., 2020; Arik et al., 2018), or Parallel WaveNet's power loss.
* :func:`log_scale_loss`: ClariNet's regulariser ``(log s_p - log s_q)^2``.

All per-step quantities are ``(B, T)``; losses are reported per audio sample (nats/sample).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["gaussian_kl", "closed_form_kl", "monte_carlo_kl", "log_scale_loss",
           "stft_resolutions", "MultiResolutionSTFTLoss"]


def gaussian_kl(mu_q, log_s_q, mu_p, log_s_p) -> torch.Tensor:
    """``KL(N(mu_q, e^{2 log_s_q}) || N(mu_p, e^{2 log_s_p}))`` elementwise (nats).

    >>> import torch
    >>> float(gaussian_kl(torch.tensor(0.), torch.tensor(0.), torch.tensor(0.), torch.tensor(0.)))
    0.0
    >>> round(float(gaussian_kl(torch.tensor(1.), torch.tensor(0.), torch.tensor(0.), torch.tensor(0.))), 6)
    0.5
    """
    return (log_s_p - log_s_q
            + 0.5 * (torch.exp(2 * (log_s_q - log_s_p)) + ((mu_q - mu_p) * torch.exp(-log_s_p)) ** 2)
            - 0.5)


def closed_form_kl(mu_q, log_s_q, mu_p, log_s_p) -> torch.Tensor:
    """Per-step closed-form ``KL(q_t || p_t)`` ``(B, T)``: ``(mu_q, log_s_q)`` are the student's
    per-step Gaussian (from :meth:`~vocoflow.vocoders.IAFStudent.forward` with Gaussian noise),
    ``(mu_p, log_s_p)`` the teacher's given the same sample's past. Its sum over ``t`` is an
    unbiased estimate of ``KL(q || p)`` with less variance than :func:`monte_carlo_kl`."""
    return gaussian_kl(mu_q, log_s_q, mu_p, log_s_p)


def monte_carlo_kl(log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """``log q(x) - log p(x)`` at ``x ~ q`` (any shapes that broadcast)."""
    return log_q - log_p


def log_scale_loss(log_s_q: torch.Tensor, log_s_p: torch.Tensor) -> torch.Tensor:
    """ClariNet's regulariser ``(log s_p - log s_q)^2`` elementwise."""
    return (log_s_p - log_s_q) ** 2


def stft_resolutions(sample_rate: int, base=(512, 1024, 2048), base_rate: int = 22050):
    """``[(n_fft, hop, win)]`` scaled to ``sample_rate``: each FFT size of ``base`` (meant for
    ``base_rate``) times ``sample_rate / base_rate``, rounded to a power of two; hop a quarter
    and window the whole FFT.

    >>> stft_resolutions(16000)
    [(512, 128, 512), (1024, 256, 1024), (2048, 512, 2048)]
    >>> stft_resolutions(44100)[0]
    (1024, 256, 1024)
    """
    out = []
    for n in base:
        n_fft = 2 ** max(4, round(math.log2(n * sample_rate / base_rate)))
        out.append((n_fft, n_fft // 4, n_fft))
    return out


class MultiResolutionSTFTLoss(nn.Module):
    """STFT losses between generated and real audio ``(B, T)``, averaged over resolutions.

    ``kind="magnitude"`` (default): spectral convergence ``|| |Y| - |X| ||_F / || |Y| ||_F`` plus
    the mean absolute log-magnitude difference (Arik et al., 2018; Yamamoto et al., 2020,
    "Parallel WaveGAN"); returns ``(loss, {"sc": ..., "logmag": ...})``.
    ``kind="power"``: Parallel WaveNet's power loss, the squared difference of the time-averaged
    power spectra ``mean_t |STFT|^2`` (on a log scale when ``log_power``), ``{"power": ...}``.

    >>> import torch
    >>> loss = MultiResolutionSTFTLoss([(64, 16, 64), (128, 32, 128)])
    >>> x = torch.randn(2, 1024)
    >>> float(loss(x, x)[0])
    0.0
    """

    def __init__(self, resolutions, kind: str = "magnitude", eps: float = 1e-7,
                 log_power: bool = True):
        super().__init__()
        if kind not in ("magnitude", "power"):
            raise ValueError(f"STFT loss kind must be 'magnitude' or 'power', got {kind!r}")
        self.resolutions = [tuple(int(v) for v in r) for r in resolutions]
        if not self.resolutions:
            raise ValueError("need at least one STFT resolution")
        for n_fft, hop, win in self.resolutions:
            if not (0 < hop <= win <= n_fft):
                raise ValueError(f"bad STFT resolution (n_fft={n_fft}, hop={hop}, win={win})")
        self.kind = kind
        self.eps = float(eps)
        self.log_power = bool(log_power)
        for i, (_, _, win) in enumerate(self.resolutions):
            self.register_buffer(f"window{i}", torch.hann_window(win), persistent=False)

    def _mag(self, x, i):
        n_fft, hop, win = self.resolutions[i]
        w = getattr(self, f"window{i}").to(device=x.device, dtype=x.dtype)
        spec = torch.stft(x, n_fft, hop, win, w, center=True, pad_mode="reflect",
                          return_complex=True)
        return spec.abs().clamp_min(self.eps)

    def forward(self, generated: torch.Tensor, real: torch.Tensor):
        if generated.shape != real.shape:
            raise ValueError(f"generated {tuple(generated.shape)} and real {tuple(real.shape)} "
                             "audio differ in shape")
        gen, ref = generated.float(), real.float()
        terms = {}
        total = gen.new_zeros(())
        for i in range(len(self.resolutions)):
            g, r = self._mag(gen, i), self._mag(ref, i)
            if self.kind == "magnitude":
                sc = torch.linalg.vector_norm(r - g, dim=(-2, -1)) / \
                    torch.linalg.vector_norm(r, dim=(-2, -1)).clamp_min(self.eps)
                lm = (torch.log(r) - torch.log(g)).abs().mean(dim=(-2, -1))
                parts = {"sc": sc.mean(), "logmag": lm.mean()}
            else:
                pg, pr = (g ** 2).mean(dim=-1), (r ** 2).mean(dim=-1)
                if self.log_power:
                    pg, pr = torch.log(pg + self.eps), torch.log(pr + self.eps)
                parts = {"power": ((pg - pr) ** 2).mean()}
            for k, v in parts.items():
                terms[k] = terms.get(k, 0.0) + v / len(self.resolutions)
                total = total + v / len(self.resolutions)
        return total, {k: float(v.detach()) for k, v in terms.items()}
