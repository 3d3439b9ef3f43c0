"""Loading vocoders the way the ecosystem does: Hugging Face Hub repositories and TTS pipelines.

* :func:`resolve_pretrained` turns what ``Vocoder.from_pretrained`` is given into a local
  vocoder directory: an existing directory as is, otherwise a Hub repo id (``org/name``) fetched
  with ``huggingface_hub.snapshot_download`` into (or found in) the local Hub cache. The usual
  ``huggingface_hub`` settings apply: ``HF_HUB_CACHE`` / ``HF_HOME`` (where the cache is),
  ``HF_HUB_OFFLINE=1`` (cache only, no network), ``HF_TOKEN``; ``revision`` selects a branch,
  tag or commit.
* :class:`TTSVocoder` is the object to hand to a TTS pipeline as its vocoder: called on a mel
  it returns the waveform, like the vocoder argument of ESPnet2's ``Text2Speech``
  (``vocoder(feat_gen)`` with ``feat_gen`` of shape ``(frames, n_mels)``, and ``.fs``), and
  its :meth:`TTSVocoder.inference` follows Coqui TTS vocoders (``(B, n_mels, frames)`` in,
  ``(B, 1, samples)`` out).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from .checkpoint import VocoderError

__all__ = ["resolve_pretrained", "looks_like_repo_id", "TTSVocoder"]

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def looks_like_repo_id(name: str) -> bool:
    """Whether ``name`` has the form of a Hub repo id, ``owner/name`` (no other slashes).

    >>> looks_like_repo_id("org/voc-1"), looks_like_repo_id("exp/run/model"), looks_like_repo_id("./x")
    (True, False, False)
    """
    return bool(_REPO_ID.match(name)) and ".." not in name


def resolve_pretrained(name_or_path, revision: str | None = None, cache_dir=None,
                       token: str | bool | None = None) -> Path:
    """The local vocoder directory for a path or a Hub repo id.

    An existing local directory is returned as is (``revision`` must then be ``None``). A repo id
    is looked up with ``huggingface_hub.snapshot_download`` (the local cache first when
    ``HF_HUB_OFFLINE=1``). Raises :class:`VocoderError` naming the path or repo when neither works.
    """
    if isinstance(name_or_path, os.PathLike) or Path(str(name_or_path)).exists():
        path = Path(name_or_path)
        if revision is not None:
            raise VocoderError(f"{path}: revision={revision!r} applies to Hub repos, not to a local "
                               f"directory")
        return path
    name = str(name_or_path)
    if not looks_like_repo_id(name):
        raise VocoderError(f"{name}: no such vocoder directory (and not a Hugging Face Hub repo id "
                           f"of the form owner/name)")
    try:
        import huggingface_hub
        from huggingface_hub import constants
        from huggingface_hub import errors as hub_errors
    except ImportError:  # pragma: no cover - a dependency of vocoflow
        raise VocoderError(f"{name}: no such directory; loading Hub repos needs huggingface_hub "
                           f"(pip install huggingface_hub)") from None
    rev = f" at revision {revision!r}" if revision else ""
    try:
        local = huggingface_hub.snapshot_download(name, revision=revision, cache_dir=cache_dir,
                                                  token=token)
    except hub_errors.LocalEntryNotFoundError:
        offline = constants.HF_HUB_OFFLINE
        where = constants.HF_HUB_CACHE if cache_dir is None else cache_dir
        why = "offline mode (HF_HUB_OFFLINE=1) is on and " if offline else ""
        raise VocoderError(f"Hub repo {name}{rev}: not found: {why}the local cache {where} has no "
                           f"snapshot of it") from None
    except hub_errors.RevisionNotFoundError:
        raise VocoderError(f"Hub repo {name}: no revision {revision!r}") from None
    except hub_errors.RepositoryNotFoundError:
        raise VocoderError(f"Hub repo {name}: no such repository (or it is private: log in or "
                           f"pass token=...)") from None
    except (hub_errors.HfHubHTTPError, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise VocoderError(f"Hub repo {name}{rev}: cannot download it ({first})") from None
    return Path(local)


class TTSVocoder:
    """A vocoflow vocoder as the vocoder stage of a TTS pipeline (ESPnet2 / Coqui style).

    ``TTSVocoder(source)`` loads ``source`` (a :class:`~vocoflow.vocoders.Vocoder`, a vocoder
    directory or a Hub repo id). Calling it on a mel returns the waveform::

        voc = TTSVocoder("exp/train/model")
        wav = voc(mel)            # mel (frames, n_mels) -> wav (frames * hop,), float32 in [-1, 1]

    Orientation: ``__call__`` takes ``(frames, n_mels)``, the layout ESPnet2's ``Text2Speech``
    hands its ``vocoder`` (``feat_gen`` / ``feat_gen_denorm``). A mel ``(n_mels, frames)`` is
    accepted too when it is unambiguous (its last axis is not ``n_mels``); a square one is read
    as ``(frames, n_mels)``. :meth:`inference` takes ``(B, n_mels, frames)`` (or
    ``(n_mels, frames)``) and returns ``(B, 1, samples)``, like Coqui TTS vocoder models.

    The mel must be the vocoder's own features (the front end in its ``config.yaml``: same
    sample rate, hop, mel bins, log base and floor): raw log-mel, or normalised with the
    vocoder's statistics with ``normalized=True`` (ESPnet: ``prefer_normalized_feats`` with a
    TTS trained on the same statistics). ``fs`` is the sample rate (read by ``Text2Speech.fs``).
    ``sigma`` / ``denoise`` / ``chunk_frames`` are passed to
    :meth:`~vocoflow.vocoders.Vocoder.synthesize`; ``seed`` fixes the latent noise of every call.
    """

    def __init__(self, source, *, device="cpu", dtype: torch.dtype = torch.float32,
                 normalized: bool = False, sigma: float | None = None, denoise: float | None = None,
                 chunk_frames: int | None = None, seed: int | None = None, check: bool = True,
                 revision: str | None = None):
        from .api import Vocoder

        if isinstance(source, Vocoder):
            self.vocoder = source
        else:
            self.vocoder = Vocoder.from_pretrained(source, device=device, dtype=dtype, revision=revision)
        self.normalized = normalized
        self.sigma = sigma
        self.denoise = denoise
        self.chunk_frames = chunk_frames
        self.seed = seed
        self.check = check

    @property
    def fs(self) -> int:
        """The sample rate of the waveforms (ESPnet's name for it)."""
        return self.vocoder.sample_rate

    sample_rate = fs

    @property
    def n_mels(self) -> int:
        return self.vocoder.n_mels

    @property
    def hop_length(self) -> int:
        return self.vocoder.hop_length

    def _as_tensor(self, mel) -> torch.Tensor:
        if isinstance(mel, torch.Tensor):
            return mel.detach()
        return torch.from_numpy(np.array(mel, dtype=np.float32))

    def _generator(self):
        return None if self.seed is None else torch.Generator().manual_seed(int(self.seed))

    def _synthesize(self, x: torch.Tensor) -> torch.Tensor:
        return self.vocoder.synthesize(x, sigma=self.sigma, denoise=self.denoise,
                                       chunk_frames=self.chunk_frames, generator=self._generator(),
                                       normalized=self.normalized, check=self.check)

    def __call__(self, mel) -> torch.Tensor:
        """Waveform ``(frames * hop,)`` for a mel ``(frames, n_mels)`` (see the class notes)."""
        x = self._as_tensor(mel)
        if x.dim() != 2:
            raise VocoderError(f"TTSVocoder: mel must be 2-D (frames, n_mels), got shape "
                               f"{tuple(x.shape)} (batches: use inference())")
        n = self.n_mels
        if x.shape[1] == n:
            x = x.T
        elif x.shape[0] != n:
            raise VocoderError(f"TTSVocoder: mel of shape {tuple(x.shape)} has no axis of "
                               f"n_mels={n} bins (expected (frames, {n}))")
        return self._synthesize(x)

    def inference(self, mel) -> torch.Tensor:
        """Coqui-style: ``(B, n_mels, frames)`` or ``(n_mels, frames)`` -> ``(B, 1, samples)``."""
        x = self._as_tensor(mel)
        if x.dim() == 2:
            x = x[None]
        if x.dim() != 3 or x.shape[1] != self.n_mels:
            raise VocoderError(f"TTSVocoder.inference: mel must be (B, {self.n_mels}, frames), got "
                               f"shape {tuple(x.shape)}")
        return self._synthesize(x)[:, None, :]

    def __repr__(self) -> str:
        return f"TTSVocoder({self.vocoder!r})"
