"""Fine-tuning (`vocoflow train --init-from DIR`) and TTS-predicted mels (`--train-feats-scp`)."""

from __future__ import annotations

import hashlib
import importlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from flowcheck import randomize
from vocoflow.audio import Stats
from vocoflow.audio.kaldi_io import ArkScpWriter, read_feats
from vocoflow.train.gta import GTADataset
from vocoflow.vocoders import build_model, load_config, read_vocoder_dir, save_vocoder

cli_main = importlib.import_module("vocoflow.cli.main")
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    """Tone dumps (raw and normalised) and a saved vocoder of the debug config trained on the
    normalised ones' features (random weights, the dump's statistics)."""
    from data_fixtures import make_tone_dumps

    root = tmp_path_factory.mktemp("finetune")
    out = make_tone_dumps(root)
    out["raw_train"] = root / "raw" / "train"
    out["raw_dev"] = root / "raw" / "dev"
    cfg = load_config(CONFIGS / "waveglow_debug.yaml")
    torch.manual_seed(0)
    model = randomize(build_model(cfg), std=0.02, seed=0)
    out["base"] = save_vocoder(model, cfg, root / "base", stats=Stats.load(out["train"] / "norm_stats.npz"))
    out["root"] = root
    return out


def _write_config(path, **sections):
    path.write_text(yaml.safe_dump(sections))
    return path


def _train(dumps, out, *extra, config=None, train=None, dev=False):
    argv = ["train", "--config", str(config or CONFIGS / "waveglow_debug.yaml"),
            "--train-dump", str(train or dumps["train"]), "--out-dir", str(out),
            "--cpu", "--no-progress", "--steps", "1", *map(str, extra)]
    if dev:
        argv += ["--dev-dump", str(dumps["dev"])]
    return cli_main.main(argv)


def _weights(d):
    return read_vocoder_dir(d).model.state_dict()


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- --init-from
def test_init_from_starts_from_the_saved_weights(dumps, tmp_path):
    base = _weights(dumps["base"])
    # lr 0: one optimizer step leaves the weights as they were loaded
    cfg = _write_config(tmp_path / "ft.yaml", train={"lr": 0.0, "batch_size": 2, "segment_length": 2048})
    assert _train(dumps, tmp_path / "ft", "--init-from", dumps["base"], config=cfg) == 0
    got = _weights(tmp_path / "ft" / "model")
    assert set(got) == set(base) and all(torch.equal(got[k], base[k]) for k in base)
    # (the base weights are random: a freshly initialised model could not equal them)


def test_fine_tuned_vocoder_records_its_origin_and_keeps_the_statistics(dumps, tmp_path):
    assert _train(dumps, tmp_path / "ft", "--init-from", dumps["base"], "--set", "train.lr=1e-3") == 0
    saved = read_vocoder_dir(tmp_path / "ft" / "model")
    training = saved.config["training"]
    assert training["init_from"] == str(Path(dumps["base"]).resolve())
    want = hashlib.sha256((Path(dumps["base"]) / "model.pt").read_bytes()).hexdigest()
    assert training["init_from_weights_sha256"] == want
    base = read_vocoder_dir(dumps["base"])
    assert saved.normalize and np.array_equal(saved.stats[0], base.stats[0])
    # trained: the weights moved, but only a little (one step of Adam from the loaded ones)
    moved = [float((saved.model.state_dict()[k] - v).abs().max())
             for k, v in base.model.state_dict().items() if v.is_floating_point()]
    assert 0 < max(moved) < 0.01
    # the run's config.yaml has the model section taken from DIR
    run_cfg = yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())
    assert run_cfg["model"]["wn_channels"] == 16


def test_init_from_refuses_a_different_model_config(dumps, tmp_path, capsys):
    cfg = load_config(CONFIGS / "waveglow_debug.yaml")
    cfg["model"]["wn_channels"] = 8
    cfg["model"]["n_flows"] = 2
    path = _write_config(tmp_path / "c.yaml", **cfg)
    assert _train(dumps, tmp_path / "ft", "--init-from", dumps["base"], config=path) == 1
    err = _one_error_line(capsys)
    assert f"--init-from {dumps['base']}: the config's model differs" in err
    assert "n_flows (2 vs 4)" in err and "wn_channels (8 vs 16)" in err
    assert not (tmp_path / "ft").exists()


