"""PyTorch mirror of difc's U-Net (src/nn/unet.rs) and NDM training step (src/compile/ndm.rs),
for the side-by-side benchmarks of `scripts/bench_pytorch.py --unet / --ndm-unet`.

Same layout as the Rust module docs: a sinusoidal time embedding (32, time scale 1000) →
Linear → SiLU → Linear → SiLU (width 4·base); 3×3 input conv; per level one residual block
(GroupNorm(8) → SiLU → conv → + time projection → GroupNorm → SiLU → conv, 1×1 skip when the
channels change) then a stride-2 conv; mid: block, single-head self-attention, block; up:
nearest ×2, crop, 3×3 conv, concat the skip, one block; out: GroupNorm → SiLU → 3×3 conv.
Channels base·(1, 2, 2, …). The weights differ (PyTorch's default init); timing does not
depend on them.

The NDM step: F(x, t) = (1 − t)·x + t·U_φ(x, t) (difc's `interpolate` form on [0, 1]) with
∂F/∂t by forward-mode AD (torch.func.jvp), x̂ = (z − σ·ε̂)/α from the ε U-Net, the NDM
L_diff = ½ SNR γ' ‖ΔF − Δ∂_tF/γ'‖² at t uniform in γ (weight Γ/γ'), a Gaussian L_rec and the
prior KL, AdamW, gradient clipping 1.0 and EMA 0.999, as difc does. With `learned=False` F is
the identity (VDM) and the same code runs without the transform network.
"""

import math

import torch
from torch import nn
from torch.nn import functional as nnf


def embed(t, size=32, scale=1000.0):
    half = size // 2
    k = torch.arange(half, dtype=torch.float32, device=t.device)
    w = scale * torch.exp(-math.log(10000.0) * k / half)
    a = t.unsqueeze(1) * w
    return torch.cat([torch.sin(a), torch.cos(a)], dim=1)


