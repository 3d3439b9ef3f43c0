"""Heavy-tailed base distributions: the Student-t base (learnable df) and the Gaussian copula with
Student-t marginals, checked against scipy in float64; their registry; and WaveGlow with them
(alone and with the mel prior)."""

import math

import numpy as np
import pytest
import scipy.stats as st
import torch

from vocoflow.flows import (
    BASE_DISTRIBUTIONS,
    ActNorm,
    AffineCoupling,
    Flow,
    GaussianCopula,
    Normal,
    Sequential,
    StudentT,
    build_base,
    student_t_log_prob,
)
from vocoflow.flows.distributions import (
    student_t_from_normal,
    student_t_sample,
    student_t_tail,
    student_t_to_normal,
)
from vocoflow.vocoders.waveglow import WaveGlow, WaveGlowConfig

D64 = torch.float64
SMALL = dict(n_mels=8, hop_length=16, n_group=4, n_flows=2, n_early_every=1, n_early_size=1)


@pytest.mark.parametrize("df", [0.7, 1.0, 3.0, 30.0])
def test_student_t_log_prob_matches_scipy(df):
    x = torch.linspace(-40, 40, 101, dtype=D64)
    ls = torch.linspace(-2, 1, 101, dtype=D64)
    ref = st.t.logpdf(x.numpy(), df, scale=np.exp(ls.numpy()))
    np.testing.assert_allclose(student_t_log_prob(x, df, ls).numpy(), ref, rtol=1e-12, atol=1e-12)
    base = StudentT(df, scale=0.5).double()
    z = x.reshape(1, -1)
    want = st.t.logpdf(z.numpy(), base.df.item(), scale=0.5).sum()
    assert abs(float(base.log_prob(z)) - want) < 1e-9


@pytest.mark.parametrize("df", [0.5, 1.0, 2.5, 7.0, 60.0])
def test_student_t_tail_and_normal_maps_match_scipy(df):
    x = torch.tensor([0.0, 1e-2, 0.2, 1.0, 3.0, 10.0, 1e3, 1e6], dtype=D64)   # (scipy is off near 0)
    ref_sf = st.t.sf(x.numpy(), df)
    ok = ref_sf > 1e-290
    np.testing.assert_allclose(student_t_tail(x, df).numpy()[ok], ref_sf[ok], rtol=1e-10)
    np.testing.assert_allclose(student_t_to_normal(-x, df).numpy()[ok], -st.norm.isf(ref_sf[ok]),
                               rtol=1e-9, atol=1e-12)
    n = torch.tensor([-9.0, -3.0, -0.5, 1e-4, 0.7, 2.0, 6.0], dtype=D64)
    ref_q = st.t.isf(st.norm.sf(n.numpy()), df)
    fin = np.isfinite(ref_q)                                 # scipy overflows where we do not
    assert fin.sum() >= 6
    np.testing.assert_allclose(student_t_from_normal(n, df).numpy()[fin], ref_q[fin], rtol=1e-9)


def test_student_t_tail_closed_forms():
    x = torch.tensor([1e-8, 1e-3, 0.5, 2.0, 1e4, 1e9], dtype=D64)
    cauchy = torch.atan(1 / x) / math.pi                                   # df = 1
    r = torch.sqrt(2 + x * x)
    df2 = 1 / (r * (r + x))                                                # df = 2
    assert torch.allclose(student_t_tail(x, 1.0), cauchy, rtol=1e-12, atol=0)
    assert torch.allclose(student_t_tail(x, 2.0), df2, rtol=1e-12, atol=0)
    # near 0 the normal score is x f_t(0) / phi(0) (Cauchy: x sqrt(2 / pi)) to O(x^3)
    small = torch.tensor([1e-9, -1e-7, 1e-6], dtype=D64)
    assert torch.allclose(student_t_to_normal(small, 1.0), small * math.sqrt(2 / math.pi), rtol=1e-9)


def test_student_t_to_normal_gradient_is_exact():
    x = torch.tensor([-30.0, -2.0, -0.1, 0.4, 5.0], dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: student_t_to_normal(a, 2.5), (x,))


