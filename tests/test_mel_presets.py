"""The tacotron2, pwg and hifigan presets, frame for frame, against independent computations of
each project's front end (librosa STFT with that project's padding, librosa's slaney filterbank,
that project's magnitude, floor and log), and the centred grid through the dump and dataset."""

import librosa
import numpy as np
import pytest
import torch

from data_fixtures import chirp_noise
from vocoflow.audio import MelConfig, MelSpectrogram, get_preset

SR = 22050


def tacotron2_reference(y):
    """NVIDIA Tacotron 2 ``TacotronSTFT.mel_spectrogram``: reflect pad of filter_length/2 on both
    sides, periodic hann of 1024, hop 256, magnitude, slaney mel 0-8000 Hz, ln(clamp(x, 1e-5))."""
    padded = np.pad(np.asarray(y, np.float64), (512, 512), mode="reflect")
    spec = np.abs(librosa.stft(padded, n_fft=1024, hop_length=256, win_length=1024, window="hann",
                               center=False))
    basis = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0, dtype=np.float64)
    return np.log(np.maximum(basis @ spec, 1e-5))


def pwg_reference(y):
    """ParallelWaveGAN ``logmelfilterbank`` (LJSpeech config): librosa.stft centred with reflect
    padding, fft 1024 / hop 256 / hann 1024, magnitude, mel 80-7600 Hz, log10(max(1e-10, mel))."""
    spec = np.abs(librosa.stft(np.asarray(y, np.float64), n_fft=1024, hop_length=256, win_length=1024,
                               window="hann", center=True, pad_mode="reflect"))
    basis = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=80, fmin=80.0, fmax=7600.0, dtype=np.float64)
    return np.log10(np.maximum(1e-10, basis @ spec))


def hifigan_reference(y):
    """HiFi-GAN ``mel_spectrogram``: reflect pad of (n_fft - hop)/2 on both sides, STFT without
    centring, sqrt(|X|^2 + 1e-9), slaney mel 0-8000 Hz, ln(clamp(x, 1e-5))."""
    padded = np.pad(np.asarray(y, np.float64), (384, 384), mode="reflect")
    stft = librosa.stft(padded, n_fft=1024, hop_length=256, win_length=1024, window="hann", center=False)
    spec = np.sqrt(stft.real ** 2 + stft.imag ** 2 + 1e-9)
    basis = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=80, fmin=0.0, fmax=8000.0, dtype=np.float64)
    return np.log(np.maximum(basis @ spec, 1e-5))