class Res(nn.Module):
    def __init__(self, cin, cout, tw, groups):
        super().__init__()
        self.n1 = nn.GroupNorm(groups, cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.tp = nn.Linear(tw, cout)
        self.n2 = nn.GroupNorm(groups, cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.c1(nnf.silu(self.n1(x)))
        h = h + self.tp(temb)[:, :, None, None]
        h = self.c2(nnf.silu(self.n2(h)))
        return (x if self.skip is None else self.skip(x)) + h


class Attn(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.n = nn.GroupNorm(groups, c)
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)

    def forward(self, x):
        b, c, h, w = x.shape
        a = self.n(x).flatten(2).transpose(1, 2)
        q, k, v = self.qkv(a).chunk(3, dim=2)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1)
        o = self.proj(att @ v).transpose(1, 2).reshape(b, c, h, w)
        return x + o


class UNet(nn.Module):
    def __init__(self, channels=1, side=28, base=32, levels=3, groups=8, attention=True):
        super().__init__()
        ch = [base if l == 0 else 2 * base for l in range(levels)]
        tw = 4 * base
        self.sizes = [side]
        for _ in range(1, levels):
            self.sizes.append((self.sizes[-1] + 1) // 2)
        self.t1 = nn.Linear(32, tw)
        self.t2 = nn.Linear(tw, tw)
        self.inp = nn.Conv2d(channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downconv = nn.ModuleList()
        cin = ch[0]
        for l, c in enumerate(ch):
            self.down.append(Res(cin, c, tw, groups))
            cin = c
            if l + 1 < levels:
                self.downconv.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        low = ch[-1]
        self.mid0 = Res(low, low, tw, groups)
        self.attn = Attn(low, groups) if attention else None
        self.mid1 = Res(low, low, tw, groups)
        self.upconv = nn.ModuleList()
        self.up = nn.ModuleList()
        cur = low
        for l in reversed(range(levels)):
            if l + 1 < levels:
                self.upconv.append(nn.Conv2d(cur, cur, 3, padding=1))
            self.up.append(Res(cur + ch[l], ch[l], tw, groups))
            cur = ch[l]
        self.on = nn.GroupNorm(groups, ch[0])
        self.oc = nn.Conv2d(ch[0], channels, 3, padding=1)
        self.levels = levels

    def forward(self, x, t):
        temb = nnf.silu(self.t2(nnf.silu(self.t1(embed(t)))))
        h = self.inp(x)
        skips = []
        for l in range(self.levels):
            h = self.down[l](h, temb)
            skips.append(h)
            if l + 1 < self.levels:
                h = self.downconv[l](h)
        h = self.mid0(h, temb)
        if self.attn is not None:
            h = self.attn(h)
        h = self.mid1(h, temb)
        k = 0
        for i, l in enumerate(reversed(range(self.levels))):
            if l + 1 < self.levels:
                s = self.sizes[l]
                h = nnf.interpolate(h, scale_factor=2, mode="nearest")[:, :, :s, :s]
                h = self.upconv[k](h)
                k += 1
            h = self.up[i](torch.cat([h, skips[l]], dim=1), temb)
        return self.oc(nnf.silu(self.on(h)))


def value_and_time_tangent(net, x, t):
    """(net(x, t), ∂net/∂t) by forward-mode AD; backprop trains through both."""
    return torch.func.jvp(lambda tt: net(x, tt), (t,), (torch.ones_like(t),))


GAMMA_MIN, GAMMA_MAX, T_MIN = -13.3, 6.0, 1e-3


def make_ndm_step(eps_net, transform, data, batch, lr=2e-4, gamma=(GAMMA_MIN, GAMMA_MAX)):
    """One NDM (or, without `transform`, VDM) training step as a closure, on [B, ...] data."""
    nets = [eps_net] + ([transform] if transform is not None else [])
    params = [p for m in nets for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    ema = [p.detach().clone() for p in params]
    n = data.shape[0]
    g_min, g_max = gamma
    g_span = g_max - g_min
    gamma0 = g_min + T_MIN * g_span

    def col(v, like):
        # A per-row value broadcast over the rest of a [B, ...] tensor.
        return v.reshape((-1,) + (1,) * (like.dim() - 1))

    def F(x, t):
        if transform is None:
            return x, torch.zeros_like(x)
        v, dv = value_and_time_tangent(transform, x, t)
        tc = col(t, x)
        d = v - x
        return x + tc * d, d + tc * dv

    def step():
        x = data[torch.randint(0, n, (batch,))]
        # t uniform in γ on [t_min, 1] (γ linear in t: uniform in t too), weight Γ/γ' = 1 - t_min.
        t = T_MIN + (1.0 - T_MIN) * torch.rand(batch)
        g = g_min + t * g_span
        alpha = col(torch.sqrt(torch.sigmoid(-g)), x)
        sigma = col(torch.sqrt(torch.sigmoid(g)), x)
        eps = torch.randn_like(x)
        fx, dfx = F(x, t)
        z = alpha * fx + sigma * eps
        xhat = (z - sigma * eps_net(z, t)) / alpha
        fh, dfh = F(xhat, t)
        snr = col(torch.exp(-g), x)
        d = (fx - fh) - (dfx - dfh) / g_span
        l_diff = 0.5 * snr * g_span * (1.0 - T_MIN) * d.pow(2).flatten(1).sum(1)
        # Gaussian L_rec at t_min and the prior KL at T (per image).
        t0 = torch.full((batch,), T_MIN)
        f0, _ = F(x, t0) if transform is not None else (x, None)
        snr0 = math.exp(-gamma0)
        l_rec = 0.5 * snr0 * (x - f0).pow(2).flatten(1).sum(1)
        t1 = torch.ones(batch)
        f1 = transform(x, t1) if transform is not None else x
        a1 = math.sqrt(1.0 / (1.0 + math.exp(g_max)))
        l_prior = 0.5 * (a1 * f1).pow(2).flatten(1).sum(1)
        loss = (l_diff + l_rec + l_prior).mean() / x[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - 0.999)
        return loss

    return step
