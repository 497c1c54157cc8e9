#!/usr/bin/env python3
"""PyTorch (eager, CPU) reference for difc's `cargo bench --bench difc_bench` rows
"train step vp (4x128 MLP, batch 512, 2-D)" and "sampler/vp ode_euler, 25 steps, 100k points".

Same model as difc's `mlp(width = 128, depth = 4, activation = gelu)` (src/run/net.rs):
input [x, sin(t*w), cos(t*w)] with w_k = 1000 * 10000^(-k/16), k = 0..15 (width 2 + 32),
then Linear(34,128), GELU, 3 x [Linear(128,128), GELU], Linear(128,2).

Train step: VP eps-matching batch of 512 from a fixed 20000x2 set, t ~ U(0.001, 1),
loss = mean((net(x_t, t) - eps)^2), backward, clip grad norm to 1.0, AdamW(lr 2e-3, wd 0),
EMA of all parameters (decay 0.999). Sampler: 25-step probability-flow ODE (Euler) from t=1 to
t=0.001 on 100 000 points, network evaluated under no_grad in chunks.

With `--unet`: the rows of the "unet" group (a forward-with-time-tangent pass and backward of
the U-Net, 28×28 batch 32 with 3 levels and 8×8 batch 128 with 2 levels); with `--ndm-unet`:
the "ndm unet" group (one NDM and one VDM training step with U-Nets on 28×28, batch 32); with
`--ndm-mlp`: the rows "train step ndm / vdm (4x128 MLP, batch 512, 2-D)". The
U-Net and the NDM step are mirrored in scripts/torch_unet.py.

Not part of the build or CI; needs `torch` (see shared/data.md section 5). Usage:
    python scripts/bench_pytorch.py [--threads 2] [--blocks 5] [--block-steps 200]
    python scripts/bench_pytorch.py --unet | --ndm-unet | --ndm-mlp [--threads 2]
"""

import argparse
import math
import statistics
import time

import torch
from torch import nn

DIM = 2
WIDTH = 128
DEPTH = 4
EMB = 32
BETA_MIN, BETA_MAX = 0.1, 20.0
T_MIN = 1e-3


class Mlp(nn.Module):
    def __init__(self, depth=DEPTH):
        super().__init__()
        half = EMB // 2
        k = torch.arange(half, dtype=torch.float64)
        freqs = 1000.0 * torch.exp(-math.log(10000.0) * k / half)
        self.register_buffer("freqs", freqs.float().unsqueeze(0))
        layers = [nn.Linear(DIM + EMB, WIDTH), nn.GELU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(WIDTH, WIDTH), nn.GELU()]
        layers.append(nn.Linear(WIDTH, DIM))
        self.layers = nn.Sequential(*layers)

    def forward(self, x, t):
        arg = t.unsqueeze(1) * self.freqs
        return self.layers(torch.cat([x, torch.sin(arg), torch.cos(arg)], dim=1))


def vp_mean(t):
    # exp(-1/2 * integral_0^t beta) = exp(-0.05 t - 4.975 t^2)
    return torch.exp(-0.5 * BETA_MIN * t - 0.25 * (BETA_MAX - BETA_MIN) * t * t)


def make_train_step(net, data, batch):
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=0.0)
    params = list(net.parameters())
    ema = [p.detach().clone() for p in params]
    n = data.shape[0]

    def step():
        idx = torch.randint(0, n, (batch,))
        x0 = data[idx]
        t = T_MIN + (1.0 - T_MIN) * torch.rand(batch)
        eps = torch.randn(batch, DIM)
        m = vp_mean(t).unsqueeze(1)
        s = torch.sqrt(1.0 - m * m)
        xt = m * x0 + s * eps
        loss = torch.mean((net(xt, t) - eps) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1.0 - 0.999)
        return loss

    return step


@torch.no_grad()
def sample(net, n, steps, chunk):
    x = torch.randn(n, DIM)
    h = (1.0 - T_MIN) / steps
    for k in range(steps):
        t = 1.0 - k * h
        beta = BETA_MIN + t * (BETA_MAX - BETA_MIN)
        m = math.exp(-0.5 * BETA_MIN * t - 0.25 * (BETA_MAX - BETA_MIN) * t * t)
        s = math.sqrt(1.0 - m * m)
        tt = torch.full((min(chunk, n),), t)
        out = torch.empty_like(x)
        for i in range(0, n, chunk):
            xc = x[i : i + chunk]
            out[i : i + chunk] = net(xc, tt[: xc.shape[0]])
        score = -out / s
        a = -0.5 * beta
        # x <- x - h (a x - 1/2 g^2 score), g^2 = beta
        x = x - h * (a * x - 0.5 * beta * score)
    return x


