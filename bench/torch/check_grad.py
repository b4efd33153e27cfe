"""Cross-check `prunelab grad` against the PyTorch model of model.py (float64).

For each case: create a model with `prunelab init` (custom dims), optionally cut layers to
heterogeneous dims (as physical pruning would: odd d_inner, fewer states / ranks / taps, a
layer without MLP), perturb every tensor so norms, biases, A_log and D are not at their
trivial init values, write a random batch, run `prunelab grad` (1 and 2 threads), compute
loss, logits and all parameter gradients in torch float64 and compare every tensor:

    rel = max|engine - torch| / (max|torch| + 1e-8)    must be < 1e-3

Prints a table (one row per case and thread count; -v adds one row per tensor) and exits 1
on any failure, 2 on a setup error.

    /usr/bin/python3 bench/torch/check_grad.py [--prunelab ./prunelab] [-v] [--keep DIR]

The generated files are removed unless a run fails or --keep is given.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import load_model, load_safetensors, save_safetensors  # noqa: E402

TOL = 1e-3

# name, init args, dataset, batch, per-layer cuts {layer: {E,N,R,K,M}}, saturate dt bias
CASES = [
    ("tiny L6", ["--preset", "tiny"], "synthetic:c=1,h=8,w=12", 4, None, False),
    (
        "odd d15 E15 N5 R3 K3 M21 3ch L15",
        ["--preset", "tiny", "--d-model", "15", "--expand", "1", "--d-state", "5", "--d-conv", "3",
         "--dt-rank", "3", "--patch", "2", "--mlp-ratio", "1.4"],
        "synthetic:c=3,h=6,w=10", 3, None, False,
    ),
    (
        "no MLP, 3 layers",
        ["--preset", "tiny", "--d-model", "24", "--layers", "3", "--mlp-ratio", "0"],
        "synthetic:c=1,h=8,w=12", 5, None, False,
    ),
    (
        "K6 > L4",
        ["--preset", "tiny", "--d-model", "16", "--d-conv", "6", "--patch", "4"],
        "synthetic:c=1,h=8,w=8", 4, None, False,
    ),
    (
        "L1 (K4 > L1), 3ch",
        ["--preset", "tiny", "--d-model", "16", "--patch", "8"],
        "synthetic:c=3,h=8,w=8,classes=5", 2, None, False,
    ),
    (
        "3ch K=L=4 E30 N7",
        ["--preset", "tiny", "--d-model", "20", "--expand", "1.5", "--d-state", "7", "--patch", "4"],
        "synthetic:c=3,h=8,w=8,classes=3", 6, None, False,
    ),
    (
        "hetero layers, dt>20",
        ["--preset", "tiny", "--d-model", "24", "--layers", "3", "--d-state", "8", "--dt-rank", "4",
         "--patch", "2"],
        "synthetic:c=1,h=8,w=8", 3,
        {0: dict(E=37, N=5, R=3, K=2, M=29), 1: dict(M=0), 2: dict(E=11, N=1, R=1, K=1, M=7)},
        True,
    ),
    (
        "small 28x28 L49",
        ["--preset", "small"],
        "synthetic:c=1,h=28,w=28,classes=10", 8, None, False,
    ),
]


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}{r.stdout}")
    return r


def cut_layers(t, cuts, rng):
    """Physically shrink layers in the tensor dict t (DESIGN.md 5 unit couplings)."""
    for i, c in cuts.items():
        p = f"backbone.layers.{i}."
        E = t[p + "mixer.in_proj.weight"].shape[0] // 2
        N = t[p + "mixer.A_log"].shape[1]
        R = t[p + "mixer.dt_proj.weight"].shape[1]
        K = t[p + "mixer.conv1d.weight"].shape[2]
        def keep(n, k):
            return torch.from_numpy(np.sort(rng.choice(n, size=k, replace=False)))
        e = keep(E, c.get("E", E))
        s = keep(N, c.get("N", N))
        r = keep(R, c.get("R", R))
        k = c.get("K", K)
        xp = t[p + "mixer.x_proj.weight"]  # (R+2N, E)
        rows = torch.cat([r, R + s, R + N + s])
        t[p + "mixer.in_proj.weight"] = t[p + "mixer.in_proj.weight"][torch.cat([e, E + e])]
        t[p + "mixer.conv1d.weight"] = t[p + "mixer.conv1d.weight"][e][:, :, K - k :]  # taps nearest t
        t[p + "mixer.conv1d.bias"] = t[p + "mixer.conv1d.bias"][e]
        t[p + "mixer.x_proj.weight"] = xp[rows][:, e]
        t[p + "mixer.dt_proj.weight"] = t[p + "mixer.dt_proj.weight"][e][:, r]
        t[p + "mixer.dt_proj.bias"] = t[p + "mixer.dt_proj.bias"][e]
        t[p + "mixer.A_log"] = t[p + "mixer.A_log"][e][:, s]
        t[p + "mixer.D"] = t[p + "mixer.D"][e]
        t[p + "mixer.out_proj.weight"] = t[p + "mixer.out_proj.weight"][:, e]
        if "M" in c and (p + "mlp.fc1.weight") in t:
            M = t[p + "mlp.fc1.weight"].shape[0]
            if c["M"] == 0:
                for n in ("norm2.weight", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"):
                    del t[p + n]
            else:
                m = keep(M, c["M"])
                t[p + "mlp.fc1.weight"] = t[p + "mlp.fc1.weight"][m]
                t[p + "mlp.fc1.bias"] = t[p + "mlp.fc1.bias"][m]
                t[p + "mlp.fc2.weight"] = t[p + "mlp.fc2.weight"][:, m]
        for n in list(t):
            if n.startswith(p):
                t[n] = t[n].contiguous()


def perturb(t, g, saturate_dt):
    """Move every tensor away from its init so no term of the gradient is trivially zero/one."""
    for n, w in t.items():
        w = w.double()
        z = torch.randn(w.shape, generator=g, dtype=torch.float64)
        if n.endswith("norm.weight") or n.endswith("norm2.weight") or n.endswith("norm_f.weight"):
            w = 1.0 + 0.3 * z
        elif n.endswith("dt_proj.bias"):
            w = w + 0.5 * z
            if saturate_dt:
                w[::5] = 21.0 + 4.0 * z[::5].abs()  # softplus linear branch (v > 20)
        elif n.endswith("A_log"):
            w = w + 0.3 * z
        elif n.endswith("mixer.D"):
            w = 1.0 + 0.5 * z
        elif n.endswith(".bias"):
            w = 0.2 * z
        elif n == "pos_embed":
            w = w + 0.1 * z
        else:
            w = w + 0.5 * w.std() * z
        t[n] = w.float().contiguous()


def torch_reference(model_path, images, labels):
    model, _ = load_model(model_path, dtype=torch.float64)
    x = torch.from_numpy(images).double()
    y = torch.from_numpy(labels).long()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    ref = {"loss": loss.detach().reshape(1), "logits": logits.detach()}
    for n, p in model.named_parameters():
        ref["grad." + n] = p.grad.detach()
    return ref


def rel_err(a, b):
    a = a.double()
    b = b.double()
    return float((a - b).abs().max() / (b.abs().max() + 1e-8))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prunelab", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "prunelab"))
    ap.add_argument("-v", "--verbose", action="store_true", help="one row per tensor")
    ap.add_argument("--keep", help="directory to keep the generated files in")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    exe = os.path.abspath(args.prunelab)
    if not os.access(exe, os.X_OK):
        print(f"check_grad: {exe} not found (build with make first)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    work = args.keep or tempfile.mkdtemp(prefix="pl_torchcheck_")
    os.makedirs(work, exist_ok=True)

    rows, failures = [], 0
    hdr = f"{'case':<34} {'thr':>3} {'tensors':>7} {'loss':>9} {'logits':>9} {'worst grad':>9}  {'worst tensor':<40} {'ok':>3}"
    print(hdr)
    print("-" * len(hdr))
    for ci, (name, init_args, dataset, B, cuts, sat) in enumerate(CASES):
        rng = np.random.default_rng(args.seed * 1000 + ci)
        g = torch.Generator().manual_seed(args.seed * 1000 + ci)
        base = os.path.join(work, f"case{ci}")
        try:
            run([exe, "init", *init_args, "--seed", str(ci + 1), "--dataset", dataset, "--out", base + "_init.safetensors"])
            t, meta = load_safetensors(base + "_init.safetensors")
            if cuts:
                cut_layers(t, cuts, rng)
            perturb(t, g, sat)
            save_safetensors(base + "_model.safetensors", t, meta)
            info = json.loads(meta["prunelab"])
            C, H, W = info["image"]
            classes = info["classes"]
            images = rng.standard_normal((B, C, H, W)).astype(np.float32)
            labels = rng.integers(0, classes, size=B).astype(np.int64)
            save_safetensors(base + "_batch.safetensors", {"images": images, "labels": labels})
            ref = torch_reference(base + "_model.safetensors", images, labels)
        except Exception as e:  # setup problems are failures too
            print(f"{name:<34} setup error: {e}")
            failures += 1
            continue
        for thr in (1, 2):
            out = f"{base}_grad_t{thr}.safetensors"
            try:
                run([exe, "grad", "--model", base + "_model.safetensors", "--batch", base + "_batch.safetensors",
                     "--out", out, "--threads", str(thr)])
                eng, _ = load_safetensors(out)
            except Exception as e:
                print(f"{name:<34} {thr:>3} engine error: {e}")
                failures += 1
                continue
            errs = {}
            for k, b in ref.items():
                if k not in eng:
                    errs[k] = float("inf")
                    continue
                a = eng[k]
                if tuple(a.shape) != tuple(b.shape):
                    errs[k] = float("inf")
                    continue
                errs[k] = rel_err(a, b)
            for k in eng:
                if k not in ref:
                    errs[k] = float("inf")  # engine tensor the model does not have
            grads = {k: v for k, v in errs.items() if k.startswith("grad.")}
            wk = max(grads, key=grads.get)
            ok = all(v < TOL for v in errs.values())
            failures += 0 if ok else 1
            print(f"{name:<34} {thr:>3} {len(errs):>7} {errs['loss']:>9.2e} {errs['logits']:>9.2e} "
                  f"{grads[wk]:>9.2e}  {wk[5:]:<40} {'yes' if ok else 'NO':>3}")
            if args.verbose or not ok:
                for k in sorted(errs):
                    flag = "" if errs[k] < TOL else "   <-- FAIL"
                    mag = float(ref[k].abs().max()) if k in ref else float("nan")
                    print(f"      {k:<52} rel {errs[k]:.2e}  max|ref| {mag:.3e}{flag}")
            rows.append((name, thr, ok))
    print("-" * len(hdr))
    if failures or args.keep:
        print(f"{len(rows)} runs, {failures} failed (tolerance {TOL:g}); files kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
        print(f"{len(rows)} runs, {failures} failed (tolerance {TOL:g})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
