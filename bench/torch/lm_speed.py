"""Eager PyTorch forward throughput of a Mamba causal LM (MambaForCausalLM's math, model.py's
blocks: embeddings, pre-norm mixers with the token-by-token recurrence, norm_f, tied head), for
side-by-side comparison with `prunelab bench --task lm` / bench/lm_forward.sh on the same shape.

Default shape: the mamba-130m layout (d 768, 24 layers, N 16, expand 2, K 4, dt_rank 48,
V 50,280, no MLP), one window of T 1024 tokens (B 1), forward under torch.no_grad(), random
weights (speed does not depend on them). Untimed warmup, then the median of timed forwards, for
each thread count in a child process with OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = T (Debian's
torch does its GEMMs in OpenBLAS; see speed.py for why the environment matters). Prints one
JSON object: tokens/s per thread count, the load average before and after.

    /usr/bin/python3 bench/torch/lm_speed.py [--d 768] [--layers 24] [--vocab 50280] [--seq 1024]
                                             [--batch 1] [--threads 1,2] [--steps 3] [--warmup 1]
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def run_one(a):
    import torch
    import torch.nn as nn
    from model import Block, RMSNorm  # noqa: E402

    torch.manual_seed(1)
    E, N, K = 2 * a.d, 16, 4
    R = math.ceil(a.d / 16)

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(a.vocab, a.d)
            self.layers = nn.ModuleList([Block(a.d, E, N, R, K, 0) for _ in range(a.layers)])
            self.norm_f = RMSNorm(a.d)

        def forward(self, ids):
            h = self.emb(ids)
            for blk in self.layers:
                h = blk(h)
            return self.norm_f(h) @ self.emb.weight.t()  # tied head: logits (B, T, V)

    model = LM().eval()
    ids = torch.randint(0, a.vocab, (a.batch, a.seq))
    torch.set_num_threads(a.one)
    with torch.no_grad():
        for _ in range(a.warmup):
            model(ids)
        ts = []
        for _ in range(a.steps):
            t0 = time.perf_counter()
            model(ids)
            ts.append(time.perf_counter() - t0)
    t = statistics.median(ts)
    print(json.dumps({"threads": a.one, "forward_s": round(t, 4), "tokens_per_s": round(a.batch * a.seq / t, 2)}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--vocab", type=int, default=50280)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        run_one(a)
        return
    out = {"shape": {"d": a.d, "layers": a.layers, "vocab": a.vocab, "seq": a.seq, "batch": a.batch},
           "load_before": os.getloadavg()[0], "runs": []}
    for t in [int(x) for x in a.threads.split(",")]:
        env = dict(os.environ, OMP_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t))
        args = [sys.executable, os.path.abspath(__file__), "--one", str(t)] + sys.argv[1:]
        r = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
        out["runs"].append(json.loads(r.stdout.strip().splitlines()[-1]))
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
