"""Vocoders: flows plus the mel front end they were trained with.

* :class:`WaveGlow` / :class:`WaveGlowConfig` (Prenger et al., 2019)
* :class:`IAFStudent` (Parallel WaveNet / ClariNet students), :class:`WaveNetTeacher`
* configs: :func:`load_config`, :func:`build_model`, :func:`features_from_config`
* saved vocoders: :func:`save_vocoder`, :func:`load`, :class:`Vocoder`, :class:`VocoderError`
* synthesis helpers: :class:`Denoiser`, :func:`chunked_infer`
"""

from .config import build_model, features_from_config, load_config, model_config_from
from .saved import FORMAT, VERSION, Vocoder, VocoderError, load, noise_for, save_vocoder
from .synthesis import Denoiser, chunked_infer, looks_normalized, snr_db
from .waveglow import COUPLINGS, WaveGlow, WaveGlowConfig, bf16_conditioners
from .student import ChainMap, IAFStudent, StudentConfig
from .teacher import WaveNetTeacher, WaveNetTeacherConfig

__all__ = [
    "WaveGlow", "WaveGlowConfig", "COUPLINGS", "bf16_conditioners",
    "IAFStudent", "StudentConfig", "ChainMap", "WaveNetTeacher", "WaveNetTeacherConfig",
    "load_config", "build_model", "features_from_config", "model_config_from",
    "save_vocoder", "load", "Vocoder", "VocoderError", "FORMAT", "VERSION", "noise_for",
    "Denoiser", "chunked_infer", "looks_normalized", "snr_db",
]
