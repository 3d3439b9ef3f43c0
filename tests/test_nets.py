"""Conditioner networks: WN (zero init, causality, GEMM path == conv path) and MelUpsampler."""

from __future__ import annotations

import pytest
import torch

from flowcheck import randomize
from vocoflow.nets.upsample import MelUpsampler
from vocoflow.nets.wavenet import WN


def _wn(causal=False, cond=6, **kw):
    torch.manual_seed(0)
    kw = {"n_layers": 3, "n_channels": 8, **kw}
    return randomize(WN(3, 4, cond, causal=causal, **kw).double(), std=0.3)


def test_output_is_zero_at_init():
    net = WN(3, 4, 5, n_layers=2, n_channels=8)
    x, c = torch.randn(2, 3, 20), torch.randn(2, 5, 20)
    assert torch.equal(net(x, c), torch.zeros(2, 4, 20))
    with torch.no_grad():
        assert torch.equal(net(x, c), torch.zeros(2, 4, 20))


@pytest.mark.parametrize("causal,block", [(False, 2048), (True, 2048), (False, 5), (True, 16)])
def test_gemm_inference_path_equals_conv_training_path(causal, block, monkeypatch):
    monkeypatch.setattr(WN, "gemm_block", block)
    net = _wn(causal)
    x = torch.randn(2, 3, 37, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 6, 37, dtype=torch.float64)
    ref = net(x, c)  # autograd needed: conv path
    with torch.inference_mode():
        fast = net(x.detach(), c)
    assert torch.allclose(ref, fast, atol=1e-12)
    net.remove_weight_norm()
    assert not net.has_weight_norm()
    with torch.no_grad():
        assert torch.allclose(net(x, c), ref, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("block,T", [(3, 29), (7, 50), (64, 50), (4096, 9)])
def test_gemm_path_wide_kernel_and_margins(causal, block, T, monkeypatch):
    """Taps read a zero-margined buffer: dilations wider than a block or the whole input,
    unequal last blocks, kernel 5 (causal and not) must all equal the conv path."""
    monkeypatch.setattr(WN, "gemm_block", block)
    net = _wn(causal, n_layers=5, kernel_size=5)
    x = torch.randn(2, 3, T, dtype=torch.float64)
    c = torch.randn(2, 6, T, dtype=torch.float64)
    with torch.enable_grad():
        ref = net(x.clone().requires_grad_(), c)
    with torch.inference_mode():
        fast = net(x, c)
    assert torch.allclose(ref, fast, atol=1e-12)


@pytest.mark.parametrize("kernel,cond", [(2, 6), (3, 6), (1, 6), (3, 0)])
def test_step_by_step_equals_the_parallel_pass(kernel, cond):
    """WN.step fed x[t - 1] (zeros at t = 0) gives forward(x)[..., t], across cached blocks of
    conditioning, for queues shorter and longer than the sequence."""
    net = _wn(causal=True, cond=cond, n_layers=4, kernel_size=kernel, dilation_cycle=3)
    T = 23
    x = torch.randn(2, 3, T, dtype=torch.float64)
    c = torch.randn(2, cond, T, dtype=torch.float64) if cond else None
    ref = net(x.clone().requires_grad_(), c).detach()  # the convolution path
    cache = net.init_cache(2)
    prev = torch.zeros(2, 3, dtype=torch.float64)
    steps = []
    with torch.no_grad():
        for t0 in range(0, T, 5):
            proj = net.conditioning(c[..., t0:t0 + 5]) if cond else None
            for t in range(t0, min(T, t0 + 5)):
                steps.append(net.step(prev, cache, None if proj is None else proj[:, t - t0]))
                prev = x[..., t]
    assert cache.position == T
    assert torch.allclose(torch.stack(steps, dim=-1), ref, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="causal"):
        _wn(causal=False).init_cache(1)


def test_unconditioned_and_short_inputs():
    net = randomize(WN(2, 2, 0, n_layers=4, n_channels=4).double(), std=0.3)
    x = torch.randn(1, 2, 3, dtype=torch.float64)  # shorter than the dilations
    with torch.no_grad():
        fast = net(x)
    assert torch.allclose(fast, net(x.requires_grad_()), atol=1e-12)


@pytest.mark.parametrize("path", ["conv", "gemm"])
def test_causal_variant_is_strictly_causal(path):
    net = _wn(causal=True)
    T, t0 = 40, 17
    x = torch.randn(1, 3, T, dtype=torch.float64)
    c = torch.randn(1, 6, T, dtype=torch.float64)
    x2 = x.clone()
    x2[..., t0] += 1.0
    ctx = torch.enable_grad() if path == "conv" else torch.no_grad()
    with ctx:
        xs = [v.requires_grad_(path == "conv") for v in (x, x2)]
        diff = (net(xs[1], c) - net(xs[0], c)).abs().sum(1)[0].detach()
    changed = (diff > 0).nonzero().flatten()
    assert changed.min().item() == t0 + 1  # not at t0 itself: strictly causal
    assert (diff[: t0 + 1] == 0).all()
    # the receptive field reaches back (kernel-1) * sum(dilations) + 1 steps
    assert changed.max().item() == min(T - 1, t0 + net.context[0])


def test_noncausal_receptive_field():
    net = _wn(causal=False)
    x = torch.randn(1, 3, 60, dtype=torch.float64)
    x2 = x.clone()
    x2[..., 30] += 1
    c = torch.randn(1, 6, 60, dtype=torch.float64)
    with torch.no_grad():
        changed = ((net(x2, c) - net(x, c)).abs().sum(1)[0] > 0).nonzero().flatten()
    left, right = net.context
    assert changed.min().item() == 30 - left and changed.max().item() == 30 + right
    assert net.receptive_field == left + right + 1


def test_bf16_weights_cast_in_and_out():
    net = _wn().float().to(torch.bfloat16)
    x, c = torch.randn(2, 3, 16), torch.randn(2, 6, 16)
    with torch.no_grad():
        out = net(x, c)
    assert out.dtype == torch.float32
    ref = _wn().float()(x, c)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3


def test_fused_conditioning_layer_and_weight_norm():
    net = WN(3, 4, 5, n_layers=4, n_channels=8)
    assert net.cond_layer.weight.shape == (2 * 8 * 4, 5, 1)
    assert net.has_weight_norm()
    names = dict(net.named_parameters())
    assert "in_layers.0.parametrizations.weight.original0" in names  # weight-norm g


def test_bad_shapes():
    net = WN(3, 4, 5, n_layers=1, n_channels=4)
    with pytest.raises(ValueError, match="cond"):
        net(torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match=r"\(B, 3, T\)"):
        net(torch.randn(1, 2, 8), torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match="odd"):
        WN(3, 4, 0, kernel_size=2)


@pytest.mark.parametrize("mode,kernel", [("transpose", None), ("transpose", 16), ("transpose", 13),
                                         ("transpose", 8), ("repeat", None)])
@pytest.mark.parametrize("frames", [1, 2, 5])
def test_upsampler_exact_length(mode, kernel, frames):
    up = MelUpsampler(3, hop=8, mode=mode, kernel_size=kernel)
    assert up(torch.randn(2, 3, frames)).shape == (2, 3, frames * 8)


def test_upsampler_is_centred_on_its_frame():
    up = MelUpsampler(1, hop=4, kernel_size=12)
    with torch.no_grad():
        up.conv.weight.fill_(1.0)
        up.conv.bias.zero_()
    mel = torch.zeros(1, 1, 9)
    mel[..., 4] = 1.0
    out = up(mel)[0, 0]
    support = (out != 0).nonzero().flatten()
    # frame 4 covers samples [16, 20); the 12-tap kernel extends 4 samples on either side
    assert support.min().item() == 12 and support.max().item() == 23
    assert up.context_frames == (1, 1)


def test_upsampler_context_frames():
    up = MelUpsampler(2, hop=256)  # kernel 1024: two frames on either side
    assert up.context_frames == (2, 2)
    mel = torch.randn(1, 2, 12)
    mel2 = mel.clone()
    mel2[..., 6] += 1
    changed = ((up(mel2) - up(mel)).abs().sum(1)[0] > 0).nonzero().flatten()
    assert changed.min().item() // 256 == 6 - 2 and changed.max().item() // 256 == 6 + 2


@pytest.mark.parametrize("kernel", [8, 13, 32])
def test_upsampler_gemm_equals_conv_transpose(kernel):
    import torch.nn.functional as F

    up = MelUpsampler(3, hop=8, kernel_size=kernel).double()
    mel = torch.randn(2, 3, 6, dtype=torch.float64)
    ref = F.conv_transpose1d(mel, up.conv.weight, up.conv.bias, stride=8)
    assert torch.allclose(up(mel), ref[..., up.left: up.left + 48], atol=1e-12)


def test_upsampler_blocks_give_the_same_result(monkeypatch):
    up = MelUpsampler(3, hop=8, kernel_size=20).double()
    mel = torch.randn(2, 3, 11, dtype=torch.float64)
    ref = up(mel)
    monkeypatch.setattr(MelUpsampler, "block_values", 3 * 24 * 2)  # two frames per GEMM
    assert torch.allclose(up(mel), ref, atol=1e-12)
