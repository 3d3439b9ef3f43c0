"""Property-based checks over shapes, groups and seeds (hypothesis)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowcheck import jacobian_logdet, randomize
from vocoflow.flows import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Inverse,
    Invertible1x1Conv,
    MixLogisticCoupling,
    Sequential,
    Shuffle,
    Split,
    Squeeze,
)

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _waveglow_like(n_group, n_flows, early_every, n_early, cond_ch, seed):
    """A WaveGlow-shaped stack built recursively from Split."""
    def level(channels, k):
        steps = []
        for i in range(k, n_flows):
            if i > k and (i - k) % early_every == 0 and channels - n_early >= 2:
                return Sequential(*steps, Split(n_early, level(channels - n_early, i)))
            steps += [Invertible1x1Conv(channels, lu=bool(i % 2), seed=seed + i),
                      AffineCoupling(channels, cond_channels=cond_ch, hidden=4, n_layers=2,
                                     parity=i % 2)]
        return Sequential(*steps)
    return Sequential(Squeeze(n_group), level(n_group, 0))


@SETTINGS
@given(n_group=st.sampled_from([2, 4, 8]), n_flows=st.integers(1, 4),
       early_every=st.integers(1, 3), frames=st.integers(1, 3), seed=st.integers(0, 10_000),
       use_cond=st.booleans())
def test_waveglow_like_stacks_are_exact(n_group, n_flows, early_every, frames, seed, use_cond):
    torch.manual_seed(seed)
    cond_ch = 2 if use_cond else 0
    flow = _waveglow_like(n_group, n_flows, early_every, 2, cond_ch, seed).double()
    randomize(flow, std=0.2, seed=seed)
    x = torch.randn(2, 1, n_group * frames, dtype=torch.float64)
    cond = torch.randn(2, 2, frames, dtype=torch.float64) if use_cond else None
    z, ld = flow(x, cond)
    assert z.shape == (2, n_group, frames)
    assert (flow.inverse(z, cond)[0] - x).abs().max() < 1e-9
    ref = jacobian_logdet(lambda i: flow(i, cond)[0], x)
    assert torch.allclose(ld, ref, atol=1e-7, rtol=0)


@SETTINGS
@given(factor=st.integers(1, 4), channels=st.integers(1, 3), steps=st.integers(1, 4),
       image=st.booleans(), seed=st.integers(0, 1000))
def test_squeeze_round_trip(factor, channels, steps, image, seed):
    g = torch.Generator().manual_seed(seed)
    shape = (2, channels, factor * steps, factor * steps) if image else (2, channels,
                                                                          factor * steps)
    x = torch.randn(shape, generator=g)
    z, ld = Squeeze(factor)(x)
    assert z.shape[1] == channels * factor ** (2 if image else 1)
    assert torch.equal(Squeeze(factor).inverse(z)[0], x)
    assert torch.equal(Inverse(Squeeze(factor))(z)[0], x)
    assert torch.equal(ld, torch.zeros(2))


@SETTINGS
@given(channels=st.integers(2, 6), kind=st.sampled_from(["additive", "affine", "mixlogistic"]),
       mask=st.sampled_from(["channel", "checkerboard"]), parity=st.integers(0, 1),
       seed=st.integers(0, 1000))
def test_couplings_invert_for_any_partition(channels, kind, mask, parity, seed):
    torch.manual_seed(seed)
    cls = {"additive": AdditiveCoupling, "affine": AffineCoupling,
           "mixlogistic": MixLogisticCoupling}[kind]
    ndim = 2 if mask == "checkerboard" else 1
    layer = cls(channels, mask=mask, parity=parity, ndim=ndim, hidden=4, n_layers=2).double()
    randomize(layer, std=0.3, seed=seed)
    shape = (2, channels, 3, 3) if ndim == 2 else (2, channels, 5)
    x = torch.randn(shape, dtype=torch.float64)
    z, ld = layer(x)
    tol = 1e-6 if kind == "mixlogistic" else 1e-9
    assert (layer.inverse(z)[0] - x).abs().max() < tol
    assert torch.allclose(ld, jacobian_logdet(lambda i: layer(i)[0], x), atol=1e-7, rtol=0)


@SETTINGS
@given(channels=st.integers(1, 8), seed=st.integers(0, 1000))
def test_permutation_and_actnorm_round_trip(channels, seed):
    torch.manual_seed(seed)
    x = torch.randn(3, channels, 7, dtype=torch.float64) * 3 + 1
    flow = Sequential(ActNorm(channels), Shuffle(channels, seed=seed)).double()
    z, ld = flow(x)
    assert torch.allclose(flow.inverse(z)[0], x, atol=1e-12)
    assert torch.allclose(ld, jacobian_logdet(lambda i: flow(i)[0], x), atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float32_and_float64_agree(dtype):
    torch.manual_seed(0)
    layer = randomize(AffineCoupling(4, cond_channels=2, hidden=8), std=0.2).to(dtype)
    x, c = torch.randn(2, 4, 16, dtype=dtype), torch.randn(2, 2, 16, dtype=dtype)
    z, _ = layer(x, c)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert (layer.inverse(z, c)[0] - x).abs().max() < tol
