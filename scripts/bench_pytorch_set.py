#!/usr/bin/env python3
"""PyTorch (eager, CPU) reference for difc's `cargo bench --bench difc_bench` row
"train step transdim (set transformer 64x3, 4 heads, batch 128, sets of <= 8 2-D points)".

The same model as difc's `set_transformer(width = 64, depth = 3, heads = 4)` (src/nn/set.rs):
time features [sin(w t), cos(w t)] (32) and the count n/N -> Linear(33, 64) + GELU -> Linear(64, 64);
components Linear(2, 64) + time features; 3 pre-norm blocks [LayerNorm, QKV Linear(64, 192),
4-head attention with absent keys masked, Linear(64, 64), residual; LayerNorm, Linear(64, 128) + GELU,
Linear(128, 64), residual]; final LayerNorm; eps head Linear(64, 2); masked mean pooling, concatenated
with the time features, into the n0 head (Linear(128, 64) + GELU, Linear(64, 8)) and the insertion
head (Linear(128, 64) + GELU, Linear(64, 4)).

The same training step as difc's trans-dimensional family (src/compile/transdim.rs): per set
t ~ U(0.001, 1), n_t = max(n_0 - Poisson(L_t), 1) with the stdlib `transdim` step rate
(c = 10.126, t_cut = 0.1, offset 0.1), uniform kernel, VP noising; two network passes (X_t and Y =
X_t minus its last component); score + rate + insertion + cross-entropy terms, / (N d); backward;
gradient-norm clipping at 1; AdamW (lr 1e-3, no weight decay); EMA 0.999 of all parameters.
Data: sets of 1..8 points on a ring (sizes from p(k) ~ 9 - k), as difc's `ring_sets`.

Not part of the build or CI; needs `torch` (see shared/data.md section 5). Usage:
    python scripts/bench_pytorch_set.py [--threads 2] [--blocks 5] [--block-steps 50]
"""

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

N, D, W, DEPTH, HEADS, EMB = 8, 2, 64, 3, 4, 32
BETA_MIN, BETA_MAX = 0.1, 20.0
C, T_CUT, OFFSET = 10.126, 0.1, 0.1
T_MIN = 1e-3
LOG_ZERO = -1e4