def test_init_from_a_model_of_another_type(dumps, tmp_path, capsys):
    teacher_cfg = load_config(CONFIGS / "wavenet_teacher_debug.yaml")
    teacher = save_vocoder(build_model(teacher_cfg), teacher_cfg, tmp_path / "teacher")
    assert _train(dumps, tmp_path / "ft", "--init-from", teacher) == 1
    err = _one_error_line(capsys)
    assert f"--init-from {teacher}: the config's model differs" in err
    assert "type ('waveglow' vs 'wavenet_teacher')" in err


def test_init_from_feature_and_statistics_mismatches(dumps, tmp_path, capsys):
    # a normalising vocoder on the raw dump
    assert _train(dumps, tmp_path / "a", "--init-from", dumps["base"], train=dumps["raw_train"]) == 1
    assert "trained on normalised features but" in _one_error_line(capsys)
    # other statistics
    other = tmp_path / "other"
    shutil.copytree(dumps["base"], other)
    stats = np.load(other / "stats.npz")
    np.savez(other / "stats.npz", mean=stats["mean"] + 0.5, scale=stats["scale"])
    assert _train(dumps, tmp_path / "b", "--init-from", other) == 1
    err = _one_error_line(capsys)
    assert "norm_stats.npz differs from the vocoder's statistics" in err and str(other) in err
    # another front end
    cfg = load_config(CONFIGS / "waveglow_debug.yaml")
    cfg["features"] = {"preset": "asterisk16k", "fmax": 7000.0}
    torch.manual_seed(0)
    fm = save_vocoder(build_model(cfg), cfg, tmp_path / "fmax", stats=dumps["train"] / "norm_stats.npz")
    assert _train(dumps, tmp_path / "c", "--init-from", fm) == 1
    err = _one_error_line(capsys)
    assert "differ from the saved vocoder's (dump vs DIR): fmax (8000.0 vs 7000.0)" in err


