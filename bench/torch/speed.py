"""Eager PyTorch throughput of the patch-Mamba `small` preset (model.py), for side-by-side
comparison with `prunelab bench`.

Same protocol as `prunelab bench`: random normalised input, a training step is zero_grad +
forward + mean cross-entropy + backward + grad-norm clip 1.0 + AdamW (lr 2e-3, betas 0.9/0.999,
eps 1e-8, weight decay 0.05 on 2-D weight matrices only); inference is a forward under
torch.no_grad(). Untimed warmup steps, then the median of timed steps, for each thread count
(torch.set_num_threads). Prints one JSON object. With --engine, also runs
`prunelab bench --json` with the same preset, batch and threads and includes its numbers.

Debian's torch does its GEMMs in OpenBLAS (libblas.so.3 -> openblas-pthread), whose own thread
pool ignores torch.set_num_threads and whose kernel falls back to generic code on CPUs newer
than 0.3.21 (DESIGN.md 8). So each thread count runs in a child process with
OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = T and, unless already set, OPENBLAS_CORETYPE chosen
from the CPU flags as prunelab does (--coretype none leaves it unset). On a shared, loaded
machine libgomp's default spin-waiting makes 2-thread runs collapse (for torch and for the
engine alike); --omp-wait-policy passive sets OMP_WAIT_POLICY for both. The JSON records the
load average before and after.

    /usr/bin/python3 bench/torch/speed.py [--batch 64] [--threads 1,2] [--steps 10] [--warmup 3]
                                          [--model M.safetensors] [--engine ./prunelab]
                                          [--coretype auto|none|NAME] [--omp-wait-policy active|passive]
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import PatchMamba, load_model  # noqa: E402

# small preset: d 64, 4 layers, N 16, expand 2, K 4, MLP 128, patch 4, 28x28x1, 10 classes
SMALL = dict(d=64, layers=4, N=16, expand=2, K=4, M=128, P=4, C=1, H=28, W=28, classes=10)


def build_small(seed=1):
    """The small preset initialised as DESIGN.md section 3 describes (mamba_ssm style)."""
    s = SMALL
    d, E, N, K, M = s["d"], s["expand"] * s["d"], s["N"], s["K"], s["M"]
    R = math.ceil(d / 16)
    torch.manual_seed(seed)
    model = PatchMamba(d, s["C"], s["H"], s["W"], s["P"], s["classes"],
                       [(i, (E, N, R, K, M)) for i in range(s["layers"])])
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Linear, torch.nn.Conv1d)):
                fan_in = mod.weight[0].numel()
                mod.weight.uniform_(-fan_in ** -0.5, fan_in ** -0.5)
                if mod.bias is not None:
                    mod.bias.zero_()
        model.pos_embed.normal_(0.0, 0.02)
        scale = s["layers"] ** -0.5
        for blk in model.backbone.layers.values():
            mx = blk.mixer
            mx.out_proj.weight.mul_(scale)
            blk.mlp.fc2.weight.mul_(scale)
            mx.dt_proj.weight.uniform_(-R ** -0.5, R ** -0.5)
            dt = torch.exp(torch.rand(E) * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3))
            mx.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
            mx.A_log.copy_(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).expand(E, N))
            mx.D.fill_(1.0)
    return model


def median_time(fn, warmup, steps):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def measure(model, batch, threads, warmup, steps, seed=1):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, model.C, model.H, model.W, generator=g)
    y = torch.randint(0, model.classes, (batch,), generator=g)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and n != "pos_embed"]
    rest = [p for n, p in model.named_parameters() if not (p.dim() == 2 and n != "pos_embed")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
                            lr=2e-3, betas=(0.9, 0.999), eps=1e-8)

    def train_step():
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    def infer_step():
        with torch.no_grad():
            model(x)

    model.train()
    t_train = median_time(train_step, warmup, steps)
    t_inf = median_time(infer_step, warmup, steps)
    return {
        "threads": threads,
        "train_ms_per_step": round(t_train * 1e3, 3),
        "train_samples_per_s": round(batch / t_train, 2),
        "infer_ms_per_batch": round(t_inf * 1e3, 3),
        "infer_samples_per_s": round(batch / t_inf, 2),
    }


def engine_bench(exe, batch, threads, warmup, steps, env):
    r = subprocess.run([exe, "bench", "--preset", "small", "--batch", str(batch), "--threads", str(threads),
                        "--steps", str(steps), "--warmup-steps", str(warmup), "--json"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True, env=env)
    j = json.loads(r.stdout.strip().splitlines()[-1])
    keep = ("threads", "blas_kernel", "train_ms_per_step", "train_samples_per_s", "infer_ms_per_batch",
            "infer_samples_per_s")
    return {k: j[k] for k in keep if k in j}


def auto_coretype():
    """The OpenBLAS kernel prunelab would pick from /proc/cpuinfo flags, or None."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set()
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        return None
    if "avx512_bf16" in flags:
        return "Cooperlake"
    if "avx512f" in flags:
        return "SkylakeX"
    if "avx2" in flags:
        return "Haswell"
    return None


def bench_env(args):
    env = dict(os.environ)
    if args.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    return env


def run_child(args, threads):
    env = dict(bench_env(args), OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    if "OPENBLAS_CORETYPE" not in os.environ:
        core = auto_coretype() if args.coretype == "auto" else (None if args.coretype == "none" else args.coretype)
        if core:
            env["OPENBLAS_CORETYPE"] = core
    cmd = [sys.executable, os.path.abspath(__file__), "--child", str(threads), "--batch", str(args.batch),
           "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.model:
        cmd += ["--model", args.model]
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True)
    res = json.loads(r.stdout)
    res["openblas_coretype"] = env.get("OPENBLAS_CORETYPE", "")
    return res


def main():
    ap = argparse.ArgumentParser(description="eager PyTorch throughput of the small patch-Mamba")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--model", help="time this checkpoint instead of the freshly built small preset")
    ap.add_argument("--engine", help="also run this prunelab binary's bench with the same settings")
    ap.add_argument("--coretype", default="auto", help="OPENBLAS_CORETYPE for torch: auto, none or a name")
    ap.add_argument("--omp-wait-policy", choices=["active", "passive"],
                    help="set OMP_WAIT_POLICY for torch and the engine (default: inherit)")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    torch.set_num_interop_threads(1)

    if args.model:
        model, _ = load_model(args.model, dtype=torch.float32)
    else:
        model = build_small()
    if args.child:
        print(json.dumps(measure(model, args.batch, args.child, args.warmup, args.steps)))
        return 0
    out = {
        "framework": "pytorch-eager",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model": args.model or "small",
        "params": sum(p.numel() for p in model.parameters()),
        "image": [model.C, model.H, model.W],
        "tokens": model.L,
        "batch": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "omp_wait_policy": bench_env(args).get("OMP_WAIT_POLICY", ""),
        "loadavg_before": os.getloadavg()[0],
        "torch_results": [run_child(args, t) for t in threads],
    }
    if args.engine:
        exe = os.path.abspath(args.engine)
        out["engine_results"] = [engine_bench(exe, args.batch, t, args.warmup, args.steps, bench_env(args))
                                 for t in threads]
    out["loadavg_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
