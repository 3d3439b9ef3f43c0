"""WaveNet-like conditioner ``WN`` (the network inside every WaveGlow coupling).

The architecture is the non-autoregressive WaveNet stack of WaveGlow (Prenger et al., 2019,
"WaveGlow: A Flow-based Generative Network for Speech Synthesis"), after WaveNet (van den Oord et
al., 2016): a 1x1 start convolution, ``n_layers`` dilated convolutions (dilation ``2**i``) with
gated ``tanh * sigmoid`` units, residual and skip 1x1 convolutions, and a zero-initialised 1x1
output layer so the coupling it drives starts as the identity. The conditioning of all layers is
computed by one fused 1x1 convolution ``cond_channels -> 2 * n_channels * n_layers``.

Every way of running the network lives here, and all compute the same function:

* training (autograd needed): ``torch.nn.functional.conv1d`` on the weight-normalised weights;
* inference (no autograd): every convolution is a GEMM on strided views of a zero-margined
  state buffer, over blocks of time steps (see :meth:`WN._forward_gemm`): each tap of a dilated
  convolution reads the buffer shifted by its offset (no im2col copy), the layer's slice of the
  fused conditioning convolution is one more GEMM accumulating into the same output (no
  ``2*C*L x T`` conditioning tensor in memory), biases ride on rows of ones, and the residual
  and skip 1x1 convolutions are a single GEMM. On this project's 2-core CPU a WN of WaveGlow's
  default size runs at about 88-90 % of the same machine's 2048^3 float32 matmul rate (1 or 2
  threads) and the default WaveGlow as a whole at 80-84 % (``vocoflow benchmark``);
* causal inference in time blocks (:class:`BlockedWN`, the IAF students' conditioner): per
  block and layer the dilated taps come from a short per-layer history, and the skip weights are
  folded into the output layer;
* one step at a time (causal only, autoregressive sampling): :meth:`WN.init_cache`,
  :meth:`WN.conditioning` and :meth:`WN.step` keep per-layer queues of past inputs, so a step
  costs ``O(layers)`` whatever the receptive field.

``WN`` runs in the dtype of its weights: an input of another dtype is cast in and the output cast
back, which is how the bfloat16 synthesis path keeps the conditioner in bf16 and the coupling
arithmetic in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["WN", "BlockedWN", "WNStepCache"]


def _wn_conv(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1):
    return weight_norm(nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation),
                       name="weight")


class WN(nn.Module):
    """WaveGlow's WaveNet-like conditioner network (Prenger et al., 2019; van den Oord et al.,
    2016): ``net(x, cond) -> params``.

    Args:
        in_channels: channels of ``x`` (the fixed half of a coupling).
        out_channels: channels of the output (the coupling's parameters).
        cond_channels: channels of ``cond`` (0: unconditioned).
        n_layers: dilated layers, dilation ``2**i``.
        n_channels: hidden (residual) width; the gate has ``2 * n_channels``.
        kernel_size: odd kernel of the dilated convolutions (``causal=False``).
        causal: strictly causal in time: the output at ``t`` depends on ``x[..., :t]`` only
            (the input is shifted right by one step, the convolutions are padded on the left).
            ``cond`` is not shifted (it is not the variable being modelled). For inverse
            autoregressive students.
        dilation_cycle: dilations restart every this many layers (``2**(i % cycle)``, as in
            WaveNet's stacks of 10); ``None``: no restart (``2**i``).

    Weight norm (``torch.nn.utils.parametrizations.weight_norm``) is on every convolution but the
    zero-initialised output layer; :meth:`remove_weight_norm` folds it for inference.

    >>> import torch
    >>> net = WN(4, 8, cond_channels=16, n_layers=3, n_channels=32)
    >>> x, c = torch.randn(2, 4, 50), torch.randn(2, 16, 50)
    >>> out = net(x, c)
    >>> out.shape, bool((out == 0).all())        # zero-initialised output layer
    (torch.Size([2, 8, 50]), True)
    >>> net.receptive_field
    15
    """

    #: time steps per GEMM block on the inference path (see :meth:`_forward_gemm`)
    gemm_block: int = 4096

    def __init__(self, in_channels: int, out_channels: int, cond_channels: int = 0,
                 n_layers: int = 8, n_channels: int = 256, kernel_size: int = 3,
                 causal: bool = False, dilation_cycle: int | None = None):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        if kernel_size < 1 or (not causal and kernel_size % 2 == 0):
            raise ValueError(f"kernel_size must be odd (non-causal 'same' padding), got {kernel_size}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.cond_channels = int(cond_channels)
        self.n_layers = int(n_layers)
        self.n_channels = int(n_channels)
        self.kernel_size = int(kernel_size)
        self.causal = bool(causal)
        if dilation_cycle is not None and int(dilation_cycle) < 1:
            raise ValueError(f"dilation_cycle must be >= 1, got {dilation_cycle}")
        self.dilation_cycle = None if dilation_cycle is None else int(dilation_cycle)
        n = self.n_channels
        self.start = _wn_conv(in_channels, n)
        self.in_layers = nn.ModuleList(
            _wn_conv(n, 2 * n, kernel_size, dilation=d) for d in self.dilations
        )
        self.res_skip_layers = nn.ModuleList(
            _wn_conv(n, 2 * n if i < n_layers - 1 else n) for i in range(n_layers)
        )
        self.cond_layer = _wn_conv(cond_channels, 2 * n * n_layers) if cond_channels else None
        self.end = nn.Conv1d(n, out_channels, 1)
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)

    # ------------------------------------------------------------------------------ info
    @property
    def dilations(self) -> list[int]:
        cycle = self.dilation_cycle or self.n_layers
        return [2 ** (i % cycle) for i in range(self.n_layers)]

    @property
    def receptive_field(self) -> int:
        """Number of time steps of ``x`` that one output step can depend on."""
        return 1 + (self.kernel_size - 1) * sum(self.dilations)

    @property
    def context(self) -> tuple[int, int]:
        """``(left, right)`` input steps an output step depends on beyond its own position."""
        span = (self.kernel_size - 1) * sum(self.dilations)
        if self.causal:
            return span + 1, 0
        return span // 2, span // 2

    def macs_per_step(self) -> int:
        """Multiply-accumulates per time step (weights only; biases and gates not counted)."""
        n, k, L = self.n_channels, self.kernel_size, self.n_layers
        macs = self.in_channels * n + L * k * n * 2 * n + (L - 1) * n * 2 * n + n * n
        macs += self.cond_channels * 2 * n * L + n * self.out_channels
        return macs

    def has_weight_norm(self) -> bool:
        return parametrize.is_parametrized(self.start)

    def remove_weight_norm(self) -> "WN":
        """Fold the weight-norm parametrisation into plain weights (for inference)."""
        for m in self._wn_modules():
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        return self

    def _wn_modules(self):
        yield self.start
        yield from self.in_layers
        yield from self.res_skip_layers
        if self.cond_layer is not None:
            yield self.cond_layer

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}, out={self.out_channels}, cond={self.cond_channels}, "
                f"layers={self.n_layers}, channels={self.n_channels}, kernel={self.kernel_size}, "
                f"causal={self.causal}")

    # ------------------------------------------------------------------------------ forward
    def _offsets(self, dilation: int) -> list[int]:
        """Input offset of each kernel tap relative to the output position."""
        k = self.kernel_size
        if self.causal:
            return [(j - (k - 1)) * dilation for j in range(k)]
        return [(j - (k - 1) // 2) * dilation for j in range(k)]

    def _check(self, x, cond):
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"WN expects x of shape (B, {self.in_channels}, T), got {tuple(x.shape)}")
        if self.cond_channels:
            if cond is None:
                raise ValueError("this WN was built with cond_channels > 0: pass cond")
            if cond.shape != (x.shape[0], self.cond_channels, x.shape[2]):
                raise ValueError(f"cond must be (B, {self.cond_channels}, T) = "
                                 f"{(x.shape[0], self.cond_channels, x.shape[2])}, got {tuple(cond.shape)}")

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        self._check(x, cond)
        out_dtype = x.dtype
        w_dtype = self.end.weight.dtype
        if x.dtype != w_dtype:
            x = x.to(w_dtype)
        if cond is not None and self.cond_channels and cond.dtype != w_dtype:
            cond = cond.to(w_dtype)
        if self.causal:
            x = F.pad(x, (1, 0))[..., :-1]
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or (cond is not None and cond.requires_grad)
            or any(p.requires_grad for p in self.parameters())
        )
        # the GEMM path loops over batch items and time blocks in Python: a traced graph
        # (TorchScript/ONNX export) would bake the traced shape in, so tracing takes the conv path
        if needs_grad or x.shape[2] == 0 or torch.jit.is_tracing():
            out = self._forward_conv(x, cond)
        else:
            out = torch.stack([self._forward_gemm(x[b], None if cond is None or not self.cond_channels
                                                  else cond[b]) for b in range(x.shape[0])])
        return out if out.dtype == out_dtype else out.to(out_dtype)

    def _forward_conv(self, x, cond):
        n = self.n_channels
        h = self.start(x)
        c = self.cond_layer(cond) if self.cond_layer is not None else None
        skip = None
        for i, (conv, res) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            d = conv.dilation[0]
            if self.causal:
                a = F.conv1d(F.pad(h, ((self.kernel_size - 1) * d, 0)), conv.weight, conv.bias,
                             dilation=d)
            else:
                a = F.conv1d(h, conv.weight, conv.bias, dilation=d,
                             padding=(self.kernel_size - 1) // 2 * d)
            if c is not None:
                a = a + c[:, 2 * n * i: 2 * n * (i + 1)]
            acts = torch.tanh(a[:, :n]) * torch.sigmoid(a[:, n:])
            rs = res(acts)
            if i < self.n_layers - 1:
                h = h + rs[:, :n]
                skip = rs[:, n:] if skip is None else skip + rs[:, n:]
            else:
                skip = rs if skip is None else skip + rs
        return self.end(skip)

    @torch.no_grad()
    def _forward_gemm(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """One batch item ``x (C_in, T)``, ``cond (C_c, T)``: every convolution as a GEMM.

        The layer state lives in a buffer with rows ``[ones; h; skip]`` (``2 * n + 1`` rows)
        whose ``h`` rows carry zero margins wide enough for the largest dilated tap, so every
        tap of a dilated convolution is a plain strided view of the buffer, used as a GEMM
        operand without any copy: ``a = W_cond @ cond + [b | W_0] @ [1; h(t + o_0)] +
        sum_j W_j @ h(t + o_j)``. The ones row carries the layer's bias (conv + conditioning)
        through the first tap's GEMM, and a ones row under the gated activations carries the
        residual/skip bias, so no separate bias passes are made. The residual and skip 1x1
        convolutions are one GEMM (``2n x n``) that reads ``[h; skip]`` and writes the next
        layer's ``[h; skip]`` into a second buffer of the same shape (the next blocks of the
        current layer still read its input). Work proceeds over blocks of about
        :attr:`gemm_block` time steps (equal blocks) so that the gate pre-activations and
        activations stay in cache. Working memory: two ``(2n + 1) x (T + margins)`` buffers
        plus the per-block buffers.
        """
        n, k, L, T = self.n_channels, self.kernel_size, self.n_layers, x.shape[1]
        cc = self.cond_channels if cond is not None else 0
        offsets = [self._offsets(conv.dilation[0]) for conv in self.in_layers]
        pad_l = max(0, max(-o for offs in offsets for o in offs))
        pad_r = max(0, max(o for offs in offsets for o in offs))
        width = pad_l + T + pad_r
        # blocks help CPU caches; on accelerators one block avoids launch overhead
        if x.device.type == "cpu" and T > 0:
            n_blocks = -(-T // max(1, int(self.gemm_block)))
            blk = -(-T // n_blocks)
        else:
            blk = max(T, 1)
        bufs = []
        for _ in range(2 if L > 1 else 1):
            b = x.new_empty(2 * n + 1, width)
            b[0].fill_(1.0)
            b[1:n + 1, :pad_l].zero_()
            b[1:n + 1, pad_l + T:].zero_()
            bufs.append(b)
        cur = bufs[0]
        inner = slice(pad_l, pad_l + T)
        cur[n + 1:, inner].zero_()  # skip accumulator
        w = self.start.weight
        torch.addmm(self.start.bias[:, None], w.reshape(w.shape[0], -1), x, out=cur[1:n + 1, inner])
        a_buf = x.new_empty(2 * n, blk)
        g_buf = x.new_empty(n + 1, blk)  # gated activations, plus a row of ones for the bias
        g_buf[n].fill_(1.0)
        wc = self.cond_layer.weight.reshape(2 * n * L, cc) if cc else None
        for i, (conv, res) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            last = i == L - 1
            bias = conv.bias
            if cc:
                rows = slice(2 * n * i, 2 * n * (i + 1))
                w_c, bias = wc[rows], bias + self.cond_layer.bias[rows]
            taps = [conv.weight[:, :, j].contiguous() for j in range(k)]
            taps[0] = torch.cat([bias[:, None], taps[0]], dim=1)  # rides on the ones row
            w_res = torch.cat([res.weight.reshape(res.weight.shape[0], n), res.bias[:, None]], dim=1)
            nxt = cur if last else bufs[1] if cur is bufs[0] else bufs[0]
            for t0 in range(0, T, blk):
                t1 = min(T, t0 + blk)
                m = t1 - t0
                A, G = a_buf[:, :m], g_buf[:, :m]
                c0 = pad_l + t0
                # the first tap also reads the ones row (bias); the others read h only
                offs = offsets[i]
                first = cur[:n + 1, c0 + offs[0]:c0 + offs[0] + m]
                if cc:
                    torch.mm(w_c, cond[:, t0:t1], out=A)
                    A.addmm_(taps[0], first)
                else:
                    torch.mm(taps[0], first, out=A)
                for j in range(1, k):
                    A.addmm_(taps[j], cur[1:n + 1, c0 + offs[j]:c0 + offs[j] + m])
                torch.tanh(A[:n], out=G[:n])
                G[:n].mul_(torch.sigmoid_(A[n:]))
                cols = slice(c0, c0 + m)
                if last:  # skip only
                    cur[n + 1:, cols].addmm_(w_res, G)
                else:  # [h; skip] + W_res @ [acts; 1] into the other buffer
                    torch.addmm(cur[1:, cols], w_res, G, out=nxt[1:, cols])
            cur = nxt
        we = self.end.weight.reshape(self.end.weight.shape[0], n)
        return torch.addmm(self.end.bias[:, None], we, cur[n + 1:, inner])

    # ------------------------------------------------------------------------------ one step
    @torch.no_grad()
    def init_cache(self, batch: int) -> "WNStepCache":
        """A fresh state for :meth:`step` (causal WN only): the weights laid out for one-step
        products and, per layer, a ring buffer of its last ``(kernel - 1) * dilation`` inputs
        (zeros: the causal zero padding), the "fast generation" queues of Paine et al. (2016).
        The weights are read once here, so fold or change them before making a cache."""
        if not self.causal:
            raise ValueError("step-wise evaluation needs a causal WN")
        n, k = self.n_channels, self.kernel_size
        dt, dev = self.end.weight.dtype, self.end.weight.device
        layers = []
        for conv, res in zip(self.in_layers, self.res_skip_layers):
            d = conv.dilation[0]
            wi = conv.weight.permute(0, 2, 1).reshape(2 * n, k * n)  # rows: taps oldest first
            ring = torch.zeros(batch, n, (k - 1) * d, dtype=dt, device=dev) if k > 1 else None
            layers.append((d, wi.t().contiguous(), conv.bias, res.weight[:, :, 0].t().contiguous(),
                           res.bias, ring))
        ws = self.start.weight[:, :, 0].to(dt)
        return WNStepCache(dtype=dt, start=(ws.t(), self.start.bias.to(dt)), layers=layers,
                           end=(self.end.weight[:, :, 0].t().contiguous(), self.end.bias))

    def conditioning(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        """The fused conditioning of every layer for :meth:`step`, time-major: ``cond
        (B, cond_channels, T) -> (B, T, 2 * n_channels * n_layers)`` (``None`` for an
        unconditioned WN). Compute it for a block of steps at a time."""
        if self.cond_layer is None or cond is None:
            return None
        dt = self.end.weight.dtype
        return F.conv1d(cond.to(dt), self.cond_layer.weight, self.cond_layer.bias).transpose(1, 2)

    def step(self, x: torch.Tensor, cache: "WNStepCache",
             cond: torch.Tensor | None = None) -> torch.Tensor:
        """One time step of a causal WN (inference: call it without autograd).

        ``x (B, in_channels)`` is the input *before* this step, ``cond (B, 2 * n_channels *
        n_layers)`` this step's row of :meth:`conditioning`; returns ``(B, out_channels)``.
        Calls ``t = 0, 1, ...`` on one cache with ``x = x[..., t - 1]`` (zeros at ``t = 0``)
        give ``forward(x, cond)[..., t]``: the output at ``t`` depends on ``x[..., :t]`` only,
        which is what ancestral sampling feeds back. Each call advances ``cache.position``.
        Runs in the weights' dtype; the output has the dtype of ``x``."""
        out_dtype, dt = x.dtype, cache.dtype
        if x.dtype != dt:
            x = x.to(dt)
        n, k, t = self.n_channels, self.kernel_size, cache.position
        last = len(cache.layers) - 1
        ws_t, bs = cache.start
        h = torch.addmm(bs, x, ws_t)
        skip = None
        for i, (d, wi, bi, wr, br, ring) in enumerate(cache.layers):
            if ring is not None:
                r = ring.shape[-1]
                taps = [ring[:, :, (t - m * d) % r] for m in range(k - 1, 0, -1)]
                inp = torch.cat(taps + [h], dim=1)
                ring[:, :, t % r] = h
            else:
                inp = h
            bias = bi if cond is None else bi + cond[:, 2 * n * i:2 * n * (i + 1)]
            a = torch.addmm(bias, inp, wi) if bias.dim() == 1 else inp @ wi + bias
            acts = torch.tanh(a[:, :n]) * torch.sigmoid(a[:, n:])
            rs = torch.addmm(br, acts, wr)
            if i < last:
                h = h + rs[:, :n]
                skip = rs[:, n:] if skip is None else skip + rs[:, n:]
            else:
                skip = rs if skip is None else skip + rs
        we, be = cache.end
        out = torch.addmm(be, skip, we)
        cache.position = t + 1
        return out if out.dtype == out_dtype else out.to(out_dtype)


@dataclass
class WNStepCache:
    """State of :meth:`WN.step`: the prepared weights, the per-layer input queues and the
    number of steps taken (``position``). Made by :meth:`WN.init_cache`."""

    dtype: torch.dtype
    start: tuple
    layers: list
    end: tuple
    position: int = 0


class BlockedWN(WN):
    """:class:`WN` whose causal GEMM inference path works through time in
    blocks of ``block`` samples, so that every layer's activations stay in cache.

    The result is the same function as ``WN`` (one call still computes the whole sequence;
    parameters, state dict and training path are ``WN``'s). Per block and layer, the dilated
    taps come from a per-layer history of the last ``(kernel - 1) * dilation`` inputs (zeros
    before the start, which is the causal zero padding). Since the skip sum only feeds the
    linear output layer, each layer's skip weights are folded into it
    (``W_end @ W_skip_i``, ``out_channels x n`` instead of ``n x n``): exact algebra, fewer
    multiply-adds and no ``n x T`` skip accumulator.
    """

    block: int = 4096

    def _forward_gemm(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if not self.causal:  # pragma: no cover - the students' conditioners are causal
            return super()._forward_gemm(x, cond)
        n, k, n_layers, t_all = self.n_channels, self.kernel_size, self.n_layers, x.shape[1]
        cc = self.cond_channels if cond is not None else 0
        we = self.end.weight.reshape(self.end.weight.shape[0], n)
        b_out = self.end.bias.clone()
        layers = []
        for i, (conv, res) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            # One GEMM per layer over the block buffer [taps oldest first (k * n rows, the
            # last one is the layer input h itself); conditioning (cc rows); ones (1 row)]:
            # the weight's columns are permuted to that tap-major layout, the bias rides on
            # the ones row.
            parts = [conv.weight.permute(0, 2, 1).reshape(2 * n, k * n)]
            b = conv.bias
            if cc:
                rows = slice(2 * n * i, 2 * n * (i + 1))
                parts.append(self.cond_layer.weight[rows].reshape(2 * n, cc))
                b = b + self.cond_layer.bias[rows]
            parts.append(b[:, None])
            wr = res.weight.reshape(res.weight.shape[0], n)
            br = res.bias
            w_res = None
            if i < n_layers - 1:  # residual weights with their bias column (ones row of acts)
                w_res = torch.cat([wr[:n], br[:n, None]], dim=1)
                wr, br = wr[n:], br[n:]
            b_out = b_out + we @ br
            layers.append(((k - 1) * conv.dilation[0], conv.dilation[0],
                           torch.cat(parts, dim=1), w_res, we @ wr))
        # the output's total bias rides on the first layer's ones row
        w_out0 = layers[0][4]
        layers[0] = layers[0][:4] + (torch.cat([w_out0, b_out[:, None]], dim=1),)
        for i in range(1, n_layers):
            layers[i] = layers[i][:4] + (torch.cat([layers[i][4], b_out.new_zeros(
                b_out.shape[0], 1)], dim=1),)
        hist = [x.new_zeros(n, r) for r, *_ in layers]
        ws = self.start.weight.reshape(n, -1)
        out = x.new_empty(we.shape[0], t_all)
        buf = acts_buf = a = None
        for t0 in range(0, t_all, self.block):
            t1 = min(t_all, t0 + self.block)
            tb = t1 - t0
            if buf is None or buf.shape[1] != tb:
                buf = x.new_empty(k * n + cc + 1, tb)
                buf[k * n + cc].fill_(1.0)
                acts_buf = x.new_empty(n + 1, tb)
                acts_buf[n].fill_(1.0)
                a = x.new_empty(2 * n, tb)
            if cc:
                buf[k * n:k * n + cc].copy_(cond[:, t0:t1])
            h = buf[(k - 1) * n:k * n]  # the layer input lives in its own tap slot
            torch.addmm(self.start.bias[:, None], ws, x[:, t0:t1], out=h)
            acts = acts_buf[:n]
            o = out[:, t0:t1]
            for i, (r, d, w, w_res, w_out) in enumerate(layers):
                hi = hist[i]
                for j in range(k - 1):
                    s = (k - 1 - j) * d
                    dst = buf[j * n:(j + 1) * n]
                    if s >= tb:
                        dst.copy_(hi[:, r - s:r - s + tb])
                    else:
                        dst[:, :s].copy_(hi[:, r - s:])
                        dst[:, s:].copy_(h[:, :tb - s])
                if r:
                    if tb >= r:
                        hi.copy_(h[:, tb - r:])
                    else:
                        hi[:, :r - tb] = hi[:, tb:].clone()
                        hi[:, r - tb:].copy_(h)
                torch.mm(w, buf, out=a)
                torch.tanh_(a[:n])
                torch.mul(a[:n], torch.sigmoid_(a[n:]), out=acts)
                if w_res is not None:
                    h.addmm_(w_res, acts_buf)
                if i == 0:
                    torch.mm(w_out, acts_buf, out=o)
                else:
                    o.addmm_(w_out, acts_buf)
        return out
