"""Variational inference with normalising flows on the 2-D energy targets of Rezende & Mohamed
("Variational Inference with Normalizing Flows", ICML 2015, Table 1 and Figure 3).

A posterior ``q`` (a diagonal-Gaussian base followed by ``K`` planar, radial or IAF steps of
:mod:`vocoflow.flows.vi`) is fitted to an unnormalised target ``p(z) = exp(-U(z)) / Z`` by
minimising the reverse KL with reparametrised samples:

    KL(q || p) = E_q[log q(z) + U(z)] + log Z,        ELBO = -E_q[log q(z) + U(z)] = log Z - KL.

``log Z`` is computed by numerical integration on a fine grid (:func:`log_normalizer`) so that
the KL itself is reported. The fitting loop is plain PyTorch (Adam, cosine learning rate, the
paper's annealed inverse temperature ``beta_t`` on ``U`` during the first steps).

The targets U2-U4 of the paper are not normalisable: ``exp(-U)`` does not decay along ``z1``.
Here they are confined to the paper's window by a wall ``0.5 * (max(|z1| - 4, 0) / 0.4)^2``
added to ``U`` (zero for ``|z1| <= 4``, where the energies are exactly the paper's), so that
``Z`` and the KL are finite. :func:`energy` gives the paper's formulas without the wall.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from vocoflow.atomic import atomic_open, atomic_write_text
from vocoflow.flows import ActNorm, Normal, Sequential
from vocoflow.flows.vi import PlanarFlow, RadialFlow, VectorIAF
from vocoflow.registry import ClassChoices

__all__ = ["VI_TARGETS", "VI_FLOWS", "Target", "energy", "log_normalizer", "Posterior",
           "build_posterior", "fit", "evaluate", "parse_models", "run_vi"]

WALL, WALL_SCALE = 4.0, 0.4


def _w1(z1):
    return torch.sin(2 * math.pi * z1 / 4)


def _w2(z1):
    return 3 * torch.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)


def _w3(z1):
    return 3 * torch.sigmoid((z1 - 1) / 0.3)


def _u1(z):
    z1 = z[:, 0]
    ring = 0.5 * ((torch.linalg.vector_norm(z, dim=1) - 2) / 0.4) ** 2
    modes = torch.stack([-0.5 * ((z1 - 2) / 0.6) ** 2, -0.5 * ((z1 + 2) / 0.6) ** 2], 1)
    return ring - torch.logsumexp(modes, dim=1)


def _u2(z):
    return 0.5 * ((z[:, 1] - _w1(z[:, 0])) / 0.4) ** 2


def _u3(z):
    z1, z2 = z[:, 0], z[:, 1]
    a = -0.5 * ((z2 - _w1(z1)) / 0.35) ** 2
    b = -0.5 * ((z2 - _w1(z1) + _w2(z1)) / 0.35) ** 2
    return -torch.logsumexp(torch.stack([a, b], 1), dim=1)


def _u4(z):
    z1, z2 = z[:, 0], z[:, 1]
    a = -0.5 * ((z2 - _w1(z1)) / 0.4) ** 2
    b = -0.5 * ((z2 - _w1(z1) + _w3(z1)) / 0.35) ** 2
    return -torch.logsumexp(torch.stack([a, b], 1), dim=1)


_GAUSS_MEAN, _GAUSS_STD = (1.0, -0.5), (0.5, 1.5)


def _gauss(z):
    mean = torch.tensor(_GAUSS_MEAN, dtype=z.dtype)
    std = torch.tensor(_GAUSS_STD, dtype=z.dtype)
    return 0.5 * (((z - mean) / std) ** 2).sum(1)


def _wall(z):
    return 0.5 * (torch.relu(z[:, 0].abs() - WALL) / WALL_SCALE) ** 2


@dataclass(frozen=True)
class Target:
    """An unnormalised 2-D target: ``paper`` is the energy as written in the paper, ``confined``
    whether the wall is added for normalisability; ``box`` is the square ``[-box, box]^2`` that
    holds all but a negligible part of its mass (the grid of :func:`log_normalizer`)."""

    name: str
    paper: Callable[[torch.Tensor], torch.Tensor]
    confined: bool
    box: float = 8.0
    description: str = ""

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        """``U(z)`` of the fitted target, ``(N, 2) -> (N,)`` (the wall included)."""
        u = self.paper(z)
        return u + _wall(z) if self.confined else u


VI_TARGETS = ClassChoices("VI target", default="u1")
VI_TARGETS.register("u1", Target("u1", _u1, False, description="ring with two modes (U1)"))
VI_TARGETS.register("u2", Target("u2", _u2, True, description="sinusoid (U2)"))
VI_TARGETS.register("u3", Target("u3", _u3, True, description="sinusoid split by a bump (U3)"))
VI_TARGETS.register("u4", Target("u4", _u4, True, description="sinusoid split by a step (U4)"))
VI_TARGETS.register("gauss", Target("gauss", _gauss, False, box=12.0,
                                    description=f"Gaussian, mean {_GAUSS_MEAN}, std {_GAUSS_STD}"))


def energy(name: str, z: torch.Tensor) -> torch.Tensor:
    """The paper's energy ``U`` of target ``name`` (no wall) at ``z`` of shape ``(N, 2)``.

    >>> import torch
    >>> round(float(energy("u2", torch.tensor([[1.0, 1.0]]))), 6)   # z2 = w1(z1) = sin(pi/2)
    0.0
    """
    return VI_TARGETS.get(name).cls.paper(z)


@torch.no_grad()
def log_normalizer(target: Target, n: int = 2001, chunk: int = 1 << 20) -> float:
    """``log Z = log int exp(-U)`` by the midpoint rule on an ``n x n`` grid over the target's
    box, in float64 (a log-sum-exp, so no under/overflow).

    >>> t = VI_TARGETS.get("gauss").cls   # Z = 2 pi s1 s2 in closed form
    >>> abs(log_normalizer(t, n=801) - math.log(2 * math.pi * 0.5 * 1.5)) < 1e-9
    True
    """
    h = 2 * target.box / n
    centres = -target.box + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    gx, gy = torch.meshgrid(centres, centres, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    parts = [torch.logsumexp(-target.energy(p), 0) for p in pts.split(chunk)]
    return float(torch.logsumexp(torch.stack(parts), 0)) + 2 * math.log(h)


class Posterior(nn.Module):
    """``q``: a base ``N(0, I)`` pushed through ``transform`` (whose ``forward`` is the
    sampling direction), ``log q(x) = log N(z0) - log|det dx/dz0|``.

    ``sample(n)`` returns ``(x, log q(x))`` from the sampling pass (what the reverse KL needs);
    ``log_prob(x)`` evaluates the density anywhere through the transform's inverse.
    """

    def __init__(self, transform: nn.Module, dim: int = 2):
        super().__init__()
        self.transform = transform
        self.dim = dim
        self.base = Normal()

    def sample(self, n: int, generator: torch.Generator | None = None):
        p = next(self.parameters(), None)
        dtype = p.dtype if p is not None else torch.get_default_dtype()
        z0 = torch.randn((n, self.dim), generator=generator, dtype=dtype)
        x, ld = self.transform(z0)
        return x, self.base.log_prob(z0) - ld

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z0, ld = self.transform.inverse(x)
        return self.base.log_prob(z0) + ld


def _planar(dim, k):
    return [PlanarFlow(dim) for _ in range(k)]


def _radial(dim, k):
    return [RadialFlow(dim) for _ in range(k)]


def _iaf(dim, k):
    return [VectorIAF(dim, reverse=bool(i % 2)) for i in range(k)]


VI_FLOWS = ClassChoices("VI flow", default="planar")
VI_FLOWS.register("planar", _planar)
VI_FLOWS.register("radial", _radial)
VI_FLOWS.register("iaf", _iaf)


def build_posterior(flow: str, length: int, dim: int = 2, base: str = "diagonal") -> Posterior:
    """``length`` steps of ``flow`` (a :data:`VI_FLOWS` name) after the base: ``"diagonal"``
    is a learned ``N(mu, diag sigma^2)`` (an identity-initialised elementwise affine layer),
    ``"standard"`` the fixed ``N(0, I)``.

    >>> q = build_posterior("radial", 4)
    >>> x, log_q = q.sample(3)
    >>> x.shape, log_q.shape
    (torch.Size([3, 2]), torch.Size([3]))
    """
    if not isinstance(length, int) or length < 0:
        raise ValueError(f"flow length must be a non-negative integer, got {length!r}")
    if base not in ("diagonal", "standard"):
        raise ValueError(f"unknown base {base!r} (known: diagonal, standard)")
    layers = []
    if base == "diagonal":
        affine = ActNorm(dim)
        affine.initialized.fill_(True)  # start at N(0, I), no data-dependent initialisation
        layers.append(affine)
    layers += VI_FLOWS.get(flow).cls(dim, length)
    return Posterior(Sequential(*layers), dim)


def _free_energy(q: Posterior, target: Target, n: int, generator=None, beta: float = 1.0):
    """Per-sample ``log q(z) + beta U(z)`` at ``n`` samples of ``q``."""
    x, log_q = q.sample(n, generator)
    return log_q + beta * target.energy(x)


def fit(q: Posterior, target: Target, steps: int, batch: int = 256, lr: float = 5e-3,
        anneal_steps: int = 0, seed: int = 0, progress: bool = False) -> list[float]:
    """Minimise ``E_q[log q + beta_t U]`` with Adam (cosine learning rate) and gradient clipping;
    ``beta_t`` rises linearly from 0.01 to 1 over ``anneal_steps`` (the paper's annealing).
    Returns the per-step ``mean(log q + U)`` (at ``beta = 1``: a ``-ELBO`` estimate)."""
    from tqdm import tqdm

    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(q.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    losses = []
    for step in tqdm(range(steps), desc=f"fitting {target.name}", disable=not progress):
        beta = min(1.0, 0.01 + step / anneal_steps) if anneal_steps > 0 else 1.0
        x, log_q = q.sample(batch, g)
        u = target.energy(x)
        loss = (log_q + beta * u).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(q.parameters(), 10.0)
        opt.step()
        sched.step()
        losses.append(float((log_q + u).mean().detach()))
    return losses


@torch.no_grad()
def evaluate(q: Posterior, target: Target, log_z: float, n: int = 65536, seed: int = 1234) -> dict:
    """Monte-Carlo ``KL(q || p)`` and ``ELBO`` over ``n`` samples, with their standard error."""
    g = torch.Generator().manual_seed(seed)
    f = torch.cat([_free_energy(q, target, m, g) for m in _chunks(n, 16384)])
    mean, se = float(f.mean()), float(f.std() / math.sqrt(f.numel()))
    return {"kl": mean + log_z, "elbo": -mean, "stderr": se, "log_z": log_z, "samples": n}


def _chunks(n, size):
    while n > 0:
        yield min(n, size)
        n -= size


def parse_models(spec: str) -> list[tuple[str, int]]:
    """``"planar:2,radial:8,iaf:4"`` -> ``[("planar", 2), ...]``; ``ValueError`` on a bad item.

    >>> parse_models("planar:2, iaf:4")
    [('planar', 2), ('iaf', 4)]
    """
    out = []
    for item in (s.strip() for s in spec.split(",")):
        name, sep, k = item.partition(":")
        if not sep or not k.strip().isdigit():
            raise ValueError(f"bad model {item!r}: expected FLOW:LENGTH, e.g. planar:8")
        VI_FLOWS.get(name.strip())
        out.append((name.strip(), int(k)))
    return out


@torch.no_grad()
def _density_grid(fn, box: float, n: int) -> torch.Tensor:
    c = torch.linspace(-box, box, n, dtype=torch.float64)
    gx, gy = torch.meshgrid(c, c, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    return torch.cat([fn(p) for p in pts.split(8192)]).reshape(n, n)


def run_vi(out_dir: str | Path, targets: list[str], models: list[tuple[str, int]],
           steps: int = 5000, batch: int = 256, lr: float = 5e-3, anneal_steps: int | None = None,
           base: str = "diagonal", seed: int = 0, eval_samples: int = 65536,
           plot_box: float = 4.0, plot_points: int = 160, progress: bool = True) -> dict:
    """Fit every model to every target; write ``results.json`` and ``densities.png`` (rows:
    targets; columns: the true density then each fitted ``q``, on ``[-plot_box, plot_box]^2``)
    into ``out_dir``. Returns the results. Every name is checked before anything is fitted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tgts = [VI_TARGETS.get(t).cls for t in targets]
    for name, k in models:
        VI_FLOWS.get(name)
        if k < 0:
            raise ValueError(f"flow length must be >= 0, got {name}:{k}")
    if steps < 1 or batch < 1 or eval_samples < 2:
        raise ValueError("steps and batch must be >= 1 and eval_samples >= 2")
    anneal = steps // 5 if anneal_steps is None else anneal_steps
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {"steps": steps, "batch": batch, "lr": lr, "anneal_steps": anneal, "base": base,
               "seed": seed, "eval_samples": eval_samples, "wall": [WALL, WALL_SCALE],
               "targets": {}}
    dens = {}
    for t in tgts:
        log_z = log_normalizer(t)
        entry = {"log_z": log_z, "confined": t.confined, "models": {}}
        dens[(t.name, "true")] = _density_grid(lambda p: torch.exp(-t.energy(p) - log_z),
                                               plot_box, plot_points)
        for name, k in models:
            torch.manual_seed(seed)
            q = build_posterior(name, k, base=base)  # float32 (conv1d's float64 path is slow)
            t0 = time.perf_counter()
            losses = fit(q, t, steps, batch, lr, anneal, seed, progress)
            seconds = time.perf_counter() - t0
            q.eval()
            ev = evaluate(q, t, log_z, eval_samples)
            d = _density_grid(lambda p: q.log_prob(p.float()).double().exp(), plot_box, plot_points)
            dens[(t.name, f"{name}:{k}")] = d
            cell = (2 * plot_box / (plot_points - 1)) ** 2
            ev.update(fit_seconds=round(seconds, 2), parameters=sum(p.numel() for p in q.parameters()),
                      final_loss=sum(losses[-100:]) / len(losses[-100:]),
                      q_mass_in_plot=float(d.sum() * cell))
            entry["models"][f"{name}:{k}"] = ev
        results["targets"][t.name] = entry

    cols = ["true"] + [f"{n}:{k}" for n, k in models]
    fig, axes = plt.subplots(len(tgts), len(cols), figsize=(1.9 * len(cols), 1.9 * len(tgts)),
                             squeeze=False)
    for i, t in enumerate(tgts):
        for j, c in enumerate(cols):
            ax = axes[i][j]
            ax.imshow(dens[(t.name, c)].numpy(), origin="lower", cmap="magma",
                      extent=(-plot_box, plot_box, -plot_box, plot_box))
            ax.set_xticks([])
            ax.set_yticks([])
            if c == "true":
                ax.set_title(f"{t.name} true", fontsize=7)
            else:
                kl = results["targets"][t.name]["models"][c]["kl"]
                ax.set_title(f"{c} KL {kl:.3f}", fontsize=7)
    fig.tight_layout()
    with atomic_open(out / "densities.png", "wb") as f:
        fig.savefig(f, format="png", dpi=70)
    plt.close(fig)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    return results