def timed(step, warmup, blocks, block_steps):
    """Median milliseconds per call over `blocks` blocks, after `warmup` calls."""
    for _ in range(warmup):
        step()
    out = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(block_steps):
            loss = step()
        loss.item()
        out.append((time.perf_counter() - t0) / block_steps * 1e3)
    return statistics.median(out), out


def image_rows(args):
    import torch_unet

    rows = []
    if args.unet:
        for name, side, levels, batch in [("28x28", 28, 3, 32), ("8x8", 8, 2, 128)]:
            net = torch_unet.UNet(1, side, 32, levels)
            x, a, b = (torch.randn(batch, 1, side, side) for _ in range(3))
            t = (torch.arange(batch, dtype=torch.float32) + 0.5) / batch

            def step():
                y, y_dot = torch_unet.value_and_time_tangent(net, x, t)
                loss = ((y - a) ** 2).mean() + ((y_dot - b) ** 2).mean()
                net.zero_grad(set_to_none=True)
                loss.backward()
                return loss

            ms, blocks = timed(step, 3, args.blocks, 5)
            rows.append((f"unet {name} value + tangent + backward (batch {batch})",
                         f"{ms:.1f} ms/step", "blocks " + " ".join(f"{v:.1f}" for v in blocks)))
    if args.ndm_mlp:
        # difc's rows "train step vdm / ndm (4x128 MLP, batch 512, 2-D)": the ε MLP 4×128 and,
        # for NDM, stdlib ndm_vdm's transform MLP 3×128 (GELU), γ = -10 … 10 there.
        data = torch.randn(20000, DIM)
        for name, learned in [("ndm", True), ("vdm", False)]:
            step = torch_unet.make_ndm_step(Mlp(), Mlp(3) if learned else None, data, args.batch,
                                            lr=2e-3, gamma=(-10.0, 10.0))
            ms, blocks = timed(step, args.warmup, args.blocks, args.block_steps)
            rows.append((f"train step {name} (4x128 MLP, batch {args.batch}, 2-D)",
                         f"{ms:.3f} ms/step", "blocks " + " ".join(f"{v:.3f}" for v in blocks)))
    if args.ndm_unet:
        data = torch.rand(256, 1, 28, 28) * 2 - 1
        for name, learned in [("ndm", True), ("vdm", False)]:
            eps_net = torch_unet.UNet(1, 28, 32, 3)
            transform = torch_unet.UNet(1, 28, 32, 3) if learned else None
            step = torch_unet.make_ndm_step(eps_net, transform, data, 32)
            ms, blocks = timed(step, 2, args.blocks, 3)
            rows.append((f"train step {name} unet 28x28 (batch 32)", f"{ms:.1f} ms/step",
                         "blocks " + " ".join(f"{v:.1f}" for v in blocks)))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unet", action="store_true", help="the U-Net tangent + backward rows")
    ap.add_argument("--ndm-unet", action="store_true", help="the NDM / VDM U-Net train steps")
    ap.add_argument("--ndm-mlp", action="store_true", help="the NDM / VDM 2-D MLP train steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--block-steps", type=int, default=200)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunks", default="4096,100000")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"interop {torch.get_num_interop_threads()}")

    if args.unet or args.ndm_unet or args.ndm_mlp:
        rows = image_rows(args)
        w = max(len(r[0]) for r in rows)
        for name, med, detail in rows:
            print(f"{name:<{w}}  {med:>14}  {detail}")
        return

    net = Mlp()
    data = torch.randn(20000, DIM)  # fixed training set (timing does not depend on its shape)
    step = make_train_step(net, data, args.batch)
    for _ in range(args.warmup):
        step()
    blocks = []
    for _ in range(args.blocks):
        t0 = time.perf_counter()
        for _ in range(args.block_steps):
            loss = step()
        loss.item()
        blocks.append((time.perf_counter() - t0) / args.block_steps * 1e3)
    ms = statistics.median(blocks)

    rows = [("train step vp (batch 512)", f"{ms:.3f} ms/step",
             "blocks " + " ".join(f"{b:.3f}" for b in blocks))]
    net.eval()
    for chunk in [int(c) for c in args.chunks.split(",")]:
        sample(net, 4096, 2, chunk)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            x = sample(net, args.points, args.steps, chunk)
            times.append(time.perf_counter() - t0)
        assert torch.isfinite(x).all()
        rows.append((f"sampler vp ode_euler {args.steps} steps {args.points} pts, chunk {chunk}",
                     f"{statistics.median(times):.3f} s",
                     "runs " + " ".join(f"{v:.3f}" for v in times)))

    w = max(len(r[0]) for r in rows)
    print(f"{'benchmark':<{w}}  {'median':>14}  detail")
    for name, med, detail in rows:
        print(f"{name:<{w}}  {med:>14}  {detail}")


if __name__ == "__main__":
    main()