REFERENCES = {"tacotron2": tacotron2_reference, "pwg": pwg_reference, "hifigan": hifigan_reference}
# the frame count each project gets from T samples (hop 256)
FRAMES = {"tacotron2": lambda t: 1 + t // 256, "pwg": lambda t: 1 + t // 256, "hifigan": lambda t: t // 256}


def ours(name, y, double=True):
    mel = MelSpectrogram(name)
    mel = mel.double() if double else mel
    return mel(torch.from_numpy(np.asarray(y, np.float64 if double else np.float32))).numpy()


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("length", [22050, 22050 - 77, 6 * 256])
def test_preset_matches_its_project_frame_for_frame(name, length):
    y = chirp_noise(SR, 1.0, seed=11)[:length] * 0.8
    ref = REFERENCES[name](y)
    got = ours(name, y)
    assert got.shape == (80, FRAMES[name](length))
    if name == "hifigan" and length % 256:
        # vocoflow's non-centred grid takes the hop-aligned part: same count, the last two frames
        # (whose windows reach past the cut) differ
        assert ref.shape == got.shape
        ref, got = ref[:, :-2], got[:, :-2]
    assert ref.shape == got.shape
    assert np.max(np.abs(got - ref)) <= 1e-5  # float32-stored filterbank


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_preset_float32_within_1e4(name):
    y = chirp_noise(SR, 0.7, seed=12).astype(np.float32)
    y = y[: len(y) // 256 * 256]
    assert np.max(np.abs(ours(name, y, double=False) - REFERENCES[name](y))) <= 1e-4


@pytest.mark.parametrize("name", ["tacotron2", "pwg", "hifigan", "waveglow", "asterisk16k"])
@pytest.mark.parametrize("length", [600, 1023, 1024, 1025, 5000, 16000])
def test_num_frames_is_the_extractor_frame_count(name, length):
    cfg = get_preset(name)
    expected = length // 256 + (1 if cfg.center else 0)
    assert cfg.num_frames(length) == expected
    assert MelSpectrogram(cfg)(torch.randn(length) * 0.1).shape == (80, expected)
    assert cfg.num_samples(expected) == expected * 256 and cfg.segment_frames(length) == length // 256


def test_presets_values():
    t, p, h = get_preset("tacotron2"), get_preset("pwg"), get_preset("hifigan")
    for cfg in (t, p, h):
        assert (cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.win_length, cfg.n_mels) == (SR, 1024, 256, 1024, 80)
    assert (t.center, t.fmin, t.fmax, t.log, t.clamp, t.magnitude_eps) == (True, 0.0, 8000.0, "ln", 1e-5, 0.0)
    assert (p.center, p.fmin, p.fmax, p.log, p.clamp) == (True, 80.0, 7600.0, "log10", 1e-10)
    assert (h.center, h.fmin, h.fmax, h.log, h.clamp, h.magnitude_eps) == (False, 0.0, 8000.0, "ln", 1e-5, 1e-9)
    assert t.pad == (512, 512) and h.pad == (384, 384)
    assert MelConfig.from_dict({"preset": "waveglow"}).center is False


def test_fit_audio_pads_with_the_last_sample_or_cuts():
    cfg = get_preset("pwg")
    x = np.arange(1, 601, dtype=np.int16)
    out = cfg.fit_audio(x, cfg.num_frames(len(x)))  # 3 frames: 768 samples
    assert len(out) == 768 and (out[:600] == x).all() and (out[600:] == 600).all()
    assert cfg.fit_audio(x, 2).tolist() == x[:512].tolist()
    t = cfg.fit_audio(torch.ones(2, 300), 2)
    assert t.shape == (2, 512) and bool((t == 1).all())


def test_centred_dump_and_dataset(tmp_path):
    """A dump made with the centred pwg preset: 1 + T // hop frames per utterance, the stored
    audio is frames * hop samples (the waveform, then its last sample repeated), the features are
    those of the whole waveform, and the dataset's segments pair frame f with samples
    [f * hop, (f + 1) * hop)."""
    import soundfile as sf

    from vocoflow.audio import AudioMelDataset
    from vocoflow.audio.dump import preprocess, read_utt2num_frames
    from vocoflow.audio.io import from_int16, to_int16

    data = tmp_path / "data"
    data.mkdir()
    lengths = {"a": 6000, "b": 7777}
    waves = {}
    for i, (u, n) in enumerate(lengths.items()):
        y = chirp_noise(SR, 1.0, seed=20 + i)[:n] * 0.5
        sf.write(data / f"{u}.wav", y, SR, subtype="PCM_16")
        waves[u] = sf.read(data / f"{u}.wav", dtype="float32")[0]
    (data / "wav.scp").write_text("".join(f"{u} {data / u}.wav\n" for u in lengths))
    dump = tmp_path / "dump"
    preprocess(str(data), str(dump), get_preset("pwg"), n_jobs=1)
    frames = read_utt2num_frames(dump / "utt2num_frames")
    assert frames == {u: 1 + n // 256 for u, n in lengths.items()}
    ds = AudioMelDataset(str(dump))
    for u, n in lengths.items():
        audio, mel = ds.load(u)
        assert mel.shape == (1 + n // 256, 80) and len(audio) == mel.shape[0] * 256
        pcm = from_int16(to_int16(waves[u]))
        assert np.array_equal(audio[:n], pcm) and (audio[n:] == pcm[-1]).all()
        assert np.max(np.abs(mel.T - pwg_reference(pcm))) <= 1e-4
    seg = AudioMelDataset(str(dump), segment_length=1024)
    item = seg[0]
    assert item["audio"].shape == (1024,) and item["mel"].shape == (80, 4)
    audio, mel = seg.load(seg.utt_ids[0])
    full = torch.from_numpy(mel.T.copy())
    starts = [f for f in range(full.shape[1] - 3) if torch.equal(full[:, f:f + 4], item["mel"])]
    assert len(starts) == 1
    assert np.array_equal(item["audio"].numpy(), audio[starts[0] * 256:(starts[0] + 4) * 256])
    # a vocoder takes the centred dump's pairs as they are: its upsampler makes frames * hop
    # samples, the stored audio's length
    from vocoflow.vocoders.waveglow import WaveGlow

    torch.manual_seed(0)
    voc = WaveGlow(n_mels=80, hop_length=256, n_group=8, n_flows=2, n_early_every=1, n_early_size=2,
                   wn_layers=2, wn_channels=8)
    a, m = torch.from_numpy(audio)[None], torch.from_numpy(mel.T.copy())[None]
    with torch.no_grad():
        assert torch.isfinite(voc.log_prob(a, m)).all()
        assert voc.infer(m).shape == (1, get_preset("pwg").num_samples(m.shape[-1])) == a.shape


@pytest.mark.parametrize("name, shortest", [("tacotron2", 513), ("pwg", 513), ("hifigan", 512), ("waveglow", 512)])
def test_shortest_waveform(name, shortest):
    """min_samples: longer than the reflected edge (n_fft/2 centred, (n_fft-hop)/2 otherwise, on
    the hop-aligned waveform); one sample less is refused with the reason."""
    cfg = get_preset(name)
    mel = MelSpectrogram(cfg)
    aligned = cfg.min_samples if cfg.center else -(-cfg.min_samples // 256) * 256
    assert aligned == shortest
    assert mel(torch.randn(shortest) * 0.1).shape == (80, cfg.num_frames(shortest))
    with pytest.raises(ValueError, match="too short to reflect-pad"):
        mel(torch.randn(shortest - 1) * 0.1)