def test_student_t_sampling_ks_and_temperature():
    base = StudentT(df=3.0)
    g = torch.Generator().manual_seed(0)
    x = base.sample((20000,), generator=g, dtype=D64).numpy()
    assert st.kstest(x, st.t(3.0).cdf).pvalue > 0.01
    y = base.sample((20000,), temperature=0.5, generator=g, dtype=D64).numpy()
    assert st.kstest(y, st.t(3.0, scale=0.5).cdf).pvalue > 0.01
    assert st.kstest(y, st.t(3.0).cdf).pvalue < 1e-6          # the temperature does scale
    a = student_t_sample((5,), 3.0, torch.Generator().manual_seed(7))
    b = student_t_sample((5,), 3.0, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    # inverse-CDF noise: unit normals through from_normal are t-distributed too
    n = torch.randn(1000, generator=torch.Generator().manual_seed(1), dtype=D64)
    assert st.kstest(base.from_normal(n).numpy(), st.t(3.0).cdf).pvalue > 0.01


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_student_t_rejects_bad_df(bad):
    with pytest.raises(ValueError, match="df must be a finite number > 0"):
        StudentT(df=bad)
    with pytest.raises(ValueError, match="df must be a finite number > 0"):
        GaussianCopula(2, df=bad)
    with pytest.raises(ValueError, match="df must be a finite number > 0"):
        WaveGlowConfig(**SMALL, base="student_t", base_df=bad)
    with pytest.raises(ValueError, match="base_df must be a number"):
        WaveGlowConfig(**SMALL, base="student_t", base_df="five")


def test_learned_df_stays_positive_and_gets_the_exact_gradient():
    base = StudentT(df=4.0, learn_df=True).double()
    assert base.raw_df.requires_grad and "raw_df" in dict(base.named_parameters())
    z = torch.tensor([[0.3, -2.0, 8.0]], dtype=D64)
    base.log_prob(z).sum().backward()
    v = base.df.item()
    h = 1e-6
    fd = (st.t.logpdf(z.numpy(), v + h).sum() - st.t.logpdf(z.numpy(), v - h).sum()) / (2 * h)
    dsoftplus = 1 / (1 + math.exp(-base.raw_df.item()))
    assert abs(float(base.raw_df.grad) - fd * dsoftplus) < 1e-6
    with torch.no_grad():                 # an optimiser pushing far below 0
        base.raw_df.fill_(-50.0)
    assert base.df.item() > 0 and torch.isfinite(base.log_prob(z)).all()
    assert not StudentT(df=4.0).raw_df.requires_grad            # fixed df: a buffer


def _random_copula(c=3, df=4.0, seed=0):
    cop = GaussianCopula(c, df=df).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        cop.offdiag.copy_(torch.randn(c, c, generator=g, dtype=D64))
        cop.log_diag.copy_(0.3 * torch.randn(c, generator=g, dtype=D64))
    return cop


def test_copula_log_prob_matches_direct_computation():
    cop = _random_copula()
    R = cop.correlation().detach().numpy()
    assert np.allclose(np.diag(R), 1.0) and np.all(np.linalg.eigvalsh(R) > 0)
    assert abs(R[1, 0]) > 0.05                               # really correlated
    z = 2 * torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(1), dtype=D64)
    z[0, 0, 0] = 40.0                                        # far in a tail
    zn = z.numpy()
    ref = []
    for b in range(2):
        x = zn[b].T                                          # (positions, channels)
        q = st.norm.isf(st.t.sf(x, 4.0))
        copula = st.multivariate_normal(np.zeros(3), R).logpdf(q) - st.norm.logpdf(q).sum(-1)
        ref.append((copula + st.t.logpdf(x, 4.0).sum(-1)).sum())
    np.testing.assert_allclose(cop.log_prob(z).detach().numpy(), ref, rtol=1e-9)
    # scale: the density of scale * (copula draw)
    cop.scale = 0.5
    np.testing.assert_allclose(cop.log_prob(0.5 * z).detach().numpy(),
                               np.array(ref) - 12 * math.log(0.5), rtol=1e-9)


def test_copula_gradients_and_errors():
    cop = _random_copula(c=2)
    z = torch.randn(1, 2, 3, generator=torch.Generator().manual_seed(2), dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: cop.log_prob(a), (z,))
    cop.log_prob(z).sum().backward()
    assert cop.offdiag.grad is not None and cop.offdiag.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="over 2 channels"):
        cop.log_prob(torch.zeros(1, 3, 4, dtype=D64))
    with pytest.raises(ValueError, match="learn_df"):
        GaussianCopula(2, learn_df=True)
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        GaussianCopula(0)


def test_copula_sampling_marginals_and_correlation():
    cop = _random_copula(c=3, df=3.0, seed=3)
    L = cop.cholesky(D64).detach()
    n = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(4), dtype=D64)
    x = cop.from_normal(n)
    # the normal scores of a draw are the correlated normals L n (exactly): the copula is R's
    q = student_t_to_normal(x, 3.0)
    assert torch.allclose(q, torch.einsum("ij,bjt->bit", L, n), atol=1e-9)
    x = cop.sample((600, 3), generator=torch.Generator().manual_seed(0), dtype=D64)
    for c in range(3):
        assert st.kstest(x[:, c].numpy(), st.t(3.0).cdf).pvalue > 0.01
    y = cop.sample((300, 3), temperature=2.0, generator=torch.Generator().manual_seed(0), dtype=D64)
    assert st.kstest(y[:, 0].numpy(), st.t(3.0, scale=2.0).cdf).pvalue > 0.01


