"""Mel features: parity with librosa per preset, the frame/sample alignment rule, MelConfig I/O."""

import librosa
import numpy as np
import pytest
import torch
import yaml

from data_fixtures import chirp_noise
from vocoflow.audio import MelConfig, MelSpectrogram, align, get_preset, list_presets
from vocoflow.audio.mel import PRESETS

PRESET_NAMES = ["waveglow", "pwg", "asterisk16k"]


def librosa_logmel(y: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """The documented rule computed with librosa in float64: trim to a multiple of the hop,
    pad (n_fft - hop)/2 each side (centred grid: no trim, n_fft/2 each side), center=False STFT,
    mel filterbank, clamp, log."""
    hop = cfg.hop_length
    y = np.asarray(y, dtype=np.float64)
    if cfg.center:
        left = right = cfg.n_fft // 2
    else:
        y = y[: len(y) // hop * hop]
        left, right = (cfg.n_fft - hop) // 2, cfg.n_fft - hop - (cfg.n_fft - hop) // 2
    y = np.pad(y, (left, right), mode=cfg.pad_mode if cfg.pad_mode != "replicate" else "edge")
    mel = librosa.feature.melspectrogram(
        y=y, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=hop, win_length=cfg.win_length,
        window=cfg.window, center=False, power=cfg.power, n_mels=cfg.n_mels, fmin=cfg.fmin,
        fmax=cfg.f_max, htk=cfg.mel_scale == "htk", norm=cfg.norm, dtype=np.float64,
    )
    mel = np.maximum(mel, cfg.clamp)
    return {"ln": np.log, "log10": np.log10, "none": lambda m: m}[cfg.log](mel)


def numpy_logmel(y: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """Same rule with an explicit numpy STFT (framing + periodic window + rfft)."""
    hop, n_fft, win = cfg.hop_length, cfg.n_fft, cfg.win_length
    y = np.asarray(y, dtype=np.float64)[: len(y) // hop * hop]
    y = np.pad(y, cfg.pad, mode="reflect")
    n_frames = 1 + (len(y) - n_fft) // hop
    window = np.zeros(n_fft)
    off = (n_fft - win) // 2
    window[off : off + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    frames = np.stack([y[t * hop : t * hop + n_fft] * window for t in range(n_frames)], axis=1)
    spec = np.abs(np.fft.rfft(frames, axis=0)) ** cfg.power
    basis = librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.f_max,
        htk=cfg.mel_scale == "htk", norm=cfg.norm, dtype=np.float64,
    )
    mel = np.maximum(basis @ spec, cfg.clamp)
    return np.log(mel) if cfg.log == "ln" else np.log10(mel)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_parity_with_librosa_float64(name):
    cfg = get_preset(name)
    y = chirp_noise(cfg.sample_rate, 1.3, seed=1)
    y = y[: len(y) - 77]  # not a multiple of the hop: the extractor trims
    ours = MelSpectrogram(cfg).double()(torch.from_numpy(y)).numpy()
    ref = librosa_logmel(y, cfg)
    assert ours.shape == ref.shape == (cfg.n_mels, len(y) // cfg.hop_length + int(cfg.center))
    assert np.max(np.abs(ours - ref)) <= 1e-4


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_parity_float32(name):
    """float32 (the default) against librosa on the same float32 input, computed in float64:
    within 1e-4 too, for a broadband signal whose mel energies stay well above the clamp floor
    (at the floor itself float32 rounding of a tiny energy can be a large log error)."""
    cfg = get_preset(name)
    y = chirp_noise(cfg.sample_rate, 1.0, seed=2).astype(np.float32)
    ours = MelSpectrogram(cfg)(torch.from_numpy(y)).numpy().astype(np.float64)
    ref = librosa_logmel(y, cfg)
    assert ref.min() > cfg.log_floor + 1.0
    assert np.max(np.abs(ours - ref)) <= 1e-4


def test_librosa_and_numpy_references_agree():
    cfg = get_preset("waveglow")
    y = chirp_noise(cfg.sample_rate, 0.5, seed=3)
    assert np.max(np.abs(librosa_logmel(y, cfg) - numpy_logmel(y, cfg))) <= 1e-8


@pytest.mark.parametrize(
    "changes",
    [
        {"mel_scale": "htk", "norm": None, "power": 2.0},
        {"win_length": 800, "n_fft": 1024, "hop_length": 200, "fmax": None},
        {"window": "hamming", "n_mels": 64, "fmin": 50.0},
    ],
)
def test_parity_other_configurations(changes):
    cfg = get_preset("asterisk16k").replace(**changes)
    y = chirp_noise(cfg.sample_rate, 0.8, seed=4)
    ours = MelSpectrogram(cfg).double()(torch.from_numpy(y)).numpy()
    assert np.max(np.abs(ours - librosa_logmel(y, cfg))) <= 1e-4


def test_presets_documented_values():
    wg, pwg, ast = (get_preset(n) for n in PRESET_NAMES)
    assert (wg.sample_rate, wg.n_fft, wg.hop_length, wg.win_length, wg.n_mels) == (22050, 1024, 256, 1024, 80)
    assert (wg.fmin, wg.fmax, wg.mel_scale, wg.norm, wg.power, wg.log, wg.clamp) == (0.0, 8000.0, "slaney", "slaney",
                                                                                     1.0, "ln", 1e-5)
    assert (pwg.fmin, pwg.fmax, pwg.log, pwg.clamp, pwg.n_fft, pwg.hop_length, pwg.n_mels) == (80.0, 7600.0, "log10",
                                                                                               1e-10, 1024, 256, 80)
    assert (ast.sample_rate, ast.fmax, ast.log, ast.clamp) == (16000, 8000.0, "ln", 1e-5)
    assert set(PRESET_NAMES) <= set(list_presets())
    with pytest.raises(ValueError, match="unknown feature preset"):
        get_preset("nope")


@pytest.mark.parametrize("n", [256, 257, 511, 1000, 16000, 16001])
def test_frames_times_hop_equals_aligned_samples(n):
    cfg = get_preset("asterisk16k")
    mel = MelSpectrogram(cfg)
    x = torch.randn(n) * 0.1
    if n // 256 * 256 <= 384:  # shorter than the reflection pad
        with pytest.raises(ValueError, match="too short"):
            mel(x)
        return
    out = mel(x)
    a = align(x, cfg.hop_length)
    assert out.shape[-1] * cfg.hop_length == a.shape[-1] == n // 256 * 256
    assert torch.equal(out, mel(a))


def test_segments_of_mel_match_segments_of_audio():
    """Frame t depends only on samples around [t*hop, (t+1)*hop): the mel of an interior audio
    segment equals the same frames of the whole utterance's mel (away from the edges)."""
    cfg = get_preset("asterisk16k")
    hop, (left, _) = cfg.hop_length, cfg.pad
    mel = MelSpectrogram(cfg).double()
    y = torch.from_numpy(chirp_noise(16000, 1.0, seed=5))
    full = mel(y)
    f0, nf = 10, 20
    ctx = -(-left // hop)  # frames of context so the segment's own padding is not used
    seg = y[(f0 - ctx) * hop : (f0 + nf + ctx) * hop]
    part = mel(seg)[:, ctx : ctx + nf]
    assert torch.allclose(part, full[:, f0 : f0 + nf], atol=1e-9)
    # and the frame centre is the centre of its hop
    assert left + hop // 2 == cfg.n_fft // 2


def test_independent_of_default_dtype():
    """Buffers are built in float64 and stored as float32 whatever torch's default dtype."""
    x = torch.from_numpy(chirp_noise(16000, 0.5, seed=6).astype(np.float32))
    ref = MelSpectrogram("asterisk16k")(x)
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        mel = MelSpectrogram("asterisk16k")
        out = mel(x)
    finally:
        torch.set_default_dtype(saved)
    assert mel.mel_basis.dtype == torch.float32 and out.dtype == torch.float32
    assert torch.equal(out, ref)


def test_batched_equals_single():
    mel = MelSpectrogram("pwg")
    x = torch.randn(3, 5000) * 0.2
    batch = mel(x)
    assert batch.shape == (3, 80, 1 + 5000 // 256)  # pwg: centred grid
    for i in range(3):
        assert torch.allclose(batch[i], mel(x[i]), atol=1e-5)


def test_align_helper():
    x = np.arange(10)
    assert align(x, 4).tolist() == list(range(8))
    assert align(x, 4, mode="pad").tolist() == list(range(10)) + [0, 0]
    assert align(torch.ones(2, 8), 4).shape == (2, 8)
    with pytest.raises(ValueError):
        align(x, 4, mode="other")


def test_config_dict_and_yaml_round_trip(tmp_path):
    for name, cfg in PRESETS.items():
        assert MelConfig.from_dict(cfg.to_dict()) == cfg
        text = cfg.to_yaml()
        assert MelConfig.from_yaml(text) == cfg
        assert yaml.safe_load(text) == cfg.to_dict()  # any YAML reader gets the same values
        assert MelConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
        cfg.save(tmp_path / f"{name}.yaml")
        assert MelConfig.load(tmp_path / f"{name}.yaml") == cfg
    hand = "# mine\npreset: pwg   # start from pwg\nsample_rate: 24000\nclamp: 1e-10\nfmax: ~\n"
    cfg = MelConfig.from_yaml(hand)
    assert (cfg.sample_rate, cfg.fmin, cfg.fmax, cfg.clamp) == (24000, 80.0, None, 1e-10)


def test_config_errors():
    with pytest.raises(ValueError, match="unknown MelConfig field"):
        MelConfig.from_dict({"sample_rate": 16000, "n_mel": 80})
    with pytest.raises(ValueError, match="fmax"):
        MelConfig(sample_rate=16000, fmax=9000.0)
    with pytest.raises(ValueError, match="win_length"):
        MelConfig(n_fft=512, win_length=1024)
    with pytest.raises(ValueError, match="nested"):
        MelConfig.from_yaml("a:\n  b: 1\n", name="x.yaml")
    with pytest.raises(ValueError, match=r"x\.yaml:2"):
        MelConfig.from_yaml("n_mels: 80\nnot a pair\n", name="x.yaml")
    with pytest.raises(ValueError, match=r"x\.yaml:3: duplicate key 'n_mels'"):
        MelConfig.from_yaml("n_mels: 80\nhop_length: 256\nn_mels: 64\n", name="x.yaml")
    with pytest.raises(ValueError, match=r"x\.yaml: unknown MelConfig field"):
        MelConfig.from_yaml("n_mel: 80\n", name="x.yaml")
    with pytest.raises(ValueError, match=r"x\.yaml: MelConfig.center must be true or false"):
        MelConfig.from_yaml("center: 1\n", name="x.yaml")
    with pytest.raises(ValueError, match=r"x\.yaml:1: expected a mapping"):
        MelConfig.from_yaml("- 1\n- 2\n", name="x.yaml")


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_files_match_presets(name):
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "configs", "features", f"{name}.yaml")
    assert MelConfig.load(path) == get_preset(name)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_configs = st.builds(
    lambda preset, sr, n_mels, fmin, clamp, center, eps, log: get_preset(preset).replace(
        sample_rate=sr, n_mels=n_mels, fmin=fmin, clamp=clamp, center=center, magnitude_eps=eps, log=log),
    st.sampled_from(list_presets()), st.sampled_from([16000, 22050, 24000]), st.integers(1, 128),
    st.floats(0.0, 70.0), st.floats(1e-12, 1.0), st.booleans(), st.sampled_from([0.0, 1e-9, 0.5]),
    st.sampled_from(["ln", "log10", "none"]),
)


@settings(max_examples=60, deadline=None)
@given(_configs)
def test_config_yaml_round_trip_through_pyyaml(cfg):
    text = cfg.to_yaml()
    assert MelConfig.from_yaml(text) == cfg
    assert MelConfig.from_dict(yaml.safe_load(text)) == cfg


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40000), st.sampled_from([64, 100, 256, 300]))
def test_align_gives_whole_frames(n, hop):
    x = np.zeros(n)
    assert len(align(x, hop)) == n // hop * hop
    assert len(align(x, hop, mode="pad")) == -(-n // hop) * hop