def gelu(x):
    return F.gelu(x, approximate="tanh")


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(W)
        self.qkv = nn.Linear(W, 3 * W)
        self.proj = nn.Linear(W, W)
        self.ln2 = nn.LayerNorm(W)
        self.mlp_in = nn.Linear(W, 2 * W)
        self.mlp_out = nn.Linear(2 * W, W)

    def forward(self, h, key_bias):
        b, n, _ = h.shape
        q, k, v = self.qkv(self.ln1(h)).reshape(b, n, 3, HEADS, W // HEADS).unbind(2)
        q, k, v = (a.transpose(1, 2) for a in (q, k, v))
        scores = q @ k.transpose(2, 3) / math.sqrt(W // HEADS) + key_bias
        o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, W)
        h = h + self.proj(o)
        return h + self.mlp_out(gelu(self.mlp_in(self.ln2(h))))


class SetTransformer(nn.Module):
    def __init__(self):
        super().__init__()
        half = EMB // 2
        k = torch.arange(half, dtype=torch.float64)
        self.register_buffer("freqs", (1000.0 * torch.exp(-math.log(10000.0) * k / half)).float())
        self.time_in = nn.Linear(EMB + 1, W)
        self.time_out = nn.Linear(W, W)
        self.input = nn.Linear(D, W)
        self.blocks = nn.ModuleList([Block() for _ in range(DEPTH)])
        self.final_ln = nn.LayerNorm(W)
        self.eps_head = nn.Linear(W, D)
        self.n0_hidden = nn.Linear(2 * W, W)
        self.n0_out = nn.Linear(W, N)
        self.ins_hidden = nn.Linear(2 * W, W)
        self.ins_out = nn.Linear(W, 2 * D)

    def forward(self, x, mask, t):
        x = torch.where(mask.unsqueeze(2) > 0.5, x, torch.zeros_like(x))
        arg = t.unsqueeze(1) * self.freqs
        count = mask.sum(1, keepdim=True) / N
        temb = self.time_out(gelu(self.time_in(torch.cat([arg.sin(), arg.cos(), count], 1))))
        h = self.input(x) + temb.unsqueeze(1)
        key_bias = ((mask - 1.0) * 1e9).reshape(-1, 1, 1, N)
        for blk in self.blocks:
            h = blk(h, key_bias)
        h = self.final_ln(h)
        eps = self.eps_head(h)
        pooled = (h * mask.unsqueeze(2)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
        feats = torch.cat([pooled, temb], 1)
        logits = self.n0_out(gelu(self.n0_hidden(feats)))
        ins = self.ins_out(gelu(self.ins_hidden(feats)))
        return eps, logits, ins[:, :D], ins[:, D:] + 0.55


def ring_sets(n, gen):
    p = torch.tensor([9.0 - k for k in range(1, N + 1)])
    sizes = torch.multinomial(p / p.sum(), n, replacement=True, generator=gen) + 1
    x = torch.full((n, N, D), float("nan"))
    for i, k in enumerate(sizes.tolist()):
        phase = torch.rand(1, generator=gen) * 2 * math.pi
        ang = phase + 2 * math.pi * torch.arange(k) / k
        pts = torch.stack([ang.cos(), ang.sin()], 1) + 0.05 * torch.randn(k, D, generator=gen)
        x[i, :k] = pts
    return x


def vp(t):
    log_m = -0.5 * BETA_MIN * t - 0.25 * (BETA_MAX - BETA_MIN) * t * t
    return log_m.exp(), (-torch.expm1(2 * log_m)).sqrt()


def log_ratios(n, lam):
    """ln p(n + 1 | n0) / p(n | n0) for n0 = 1..N, [B, N] (LOG_ZERO outside the support)."""
    n0 = torch.arange(1, N + 1, dtype=torch.float64).unsqueeze(0)
    n = n.double().unsqueeze(1)
    lam = lam.double().unsqueeze(1)
    above = torch.where(n0 > n, torch.log((n0 - n).clamp(min=1e-30) / lam), torch.full_like(n0, LOG_ZERO))
    # n = 1 (absorbing): ln Pois(n0 - 2; L) - ln P(Pois(L) >= n0 - 1).
    k = torch.arange(0, 2 * N + 1, dtype=torch.float64)
    log_pois = k * lam.log() - lam - torch.lgamma(k + 1)  # [B, 2N+1]
    tail = torch.stack([torch.logsumexp(log_pois[:, j:], 1) for j in range(N)], 1)  # j = n0 - 1
    pois_m2 = torch.where(n0 >= 2, (n0 - 2).clamp(min=0) * lam.log() - lam - torch.lgamma((n0 - 1).clamp(min=1)),
                          torch.full_like(n0, LOG_ZERO))
    one = torch.where(n0 >= 2, pois_m2 - tail[:, :N], torch.full_like(n0, LOG_ZERO))
    return torch.where(n == 1, one, above).float()


def make_train_step(net, data, batch, gen):
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.0)
    params = list(net.parameters())
    ema = [p.detach().clone() for p in params]

    def step():
        idx = torch.randint(0, data.shape[0], (batch,), generator=gen)
        x0 = data[idx]
        present = ~x0[:, :, 0].isnan()
        n0 = present.sum(1)
        t = T_MIN + (1 - T_MIN) * torch.rand(batch, generator=gen)
        lam = OFFSET * t + C * (t - T_CUT).clamp(min=0)
        rate = OFFSET + C * (t > T_CUT).float()
        nt = (n0 - torch.poisson(lam, generator=gen).long()).clamp(min=1)
        # Uniform kernel: a random order of the present components, keep the first n_t.
        keys = torch.where(present, torch.rand(batch, N, generator=gen), torch.full((batch, N), 2.0))
        order = keys.argsort(1)
        x0s = torch.gather(torch.nan_to_num(x0), 1, order.unsqueeze(2).expand(-1, -1, D))
        slots = torch.arange(N).unsqueeze(0)
        mask = (slots < nt.unsqueeze(1)).float()
        m, s = vp(t)
        eps = torch.randn(batch, N, D, generator=gen)
        xt = (m.view(-1, 1, 1) * x0s + s.view(-1, 1, 1) * eps) * mask.unsqueeze(2)
        ny = torch.where(nt > 1, nt - 1, nt)
        mask_y = (slots < ny.unsqueeze(1)).float()
        y = xt * mask_y.unsqueeze(2)
        deleted = torch.gather(xt, 1, (nt - 1).view(-1, 1, 1).expand(-1, 1, D)).squeeze(1)
        tt = t  # network time = t on [0, 1]
        ex, lx, _, _ = net(xt, mask, tt)
        _, ly, mu, raw = net(y, mask_y, tt)
        score = 0.5 * ((ex - eps) ** 2 * mask.unsqueeze(2)).sum((1, 2))

        def log_rate(logits, n):
            support = torch.where(slots + 1 >= n.unsqueeze(1), 0.0, LOG_ZERO)
            num = torch.logsumexp(logits + log_ratios(n, lam), 1)
            den = torch.logsumexp(logits + support, 1)
            return num - den + rate.log()

        has_del = (nt > 1).float()
        rate_term = log_rate(lx, nt).exp() * (nt < N).float() - has_del * rate * log_rate(ly, ny)
        sd = F.softplus(raw)
        nll = (sd.log() + 0.5 * ((deleted - mu) / sd) ** 2).sum(1)
        insert = nll * has_del * rate
        ce = F.cross_entropy(lx, n0 - 1, reduction="none")
        loss = ((score + rate_term + insert + ce) / (N * D)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(ema, 0.999)
            torch._foreach_add_(ema, params, alpha=0.001)
        return loss

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--block-steps", type=int, default=50)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    net = SetTransformer()
    data = ring_sets(20000, gen)
    step = make_train_step(net, data, args.batch, gen)
    for _ in range(args.warmup):
        step()
    blocks = []
    for _ in range(args.blocks):
        t0 = time.perf_counter()
        for _ in range(args.block_steps):
            loss = step()
        assert math.isfinite(loss.item())
        blocks.append((time.perf_counter() - t0) / args.block_steps * 1e3)
    print(f"train step transdim (set transformer 64x3, batch {args.batch}): "
          f"{statistics.median(blocks):.3f} ms/step  blocks " + " ".join(f"{b:.3f}" for b in blocks))


if __name__ == "__main__":
    main()