def test_registry_and_build_base():
    assert {"normal", "logistic", "student_t", "gaussian_copula"} <= set(BASE_DISTRIBUTIONS)
    assert BASE_DISTRIBUTIONS.names(learn_df=True) == ["student_t"]
    t = build_base("student_t", df=2.0, learn_df=True)
    assert isinstance(t, StudentT) and t.learn_df and abs(t.df.item() - 2.0) < 1e-6
    assert isinstance(build_base(None), Normal)
    cop = build_base("gaussian_copula", df=6.0, channels=4)
    assert cop.channels == 4 and cop.df.item() == 6.0
    with pytest.raises(ValueError, match="unknown base distribution 'cauchy'"):
        build_base("cauchy")
    with pytest.raises(ValueError, match="has no degrees of freedom"):
        build_base("normal", df=3.0)
    with pytest.raises(ValueError, match="needs the number of channels"):
        build_base("gaussian_copula")


@pytest.mark.parametrize("kind", ["student_t", "gaussian_copula"])
def test_every_flow_takes_the_heavy_tailed_bases(kind):
    torch.manual_seed(0)
    base = build_base(kind, df=3.0, channels=2)
    flow = Flow(base, Sequential(ActNorm(2), AffineCoupling(2))).double()
    x = torch.randn(4, 2, 6, dtype=D64)
    z, logdet = flow.bijector(x)
    assert torch.allclose(flow.log_prob(x), base.log_prob(z) + logdet)
    s = flow.sample((3, 2, 6), generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 2, 6) and torch.isfinite(s).all()
    flow.nll(x).backward()
    assert all(p.grad is not None for p in flow.bijector.parameters() if p.requires_grad)


def _waveglow(**kw):
    torch.manual_seed(0)
    m = WaveGlow(n_mels=8, hop_length=16, n_group=4, n_flows=2, n_early_every=1, n_early_size=1,
                 wn_layers=2, wn_channels=8, **kw).double()
    if m.prior_net is not None:
        torch.nn.init.normal_(m.prior_net.weight, std=0.3)
    return m


@pytest.mark.parametrize("prior", ["none", "mel"])
def test_waveglow_student_t_base_log_prob_is_exact(prior):
    m = _waveglow(base="student_t", base_df=4.0, learn_df=True, prior=prior)
    audio, mel = torch.randn(2, 64, dtype=D64), torch.randn(2, 8, 4, dtype=D64)
    z, logdet = m(audio, mel)
    ls = m.prior_log_scale(mel)
    s = 0.7 * (torch.ones_like(z) if ls is None else torch.exp(ls).expand_as(z))
    ref = st.t.logpdf(z.detach().numpy(), m.base.df.item(), scale=s.detach().numpy()).reshape(2, -1).sum(1)
    np.testing.assert_allclose(m.base_log_prob(z, mel, 0.7).detach().numpy(), ref, rtol=1e-10)
    out = m(audio, mel, sigma=1.0)
    assert torch.allclose(out["log_prob"].double(), m.log_prob(audio, mel), rtol=1e-5)   # float32
    out["log_prob"].sum().backward()
    assert m.base.raw_df.grad is not None and float(m.base.raw_df.grad.abs()) > 0


def test_waveglow_copula_base_log_prob_is_exact_with_the_prior():
    m = _waveglow(base="gaussian_copula", base_df=5.0, prior="mel")
    with torch.no_grad():
        m.base.offdiag.copy_(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))
    audio, mel = torch.randn(1, 64, dtype=D64), torch.randn(1, 8, 4, dtype=D64)
    z, _ = m(audio, mel)
    s = 0.8 * torch.exp(m.prior_log_scale(mel)).expand_as(z)
    e = (z / s).detach().numpy()[0].T                       # (positions, channels)
    q = st.norm.isf(st.t.sf(e, 5.0))
    R = m.base.correlation().detach().numpy()
    ref = (st.multivariate_normal(np.zeros(4), R).logpdf(q).sum() - st.norm.logpdf(q).sum()
           + st.t.logpdf(e, 5.0).sum() - np.log(s.detach().numpy()).sum())
    assert abs(m.base_log_prob(z, mel, 0.8).item() - ref) < 1e-8


