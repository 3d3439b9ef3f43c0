"""HiNet-style invertible image hiding: a Haar wavelet front end and invertible hiding blocks
that couple a cover branch and a secret branch.

Pixels enter as floats in ``[0, 1]`` (8-bit values over 255), ``(B, C, H, W)`` with even
``H`` and ``W``; cover and secret have the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vocoflow.atomic import atomic_open
from vocoflow.flows import AdditiveCoupling, AffineCoupling, Sequential
from vocoflow.flows.wavelet import HaarWavelet
from vocoflow.registry import ClassChoices

__all__ = ["HidingBlock", "HidingNetwork", "HidingOutput", "STEGO_MODELS",
           "build_hiding_network", "load_hiding_network"]


class HidingBlock(Sequential):
    """One invertible hiding block of HiNet (Jing et al., 2021, "HiNet: Deep Image Hiding by
    Invertible Network", ICCV), built from the core couplings.

    The input holds the cover branch in channels ``[0, n)`` and the secret branch in
    ``[n, 2n)`` (``n = branch_channels``)::

        cover'  = cover + phi(secret)                              (AdditiveCoupling)
        secret' = secret * exp(rho(cover')) + eta(cover')          (AffineCoupling)

    with ``log exp(rho) = clamp * tanh(h / clamp)`` (the core's ``softclamp`` scale; for
    ``clamp = 2`` this is HiNet's ``exp(clamp * 2 * (sigmoid(h) - 0.5))``). The conditioners are
    zero-initialised :class:`~vocoflow.flows.ConvNet` s, so a new block is the identity.

    >>> import torch
    >>> block = HidingBlock(4, hidden=8)
    >>> x = torch.randn(2, 8, 5, 5)
    >>> y, ld = block(x)
    >>> torch.equal(y, x), ld.tolist()
    (True, [0.0, 0.0])
    """

    def __init__(self, branch_channels: int, hidden: int = 64, n_layers: int = 3,
                 kernel_size: int = 3, clamp: float = 2.0):
        if branch_channels < 1:
            raise ValueError(f"a hiding block needs branch_channels >= 1, got {branch_channels}")
        if hidden < 1 or n_layers < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"a hiding block needs hidden >= 1, n_layers >= 1 and an odd "
                             f"kernel_size, got {hidden}, {n_layers}, {kernel_size}")
        if not clamp > 0:
            raise ValueError(f"clamp must be > 0, got {clamp}")
        c = 2 * branch_channels
        net = {"hidden": hidden, "n_layers": n_layers, "kernel_size": kernel_size, "ndim": 2}
        super().__init__(AdditiveCoupling(c, parity=1, **net),  # the cover moves, the secret is fixed
                         AffineCoupling(c, parity=0, scale="softclamp", clamp=clamp, **net))
        self.branch_channels = branch_channels


@dataclass
class HidingOutput:
    """What one training pass computes (every tensor ``(B, C, H, W)`` unless noted).

    ``container``: the cover branch after the inverse wavelet transform; ``lost``: the secret
    branch ``r`` (wavelet domain, ``(B, 4C, H/2, W/2)``); ``recovered``: the secret revealed
    from the container with ``lost`` replaced by the given noise; ``container_ll`` and
    ``cover_ll``: the LL subbands of the container and of the cover."""

    container: torch.Tensor
    lost: torch.Tensor
    recovered: torch.Tensor
    container_ll: torch.Tensor
    cover_ll: torch.Tensor


class HidingNetwork(nn.Module):
    """HiNet (Jing et al., 2021): hide a secret image in a cover image of the same size.

    Forward (hiding): both images go through :class:`~vocoflow.flows.HaarWavelet`; the
    concatenated subbands pass ``blocks`` :class:`HidingBlock` s; the cover branch, transformed
    back by the inverse wavelet, is the container; the secret branch is the lost information
    ``r``. Backward (revealing): the container's subbands and a sample ``z ~ N(0, I)`` in place
    of ``r`` are run through the blocks in reverse; the secret branch, transformed back, is the
    recovered secret. With the true ``r`` the reveal is exact (the network is a bijection).

    >>> import torch
    >>> net = HidingNetwork(channels=1, blocks=2, hidden=8).double()
    >>> cover, secret = torch.rand(2, 1, 1, 8, 8, dtype=torch.float64)
    >>> container, r = net.hide(cover, secret)
    >>> back, _ = net.reveal(container, r)
    >>> bool((back - secret).abs().max() < 1e-10)
    True
    """

    def __init__(self, channels: int = 1, blocks: int = 8, hidden: int = 64, n_layers: int = 3,
                 kernel_size: int = 3, clamp: float = 2.0):
        super().__init__()
        if channels < 1 or blocks < 1:
            raise ValueError(f"a hiding network needs channels >= 1 and blocks >= 1, got "
                             f"channels={channels}, blocks={blocks}")
        self.channels = int(channels)
        self.config = {"type": "hinet", "channels": self.channels, "blocks": int(blocks),
                       "hidden": int(hidden), "n_layers": int(n_layers),
                       "kernel_size": int(kernel_size), "clamp": float(clamp)}
        self.dwt = HaarWavelet()
        self.flow = Sequential([HidingBlock(4 * self.channels, hidden, n_layers, kernel_size, clamp)
                                for _ in range(blocks)])

    # -- checks -------------------------------------------------------------------------------
    def _check_image(self, x: torch.Tensor, what: str) -> None:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"{what}: expected (B, {self.channels}, H, W), got {tuple(x.shape)}")
        if x.shape[2] % 2 or x.shape[3] % 2:
            raise ValueError(f"{what}: height and width must be even (Haar wavelet), got "
                             f"{x.shape[2]}x{x.shape[3]}")

    def lost_shape(self, image_shape) -> tuple[int, int, int]:
        """The shape of ``r`` (and of the reveal noise) for images of ``(C, H, W)``."""
        c, h, w = image_shape
        return (4 * c, h // 2, w // 2)

    # -- directions ---------------------------------------------------------------------------
    def _hide_wavelet(self, cover, secret):
        self._check_image(cover, "cover")
        self._check_image(secret, "secret")
        if cover.shape != secret.shape:
            raise ValueError(f"cover {tuple(cover.shape)} and secret {tuple(secret.shape)} "
                             "differ in shape")
        cover_w = self.dwt(cover)[0]
        y, _ = self.flow(torch.cat([cover_w, self.dwt(secret)[0]], dim=1))
        n = 4 * self.channels
        return y[:, :n], y[:, n:], cover_w

    def _reveal_wavelet(self, container_w, lost):
        if lost.shape != container_w.shape:
            raise ValueError(f"r of shape {tuple(lost.shape)} does not match the container's "
                             f"subbands {tuple(container_w.shape)}")
        x, _ = self.flow.inverse(torch.cat([container_w, lost], dim=1))
        n = 4 * self.channels
        return self.dwt.inverse(x[:, n:])[0], self.dwt.inverse(x[:, :n])[0]

    def hide(self, cover: torch.Tensor, secret: torch.Tensor):
        """``(container, r)``: the container image and the lost information."""
        container_w, lost, _ = self._hide_wavelet(cover, secret)
        return self.dwt.inverse(container_w)[0], lost

    def reveal(self, container: torch.Tensor, lost: torch.Tensor | None = None,
               generator: torch.Generator | None = None):
        """``(secret, cover)`` recovered from ``container``; ``lost`` is ``r`` (exact reveal) or,
        when ``None``, a sample of ``N(0, I)`` drawn with ``generator`` (HiNet's reveal)."""
        self._check_image(container, "container")
        container_w = self.dwt(container)[0]
        if lost is None:
            lost = torch.randn(container_w.shape, generator=generator, dtype=container_w.dtype,
                               device="cpu" if generator is None else generator.device)
            lost = lost.to(container_w.device)
        return self._reveal_wavelet(container_w, lost)

    def forward(self, cover: torch.Tensor, secret: torch.Tensor, noise: torch.Tensor) -> HidingOutput:
        """One training pass: hide, then reveal from the (unquantised) container with ``noise``
        (``N(0, I)`` of ``r``'s shape) in place of ``r``."""
        container_w, lost, cover_w = self._hide_wavelet(cover, secret)
        recovered, _ = self._reveal_wavelet(container_w, noise)
        c = self.channels
        return HidingOutput(self.dwt.inverse(container_w)[0], lost, recovered,
                            container_w[:, :c], cover_w[:, :c])

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """One file with the config and the weights (tensors only), written atomically."""
        with atomic_open(path, "wb") as f:
            torch.save({"config": dict(self.config), "state_dict": self.state_dict()}, f)


STEGO_MODELS = ClassChoices("steganography model type", default="hinet")
STEGO_MODELS.register("hinet", HidingNetwork, task="stego")


def build_hiding_network(config: dict) -> HidingNetwork:
    """A hiding network from a ``model:`` section (``type`` chooses the registered class)."""
    cfg = dict(config or {})
    choice = STEGO_MODELS.get(cfg.pop("type", None))
    import inspect

    allowed = set(inspect.signature(choice.cls).parameters)
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        raise ValueError(f"model: unknown option(s) {unknown} for {choice.name} "
                         f"(known: {sorted(allowed)})")
    return choice.cls(**cfg)


def load_hiding_network(path: str | Path, map_location="cpu") -> HidingNetwork:
    """Load a model written by :meth:`HidingNetwork.save` (a file, or a directory with
    model.pt); nothing but tensors and plain containers is unpickled."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    blob = torch.load(str(path), map_location=map_location, weights_only=True)
    if not isinstance(blob, dict) or "config" not in blob or "state_dict" not in blob:
        raise ValueError(f"{path}: not a hiding network (no config/state_dict)")
    model = build_hiding_network(blob["config"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model
