"""Vocoders: flows plus the mel front end they were trained with.

* models (:data:`VOCODER_MODELS`, the ``model.type`` registry): :class:`WaveGlow` /
  :class:`WaveGlowConfig` (Prenger et al., 2019), :class:`IAFStudent` (Parallel WaveNet /
  ClariNet students), :class:`WaveNetTeacher`; their configs derive from :class:`MelModelConfig`
* model configs (:mod:`~vocoflow.vocoders.config`): :func:`load_model_config` (also
  ``load_config``), :func:`build_model`, :func:`features_from_config`
* saved vocoder directories (:mod:`~vocoflow.vocoders.checkpoint`): :func:`save_vocoder`,
  :func:`read_vocoder_dir`, :class:`VocoderError`
* the synthesis API (:mod:`~vocoflow.vocoders.api`): :func:`load`, :class:`Vocoder`
* synthesis helpers: :class:`Denoiser`, :func:`chunked_infer`
"""

from .api import Vocoder, load, noise_for
from .base import MelModelConfig, MelModelMixin
from .checkpoint import FORMAT, VERSION, SavedVocoder, VocoderError, read_vocoder_dir, save_vocoder
from .config import (
    build_model,
    features_from_config,
    load_config,
    load_model_config,
    model_config_from,
    model_type,
)
from .models import VOCODER_MODELS
from .student import IAFStudent, StudentConfig
from .synthesis import Denoiser, chunked_infer, looks_normalized, snr_db
from .teacher import WaveNetTeacher, WaveNetTeacherConfig
from .waveglow import COUPLINGS, WaveGlow, WaveGlowConfig, bf16_conditioners

__all__ = [
    "WaveGlow", "WaveGlowConfig", "COUPLINGS", "bf16_conditioners",
    "IAFStudent", "StudentConfig", "WaveNetTeacher", "WaveNetTeacherConfig",
    "MelModelConfig", "MelModelMixin", "VOCODER_MODELS",
    "load_model_config", "load_config", "build_model", "features_from_config",
    "model_config_from", "model_type",
    "save_vocoder", "read_vocoder_dir", "SavedVocoder", "load", "Vocoder", "VocoderError",
    "FORMAT", "VERSION", "noise_for",
    "Denoiser", "chunked_infer", "looks_normalized", "snr_db",
]