def test_waveglow_student_t_synthesis_noise_and_reconstruction():
    m = _waveglow(base="student_t", base_df=3.0, prior="mel")
    audio, mel = 0.1 * torch.randn(1, 64, dtype=D64), torch.randn(1, 8, 4, dtype=D64)
    with torch.no_grad():
        z, _ = m(audio, mel)
        e = z / torch.exp(m.prior_log_scale(mel))           # the standard t draws of this audio
        n = student_t_to_normal(e, m.base.df.item())          # as unit-normal noise
        assert torch.allclose(m.infer(mel, sigma=1.0, noise=n), audio, atol=1e-9)
        a = m.infer(mel, generator=torch.Generator().manual_seed(3))
        b = m.infer(mel, generator=torch.Generator().manual_seed(3))
        assert torch.equal(a, b) and torch.isfinite(a).all()
    # sigma scales the t draws: sigma 0 is the mode, whatever the noise
    with torch.no_grad():
        assert torch.allclose(m.infer(mel, sigma=0.0, noise=n), m.infer(mel, sigma=0.0, noise=2 * n))


def test_waveglow_config_base_options():
    cfg = WaveGlowConfig(**SMALL, base="student_t", base_df=5, learn_df=True)
    assert WaveGlowConfig.from_dict(cfg.to_dict()) == cfg and cfg.base_df == 5.0
    assert WaveGlowConfig(**SMALL).base == "normal"
    with pytest.raises(ValueError, match="unknown base distribution 'gauss'"):
        WaveGlowConfig(**SMALL, base="gauss")
    with pytest.raises(ValueError, match="cannot learn degrees of freedom"):
        WaveGlowConfig(**SMALL, learn_df=True)
    # the learned df is part of the weights
    m = _waveglow(base="student_t", base_df=4.0, learn_df=True)
    with torch.no_grad():
        m.base.raw_df.fill_(0.3)
    m2 = WaveGlow(m.config).double()
    m2.load_state_dict(m.state_dict())
    assert m2.base.df.item() == pytest.approx(m.base.df.item())


def test_export_refuses_a_heavy_tailed_base():
    from vocoflow.vocoders.export import export_problem

    assert export_problem(_waveglow(), "onnx") is None
    msg = export_problem(_waveglow(base="student_t"), "torchscript")
    assert msg is not None and "base student_t cannot be exported" in msg


def test_float32_inverse_cdf_is_float32_exact():
    n = torch.linspace(-6, 6, 49)
    ref = student_t_from_normal(n.double(), 4.0).float()
    assert torch.allclose(student_t_from_normal(n, 4.0), ref, rtol=3e-7, atol=0)


def test_saved_student_t_vocoder_round_trip(tmp_path):
    from vocoflow.audio import get_preset
    from vocoflow.vocoders import load, save_vocoder

    cfg = {"model": {"type": "waveglow", "n_mels": 80, "hop_length": 256, "n_group": 8,
                     "n_flows": 2, "n_early_every": 0, "wn_layers": 2, "wn_channels": 8,
                     "base": "student_t", "base_df": 3.0, "learn_df": True},
           "features": get_preset("asterisk16k").to_dict()}
    torch.manual_seed(0)
    model = WaveGlow(cfg["model"])
    with torch.no_grad():
        model.base.raw_df.fill_(1.5)                         # a "learned" df
    d = save_vocoder(model, cfg, tmp_path / "voc")
    voc = load(d)
    assert isinstance(voc.model.base, StudentT)
    assert voc.model.base.df.item() == pytest.approx(model.base.df.item())
    mel = torch.full((80, 3), -5.0)
    noise = torch.randn(1, 3 * 256, generator=torch.Generator().manual_seed(0))
    a = voc.synthesize(mel, noise=noise, sigma=0.5, denoise=0.0)
    with torch.no_grad():                                   # the unit-normal noise became t draws
        b = model.infer(mel[None], sigma=0.5, noise=noise)[0]
    assert torch.allclose(a, b, atol=1e-5) and torch.isfinite(a).all()


def test_image_flows_take_a_student_t_prior():
    from vocoflow.images.models import build_image_flow

    model = build_image_flow({"type": "glow", "levels": 2, "steps": 1, "hidden": 8,
                              "prior": "student_t"}, (1, 4, 4))
    assert isinstance(model.base, StudentT)
    x = torch.randint(0, 256, (3, 1, 4, 4))
    bpd = model.bits_per_dim(x, torch.rand(3, 1, 4, 4))
    assert bpd.shape == (3,) and torch.isfinite(bpd).all()
    assert model.sample_images(2, temperature=0.7).dtype == torch.uint8
    with pytest.raises(ValueError, match="prior must be one of .*student_t.*not 'gaussian_copula'"):
        build_image_flow({"type": "glow", "levels": 2, "steps": 1, "hidden": 8,
                          "prior": "gaussian_copula"}, (1, 4, 4))
