"""Probability density distillation: the KL estimators agree, distillation of a known Gaussian
autoregressive teacher drives the KL to ~0, the STFT loss, and ``vocoflow distill`` end to end."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from flowcheck import randomize
from vocoflow.train.distill_loss import DistillLossConfig, DistillObjective
from vocoflow.train.losses import MultiResolutionSTFTLoss, closed_form_kl, gaussian_kl
from vocoflow.train.vocoder_task import ConfigError
from vocoflow.vocoders import IAFStudent, WaveNetTeacher

D = torch.float64
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
cli_main = importlib.import_module("vocoflow.cli.main")


class AR1Teacher(torch.nn.Module):
    """``x_t = a x_{t-1} + b + s eps_t`` (``x_{-1} = 0``), mel-free: a Gaussian AR teacher whose
    conditionals are known exactly."""

    def __init__(self, a=0.6, b=0.1, s=0.3):
        super().__init__()
        self.a, self.b, self.s = a, b, s
        self.dummy = torch.nn.Parameter(torch.zeros(()), requires_grad=False)

    def gaussian_params(self, audio, mel, sigma=1.0):
        prev = F.pad(audio, (1, 0))[:, :-1]
        return self.a * prev + self.b, torch.full_like(audio, math.log(self.s * sigma))

    def log_prob(self, audio, mel, sigma=1.0):
        mu, ls = self.gaussian_params(audio, mel, sigma)
        return (-0.5 * ((audio - mu) / ls.exp()) ** 2 - ls - 0.5 * math.log(2 * math.pi)).sum(-1)

    def infer(self, mel, sigma=1.0, noise=None):
        x = torch.zeros_like(noise)
        prev = torch.zeros_like(noise[:, 0])
        for t in range(noise.shape[1]):
            prev = self.a * prev + self.b + self.s * sigma * noise[:, t]
            x[:, t] = prev
        return x


def test_gaussian_kl_against_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mq, lq, mp, lp = (torch.randn(50, generator=g, dtype=D) for _ in range(4))
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mq, lq.exp()),
                                            torch.distributions.Normal(mp, lp.exp()))
    assert torch.allclose(gaussian_kl(mq, lq, mp, lp), ref, atol=1e-12)


def test_closed_form_kl_equals_monte_carlo_within_standard_error():
    torch.manual_seed(0)
    student = randomize(IAFStudent(n_mels=3, hop_length=4, flow_layers=[2, 2], channels=6,
                                   dilation_cycle=2, init_scale=0.5), std=0.1).to(D)
    teacher = randomize(WaveNetTeacher(n_mels=3, hop_length=4, n_layers=3, channels=6,
                                       dilation_cycle=3, upsample="repeat"), std=0.1).to(D)
    n, frames = 4000, 4
    mel = torch.randn(1, 3, frames, dtype=D).expand(n, -1, -1)
    g = torch.Generator().manual_seed(1)
    # (with autograd on, WN takes its batched convolution path: faster for 4000 tiny items)
    out = student(torch.randn(n, 4 * frames, generator=g, dtype=D), mel)
    mu_p, ls_p = teacher.gaussian_params(out["audio"], mel)
    closed = closed_form_kl(out["mu"], out["log_scale"], mu_p, ls_p).sum(-1).detach()
    out2 = student(torch.randn(n, 4 * frames, generator=g, dtype=D), mel)
    mc = (out2["log_q"].sum(-1) - teacher.log_prob(out2["audio"], mel)).detach()
    se = math.sqrt(closed.var().item() / n + mc.var().item() / n)
    assert closed.mean().item() > 1.0  # a real divergence, not ~0
    assert abs(closed.mean().item() - mc.mean().item()) < 4 * se, (closed.mean(), mc.mean(), se)
    # ClariNet's point: the closed form has (much) less variance
    assert closed.var() < 0.5 * mc.var()
    # and the objective picks it automatically for this pair
    obj = DistillObjective(teacher, student, DistillLossConfig(stft_weight=0), 16000)
    assert obj.estimator == "closed"


def _toy_student(map="affine", seed=0):
    torch.manual_seed(seed)
    return IAFStudent(n_mels=1, hop_length=8, flow_layers=[4, 4], channels=16, kernel_size=2,
                      dilation_cycle=4, map=map, upsample="repeat")


def _distil(student, teacher, cfg, steps, batch=16, frames=4, lr=1e-2, seed=0):
    obj = DistillObjective(teacher, student, cfg, 16000)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    mel = torch.zeros(batch, 1, frames)
    audio = torch.zeros(batch, frames * 8)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss, _ = obj(student, audio, mel, torch.randn(batch, frames * 8, generator=g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return obj


def _exact_kl(student, teacher, n=2000, frames=8):
    """Closed-form KL per sample (the only Monte Carlo part is over x_<t) at float64."""
    s = student.double()
    out = s(torch.randn(n, frames * 8, generator=torch.Generator().manual_seed(9), dtype=D),
            torch.zeros(n, 1, frames, dtype=D))
    if "mu" in out:
        mu_p, ls_p = teacher.gaussian_params(out["audio"], None)
        kl = closed_form_kl(out["mu"], out["log_scale"], mu_p, ls_p).mean(-1)
    else:
        kl = (out["log_q"].sum(-1) - teacher.log_prob(out["audio"], None)) / (frames * 8)
    kl = kl.detach()
    student.float()
    return kl.mean().item(), kl.std().item() / math.sqrt(n)


def test_distillation_of_a_gaussian_ar1_teacher_drives_the_kl_to_zero():
    teacher = AR1Teacher()
    student = _toy_student("affine")
    before, _ = _exact_kl(student, teacher)
    _distil(student, teacher, DistillLossConfig(stft_weight=0, estimator="closed"), steps=100)
    after, se = _exact_kl(student, teacher)
    # threshold: 0.01 nats per sample (from ~0.9 at the start)
    assert before > 1.0 and after < 0.01, (before, after, se)


def test_non_affine_student_with_monte_carlo_kl_learns_the_teacher_too():
    teacher = AR1Teacher()
    student = _toy_student(["mixlogistic", "affine"], seed=1)
    before, _ = _exact_kl(student, teacher)
    _distil(student, teacher, DistillLossConfig(stft_weight=0, estimator="mc"), steps=100)
    after, se = _exact_kl(student, teacher)
    # threshold: 0.03 nats per sample (MC gradients are noisier; the KL is >= 0 up to its se)
    assert before > 1.0 and after < 0.03 and after > -4 * se, (before, after, se)


def test_forward_kl_direction_on_the_toy():
    teacher = AR1Teacher()
    student = _toy_student("affine")
    cfg = DistillLossConfig(stft_weight=0, direction="forward")
    obj = DistillObjective(teacher, student, cfg, 16000)
    assert obj.estimator == "mc"
    mel, audio = torch.zeros(4, 1, 2), torch.zeros(4, 16)
    noise = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss, m = obj(student, audio, mel, noise, torch.randn(4, 16))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(m["kl"])
    assert losses[-1] < 0.5 * losses[0]


def test_objective_settings_are_checked():
    teacher = WaveNetTeacher(n_mels=2, hop_length=4, n_layers=1, channels=2, output="mixlogistic")
    student = IAFStudent(n_mels=2, hop_length=4, flow_layers=[1], channels=2)
    with pytest.raises(ConfigError):
        DistillObjective(teacher, student, DistillLossConfig(estimator="closed"), 16000)
    with pytest.raises(ConfigError):
        DistillObjective(teacher, student, DistillLossConfig(log_scale_weight=1.0), 16000)
    assert DistillObjective(teacher, student, DistillLossConfig(), 16000).estimator == "mc"
    with pytest.raises(ConfigError):
        DistillLossConfig.from_train({"loss": {"kl": {"weigth": 1}}})
    with pytest.raises(ConfigError):
        DistillLossConfig(estimator="exact")
    cfg = DistillLossConfig.from_train({"loss": {"kl": {"samples": 2, "teacher_sigma": 0.6},
                                                 "stft": {"kind": "power"}}})
    assert cfg.samples == 2 and cfg.teacher_sigma == 0.6 and cfg.stft_kind == "power"


def test_multi_resolution_stft_loss():
    loss = MultiResolutionSTFTLoss([(128, 32, 128), (256, 64, 256)])
    t = torch.arange(4096) / 16000
    a = torch.sin(2 * math.pi * 440 * t)[None]
    near = torch.sin(2 * math.pi * 450 * t)[None]
    far = 0.1 * torch.randn(1, 4096, generator=torch.Generator().manual_seed(0))
    assert loss(a, a)[0].item() == 0
    assert loss(a, near)[0] < loss(a, far)[0]
    v, parts = loss(a, far)
    assert set(parts) == {"sc", "logmag"} and abs(v.item() - sum(parts.values())) < 1e-5
    p = MultiResolutionSTFTLoss([(128, 32, 128)], kind="power")
    assert set(p(a, far)[1]) == {"power"}
    x = far.clone().requires_grad_(True)
    loss(x, a)[0].backward()
    assert torch.isfinite(x.grad).all()


# ---------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    from data_fixtures import make_tone_dumps

    root = tmp_path_factory.mktemp("distill")
    out = make_tone_dumps(root)
    # a tiny Gaussian WaveNet teacher trained with `vocoflow train`
    assert cli_main.main(["train", "--config", str(CONFIGS / "wavenet_teacher_debug.yaml"),
                          "--train-dump", str(out["train"]), "--dev-dump", str(out["dev"]),
                          "--out-dir", str(root / "teacher"), "--cpu", "--no-progress",
                          "--steps", "2"]) == 0
    out["teacher"] = root / "teacher" / "model"
    return out


def _distill(dumps, out, *extra):
    return cli_main.main(["distill", "--teacher", str(dumps["teacher"]),
                          "--config", str(CONFIGS / "distill_debug.yaml"),
                          "--train-dump", str(dumps["train"]), "--dev-dump", str(dumps["dev"]),
                          "--out-dir", str(out), "--cpu", "--no-progress", *map(str, extra)])


def _log(out):
    recs = [json.loads(ln) for ln in (Path(out) / "train_log.jsonl").read_text().splitlines()]
    return [r for r in recs if "loss" in r], [r for r in recs if "dev_kl" in r]


def test_vocoflow_distill_end_to_end_with_resume(dumps, tmp_path, capsys):
    from vocoflow.vocoders import load

    teacher = load(dumps["teacher"])
    assert type(teacher.model).__name__ == "WaveNetTeacher"
    assert _distill(dumps, tmp_path / "full") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["finished"] and summary["steps"] == 4 and math.isfinite(summary["final_train_kl"])
    # interrupted after 2 steps, resumed: the same run
    assert _distill(dumps, tmp_path / "part", "--steps", "2") == 0
    assert _distill(dumps, tmp_path / "part", "--resume") == 0
    full, dev_full = _log(tmp_path / "full")
    part, dev_part = _log(tmp_path / "part")
    assert [r["step"] for r in part] == [1, 2, 3, 4]
    for a, b in zip(full, part):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6), (a, b)
    assert dev_full and {"dev_kl", "dev_stft", "dev_log_scale_reg"} <= set(dev_full[-1])
    assert (tmp_path / "full" / "loss.png").is_file()
    # the exported student is an ordinary vocoder
    voc = load(tmp_path / "part" / "model")
    assert isinstance(voc.model, IAFStudent)
    assert voc.config["training"]["teacher"] == str(Path(dumps["teacher"]).resolve())
    from vocoflow.audio import AudioMelDataset

    item = AudioMelDataset(dumps["dev"])[0]
    wav = voc.synthesize(item["mel"], normalized=True)
    assert wav.shape == item["audio"].shape and torch.isfinite(wav).all()
    full_sd = load(tmp_path / "full" / "model").model.state_dict()
    for k, v in voc.model.state_dict().items():
        assert torch.allclose(v, full_sd[k], atol=1e-6), k
    # scoring: KL of the student and STFT losses of student and teacher samples
    capsys.readouterr()
    assert cli_main.main(["distill-score", "--teacher", str(dumps["teacher"]), "--student",
                          f"s={tmp_path / 'part' / 'model'}", "--dump", str(dumps["dev"]),
                          "--json", str(tmp_path / "score.json")]) == 0
    score = json.loads((tmp_path / "score.json").read_text())["systems"]
    assert set(score) == {"teacher", "s"} and score["teacher"]["kl"] == 0
    assert math.isfinite(score["s"]["kl"]) and score["s"]["stft"] > 0


def test_vocoflow_distill_errors(dumps, tmp_path, capsys):
    assert _distill(dumps, tmp_path / "x", "--set", "train.loss={kl: {estimator: exact}}") == 1
    assert "estimator" in capsys.readouterr().err
    assert cli_main.main(["distill", "--teacher", str(tmp_path), "--config",
                          str(CONFIGS / "distill_debug.yaml"), "--train-dump",
                          str(dumps["train"]), "--out-dir", str(tmp_path / "y")]) == 1
    assert "not a saved vocoder" in capsys.readouterr().err
    # a raw (unnormalised) dump does not match the teacher's normalisation
    raw = Path(dumps["train"]).parent.parent / "raw" / "train"
    assert cli_main.main(["distill", "--teacher", str(dumps["teacher"]), "--config",
                          str(CONFIGS / "distill_debug.yaml"), "--train-dump", str(raw),
                          "--out-dir", str(tmp_path / "z"), "--cpu"]) == 1
    assert "normalis" in capsys.readouterr().err
