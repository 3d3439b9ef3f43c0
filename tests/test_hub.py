"""Ecosystem loading: save_pretrained (safetensors), from_pretrained of a Hub repo id through a
local Hugging Face cache (offline), the TTS-pipeline entry point, --version and --device."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from flowcheck import randomize
from vocoflow.vocoders import Vocoder, VocoderError, build_model, load_config, save_vocoder
from vocoflow.vocoders.hub import TTSVocoder, looks_like_repo_id, resolve_pretrained

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
N_MELS = 80
MEAN, SCALE = -6.0, 2.0
COMMIT = "0123456789abcdef0123456789abcdef01234567"
COMMIT2 = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny normalising vocoder directory (model.pt) with random weights."""
    cfg = load_config(CONFIGS / "waveglow_debug.yaml")
    torch.manual_seed(0)
    model = randomize(build_model(cfg), std=0.05, seed=0)
    stats = {"mean": np.full(N_MELS, MEAN) + np.linspace(0, 1, N_MELS), "scale": np.full(N_MELS, SCALE)}
    return save_vocoder(model, cfg, tmp_path_factory.mktemp("voc") / "debug", stats=stats,
                        info={"step": 7})


def raw_mel(frames=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (MEAN + SCALE * torch.randn(N_MELS, frames, generator=g)).clamp_min(math.log(1e-5))


def _synth(voc, mel, seed=3):
    return voc.synthesize(mel, generator=torch.Generator().manual_seed(seed))


def fake_hub_cache(root: Path, repo: str, snapshots: dict[str, Path], refs: dict[str, str]) -> Path:
    """The on-disk layout of a Hugging Face Hub cache holding ``repo``: one snapshot directory
    per commit (the files copied in) and ``refs/<name>`` files naming commits."""
    owner, name = repo.split("/")
    base = root / f"models--{owner}--{name}"
    for commit, src in snapshots.items():
        shutil.copytree(src, base / "snapshots" / commit)
    (base / "refs").mkdir(parents=True, exist_ok=True)
    for ref, commit in refs.items():
        (base / "refs" / ref).write_text(commit)
    return root


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """Point huggingface_hub at an empty cache under tmp_path, offline."""
    from huggingface_hub import constants

    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads these variables when it is imported: set its constants as well
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


# ----------------------------------------------------------------------------- save_pretrained
def test_save_pretrained_writes_safetensors_and_loads_back_identically(saved, tmp_path):
    voc = Vocoder.from_pretrained(saved)
    out = voc.save_pretrained(tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "model.safetensors", "stats.npz"]
    from safetensors.torch import load_file

    tensors = load_file(str(out / "model.safetensors"))
    own = voc.model.state_dict()
    assert set(tensors) == set(own)
    assert all(torch.equal(tensors[k], own[k]) for k in own)
    back = Vocoder.from_pretrained(out)
    mel = raw_mel(12)
    assert torch.equal(_synth(back, mel), _synth(voc, mel))
    assert back.normalize and np.array_equal(back.stats_mean, voc.stats_mean)
    assert back.config["training"]["step"] == 7
    assert back.config["model"] == voc.config["model"]


def test_safetensors_preferred_and_truncated_file_named(saved, tmp_path):
    out = Vocoder.from_pretrained(saved).save_pretrained(tmp_path / "hf")
    weights = out / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(VocoderError, match=r"model\.safetensors: unreadable weights"):
        Vocoder.from_pretrained(out)


def test_safetensors_of_another_model_refused(saved, tmp_path):
    out = Vocoder.from_pretrained(saved).save_pretrained(tmp_path / "hf")
    from safetensors.torch import save_file

    save_file({"conv.weight": torch.zeros(3, 3)}, str(out / "model.safetensors"))
    with pytest.raises(VocoderError, match=r"model\.safetensors: weights do not match the model"):
        Vocoder.from_pretrained(out)


# ----------------------------------------------------------------------------- Hub repo ids
def test_repo_id_shapes():
    assert looks_like_repo_id("org/name") and looks_like_repo_id("a.b/c-d_e")
    assert not looks_like_repo_id("a/b/c") and not looks_like_repo_id("name")
    assert not looks_like_repo_id("../x") and not looks_like_repo_id("a b/c")


def test_from_pretrained_repo_id_from_offline_cache(saved, offline_hub, tmp_path):
    a = Vocoder.from_pretrained(saved).save_pretrained(tmp_path / "a")
    fake_hub_cache(offline_hub, "vocoflow-test/tiny", {COMMIT: a}, {"main": COMMIT})
    voc = Vocoder.from_pretrained("vocoflow-test/tiny")
    assert voc.directory == offline_hub / "models--vocoflow-test--tiny" / "snapshots" / COMMIT
    mel = raw_mel(9)
    assert torch.equal(_synth(voc, mel), _synth(Vocoder.from_pretrained(saved), mel))


def test_from_pretrained_revision_selects_the_snapshot(saved, offline_hub, tmp_path):
    a = Vocoder.from_pretrained(saved).save_pretrained(tmp_path / "a")
    b = Vocoder.from_pretrained(saved)
    with torch.no_grad():
        for p in b.model.parameters():
            p.mul_(0.5)
    b = b.save_pretrained(tmp_path / "b")
    fake_hub_cache(offline_hub, "org/voc", {COMMIT: a, COMMIT2: b}, {"main": COMMIT, "v2": COMMIT2})
    main = Vocoder.from_pretrained("org/voc")
    v2 = Vocoder.from_pretrained("org/voc", revision="v2")
    by_commit = Vocoder.from_pretrained("org/voc", revision=COMMIT2)
    assert v2.directory.name == COMMIT2 and by_commit.directory.name == COMMIT2
    assert main.directory.name == COMMIT
    mel = raw_mel(8)
    assert torch.equal(_synth(v2, mel), _synth(Vocoder.from_pretrained(b), mel))
    assert not torch.equal(_synth(v2, mel), _synth(main, mel))
    with pytest.raises(VocoderError, match=r"Hub repo org/voc at revision 'v3': not found: offline"):
        Vocoder.from_pretrained("org/voc", revision="v3")


def test_repo_not_in_offline_cache_is_a_clear_error(offline_hub):
    with pytest.raises(VocoderError) as e:
        Vocoder.from_pretrained("org/not-cached")
    msg = str(e.value)
    assert msg.startswith("Hub repo org/not-cached: not found: offline mode")
    assert str(offline_hub) in msg and "\n" not in msg


def test_local_paths_win_and_bad_names_are_named(saved, tmp_path):
    assert resolve_pretrained(saved) == Path(saved)
    assert resolve_pretrained(str(saved)) == Path(saved)
    with pytest.raises(VocoderError, match="revision='v1' applies to Hub repos"):
        resolve_pretrained(saved, revision="v1")
    with pytest.raises(VocoderError, match=r"exp/x/model: no such vocoder directory \(and not"):
        Vocoder.from_pretrained("exp/x/model")


def test_a_cached_repo_that_is_not_a_vocoder_names_its_config(offline_hub, tmp_path):
    src = tmp_path / "other"
    src.mkdir()
    (src / "config.yaml").write_text("format: some-other-model\n")
    fake_hub_cache(offline_hub, "org/other", {COMMIT: src}, {"main": COMMIT})
    with pytest.raises(VocoderError, match=r"snapshots/0123.*config\.yaml: not a vocoflow vocoder config"):
        Vocoder.from_pretrained("org/other")


# ----------------------------------------------------------------------------- TTS entry point
def test_tts_vocoder_espnet_orientation(saved):
    voc = Vocoder.from_pretrained(saved)
    tts = TTSVocoder(saved, seed=5)
    mel = raw_mel(11)  # (n_mels, frames)
    want = voc.synthesize(mel, generator=torch.Generator().manual_seed(5))
    wav = tts(mel.T)  # ESPnet2 Text2Speech hands (frames, n_mels)
    assert wav.shape == (11 * voc.hop_length,) and torch.equal(wav, want)
    assert torch.equal(tts(mel), want)  # (n_mels, frames) is unambiguous here
    assert torch.equal(tts(mel.T.numpy()), want)
    assert tts.fs == 16000 == voc.sample_rate
    with pytest.raises(VocoderError, match=r"shape \(11, 7\) has no axis of n_mels=80"):
        tts(torch.zeros(11, 7))


def test_tts_vocoder_square_mel_is_frames_first(saved):
    tts = TTSVocoder(saved, seed=1)
    mel = raw_mel(N_MELS, seed=2)  # 80 x 80: read as (frames, n_mels)
    want = Vocoder.from_pretrained(saved).synthesize(mel.T.contiguous(),
                                                     generator=torch.Generator().manual_seed(1))
    assert torch.equal(tts(mel), want)


def test_tts_vocoder_coqui_inference_and_normalized(saved):
    voc = Vocoder.from_pretrained(saved)
    tts = TTSVocoder(voc, seed=2)
    mel = torch.stack([raw_mel(6, seed=0), raw_mel(6, seed=1)])
    out = tts.inference(mel)
    assert out.shape == (2, 1, 6 * voc.hop_length)
    want = voc.synthesize(mel, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out[:, 0], want)
    norm = TTSVocoder(voc, seed=2, normalized=True)
    assert torch.allclose(norm(voc.normalize_mel(mel[0]).T), want[0], atol=1e-5)
    with pytest.raises(VocoderError, match=r"inference: mel must be \(B, 80, frames\)"):
        tts.inference(mel.transpose(1, 2))


# ----------------------------------------------------------------------------- CLI
def _cli():
    import importlib

    return importlib.import_module("vocoflow.cli.main")


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as e:
        _cli().main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"vocoflow {version('vocoflow')}"


def _feats_scp(tmp_path, frames=6):
    from vocoflow.audio.kaldi_io import ArkScpWriter

    scp = tmp_path / "feats.scp"
    with ArkScpWriter(tmp_path / "feats.ark", scp) as w:
        w.write("utt1", raw_mel(frames).T.numpy())
    return scp


def test_decode_a_hub_repo_id_offline(saved, offline_hub, tmp_path):
    import soundfile as sf

    a = Vocoder.from_pretrained(saved).save_pretrained(tmp_path / "a")
    fake_hub_cache(offline_hub, "org/voc", {COMMIT: a}, {"main": COMMIT})
    scp = _feats_scp(tmp_path)
    assert _cli().main(["decode", "--model", "org/voc", "--feats-scp", str(scp),
                        "--out-dir", str(tmp_path / "wav"), "--no-progress"]) == 0
    wav, sr = sf.read(tmp_path / "wav" / "utt1.wav")
    assert sr == 16000 and len(wav) == 6 * 256


@pytest.mark.parametrize("command", ["decode", "benchmark"])
def test_device_cuda_without_a_gpu_is_one_clear_line(saved, tmp_path, capsys, monkeypatch, command):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if command == "decode":
        argv = ["decode", "--model", str(saved), "--feats-scp", str(_feats_scp(tmp_path)),
                "--out-dir", str(tmp_path / "wav"), "--no-progress", "--device", "cuda"]
    else:
        argv = ["benchmark", str(saved), "--device", "cuda", "--seconds", "0.1"]
    assert _cli().main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vocoflow {command}: error: --device cuda: no CUDA GPU is available here")
    assert "\n" not in err and err.endswith("use --device cpu")
    assert not (tmp_path / "wav").exists()


def test_device_names_checked(monkeypatch):
    from vocoflow.cli.device import check_device
    from vocoflow.cli.main import CLIError

    with pytest.raises(CLIError, match=r"--device gpu0: not a torch device"):
        check_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check_device("cuda:0") == "cuda:0"
    with pytest.raises(CLIError, match=r"--device cuda:3: there are 1 CUDA device\(s\) \(cuda:0..cuda:0\)"):
        check_device("cuda:3")