def test_init_from_bad_directories(dumps, tmp_path, capsys):
    assert _train(dumps, tmp_path / "a", "--init-from", tmp_path / "nothing") == 1
    assert f"--init-from {tmp_path / 'nothing'}: no such vocoder directory" in _one_error_line(capsys)
    exp = tmp_path / "exp"
    shutil.copytree(dumps["base"], exp / "model")
    assert _train(dumps, tmp_path / "b", "--init-from", exp) == 1
    assert f"its vocoder is {exp / 'model'}" in _one_error_line(capsys)
    broken = tmp_path / "broken"
    shutil.copytree(dumps["base"], broken)
    data = (broken / "model.pt").read_bytes()
    (broken / "model.pt").write_bytes(data[: len(data) // 3])
    assert _train(dumps, tmp_path / "c", "--init-from", broken) == 1
    assert f"{broken / 'model.pt'}: unreadable weights" in _one_error_line(capsys)
    assert not (tmp_path / "c").exists()


def test_init_from_an_imported_nvidia_waveglow(tmp_path, capsys):
    """`vocoflow import-waveglow` output fine-tunes like any vocoder directory: a dump made with
    its front end (Tacotron 2's, raw log-mels), a config with only train:, weight norm kept."""
    from data_fixtures import make_good_data_dir
    from test_nvidia_import import build_nvidia, save_like_train_py
    from vocoflow.audio import preprocess
    from vocoflow.vocoders.nvidia import import_waveglow

    model, fake = build_nvidia("fused")
    imported = import_waveglow(save_like_train_py(model, fake, tmp_path / "waveglow_580000"),
                               tmp_path / "imported")
    saved = read_vocoder_dir(imported)
    assert saved.model.has_weight_norm() and not saved.normalize
    data = make_good_data_dir(tmp_path / "src", n=2, seconds=0.5)  # 16 kHz audio, resampled
    assert preprocess(data, tmp_path / "dump", saved.features).n_ok == 2
    cfg = _write_config(tmp_path / "ft.yaml", train={"lr": 1e-3, "batch_size": 2, "segment_length": 2048})
    dumps = {"dev": None}
    assert _train(dumps, tmp_path / "ft", "--init-from", imported, config=cfg,
                  train=tmp_path / "dump") == 0
    tuned = read_vocoder_dir(tmp_path / "ft" / "model")
    assert tuned.features == saved.features and tuned.config["training"]["init_from"] == str(imported.resolve())
    assert tuned.model.has_weight_norm()
    before, after = saved.model.state_dict(), tuned.model.state_dict()
    assert set(before) == set(after)
    moved = max(float((after[k] - v).abs().max()) for k, v in before.items() if v.is_floating_point())
    assert 0 < moved < 0.05
    # the corpus' own 16 kHz front end is not the imported model's: refused, naming the keys
    from vocoflow.audio import get_preset

    assert preprocess(data, tmp_path / "dump16", get_preset("asterisk16k").replace(n_mels=16)).n_ok == 2
    assert _train(dumps, tmp_path / "ft16", "--init-from", imported, config=cfg,
                  train=tmp_path / "dump16") == 1
    err = _one_error_line(capsys)
    assert "differ from the saved vocoder's (dump vs DIR)" in err and "sample_rate (16000 vs 22050)" in err


# ----------------------------------------------------------------------------- GTA mels
def _gta_scp(dumps, path, change=None, drop=(), extra_frames=None):
    """A feats.scp of "TTS" mels for the training set: its raw log-mels, smoothed over time
    (what a TTS predicts is smoother), optionally changed per utterance."""
    n = 0
    with ArkScpWriter(path.with_suffix(".ark"), path) as w:
        for utt, mel in read_feats(dumps["raw_train"] / "feats.scp"):
            if utt in drop:
                continue
            sm = mel.copy()
            sm[1:-1] = (mel[:-2] + mel[1:-1] + mel[2:]) / 3
            if extra_frames and utt in extra_frames:
                k = extra_frames[utt]
                sm = np.concatenate([sm, np.repeat(sm[-1:], k, 0)]) if k > 0 else sm[:k]
            if change is not None:
                sm = change(utt, sm)
            w.write(utt, sm)
            n += 1
    return path


def test_gta_dataset_replaces_the_mels_and_keeps_the_audio(dumps, tmp_path):
    scp = _gta_scp(dumps, tmp_path / "gta.scp", extra_frames={"train1": 1, "train2": -2})
    ds = GTADataset(dumps["train"], scp)
    stats = Stats.load(dumps["train"] / "norm_stats.npz")
    raw = dict(read_feats(scp))
    hop = ds.config.hop_length
    from vocoflow.audio import AudioMelDataset

    plain = AudioMelDataset(dumps["train"])
    for utt in ds.utt_ids:
        audio, mel = ds.load(utt)
        ref_audio, ref_mel = plain.load(utt)
        frames = min(ref_mel.shape[0], raw[utt].shape[0])
        assert mel.shape == (frames, 80) and len(audio) == frames * hop
        np.testing.assert_array_equal(audio, ref_audio[: frames * hop])
        np.testing.assert_allclose(mel, (raw[utt][:frames] - stats.mean) / stats.scale, rtol=1e-5, atol=1e-5)
        assert not np.allclose(mel, ref_mel[:frames], atol=1e-3)  # not the dump's own mels
    assert ds.load("train1")[1].shape[0] == plain.load("train1")[1].shape[0]
    assert ds.load("train2")[1].shape[0] == plain.load("train2")[1].shape[0] - 2


def test_gta_dataset_errors_name_the_file_and_the_utterance(dumps, tmp_path):
    scp = _gta_scp(dumps, tmp_path / "a.scp", drop=("train2",))
    with pytest.raises(ValueError, match=rf"{scp}: no mel for utterance 'train2' of .* \(1 of 4 missing\)"):
        GTADataset(dumps["train"], scp)
    scp = _gta_scp(dumps, tmp_path / "b.scp", extra_frames={"train3": 3})
    with pytest.raises(ValueError, match=rf"{scp}: utterance 'train3': 53 frames, but the audio "
                                         r".* has 50 frames \(more than 2"):
        GTADataset(dumps["train"], scp)
    stats = Stats.load(dumps["train"] / "norm_stats.npz")
    scp = _gta_scp(dumps, tmp_path / "c.scp",
                   change=lambda u, m: stats.normalize(m) if u == "train0" else m)
    with pytest.raises(ValueError, match=rf"{scp}: utterance 'train0': the mel looks normalised"):
        GTADataset(dumps["train"], scp)
    scp = _gta_scp(dumps, tmp_path / "d.scp", change=lambda u, m: m[:, :40] if u == "train1" else m)
    with pytest.raises(ValueError, match=rf"{scp}: utterance 'train1'"):
        GTADataset(dumps["train"], scp)
    pipe = tmp_path / "e.scp"
    pipe.write_text("".join(f"train{i} cat x.ark |\n" for i in range(4)))
    with pytest.raises(ValueError, match=rf"{pipe}: utterance 'train0': pipe entries are not run"):
        GTADataset(dumps["train"], pipe)


def test_train_on_gta_mels_and_fine_tune(dumps, tmp_path, capsys):
    good = _gta_scp(dumps, tmp_path / "gta.scp")
    assert _train(dumps, tmp_path / "ft", "--init-from", dumps["base"], "--train-feats-scp", good,
                  dev=True) == 0
    assert read_vocoder_dir(tmp_path / "ft" / "model").config["training"]["init_from"]
    bad = _gta_scp(dumps, tmp_path / "bad.scp", drop=("train0",))
    assert _train(dumps, tmp_path / "bad", "--train-feats-scp", bad) == 1
    err = _one_error_line(capsys)
    assert f"{bad}: no mel for utterance 'train0'" in err
    assert not (tmp_path / "bad").exists()


# ----------------------------------------------------------------------------- recipe stage 7
@pytest.mark.slow
def test_recipe_stage_7_fine_tunes_a_saved_vocoder(tmp_path):
    """recipes/voc1/voc.sh --stage 7: the corpus' features with the vocoder's own front end (a
    raw-feature vocoder here, as an imported NVIDIA WaveGlow is) and one step of fine-tuning
    from it (stage 8, decoding and evaluation, is stages 4-5's code on the new directories)."""
    import os
    import subprocess

    from data_fixtures import make_good_data_dir

    root = Path(__file__).resolve().parent.parent
    for s in ("train", "dev", "eval"):
        src = make_good_data_dir(tmp_path / "src" / s, n=2, seconds=0.4)
        shutil.copytree(src, tmp_path / "data" / s)
    cfg = load_config(CONFIGS / "waveglow_debug.yaml")
    torch.manual_seed(0)
    base = save_vocoder(randomize(build_model(cfg), std=0.02), cfg, tmp_path / "imported", normalize=False)
    _write_config(tmp_path / "ft.yaml", train={"batch_size": 2, "segment_length": 2048, "steps": 1,
                                                "lr": 1e-4, "validate_every": 1})
    env = dict(os.environ, PATH=f"{Path(os.sys.executable).parent}:{os.environ['PATH']}",
               PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    r = subprocess.run(["bash", str(root / "recipes" / "voc1" / "voc.sh"), "--stage", "7",
                        "--stop-stage", "7", "--finetune-from", str(base), "--finetune-conf", "ft.yaml",
                        "--pitch", "none", "--n-jobs", "1"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    saved = read_vocoder_dir(tmp_path / "exp" / "imported_ft" / "model")
    assert saved.config["training"]["init_from"] == str(base.resolve())
    assert not saved.normalize
    assert (tmp_path / "dump" / "imported_ft" / "eval" / "raw" / ".done").is_file()
    assert not (tmp_path / "dump" / "imported_ft" / "train" / "norm").exists()
    assert not (tmp_path / "exp" / "imported_ft" / "wav").exists()  # stage 8 not run
    # a missing vocoder directory: the stage says so and fails
    r = subprocess.run(["bash", str(root / "recipes" / "voc1" / "voc.sh"), "--stage", "7",
                        "--stop-stage", "7", "--finetune-from", "nowhere"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "--finetune-from nowhere: not a vocoder directory" in r.stdout
