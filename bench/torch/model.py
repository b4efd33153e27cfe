"""Independent PyTorch implementation of the prunelab patch-Mamba classifier.

Written from the equations of DESIGN.md section 3, in plain torch (nn.Linear, F.conv1d, a
Python loop over tokens for the selective-scan recurrence). It exists to cross-check the C
engine (check_grad.py) and to time an eager PyTorch baseline (speed.py); the engine never
depends on it.

Notation: d d_model, E d_inner, N d_state, R dt_rank, K d_conv, M MLP width (0 = none),
P patch size, L tokens = (H/P)*(W/P), B batch, V classes. Every layer takes its own E, N, R,
K, M from the tensor shapes of the checkpoint.

Also here: a small safetensors reader and writer (json + struct; no third-party package).
"""

import json
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

RMS_EPS = 1e-5
SOFTPLUS_THRESHOLD = 20.0

# ---------------------------------------------------------------------------- safetensors

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def load_safetensors(path):
    """Read a safetensors file. Returns (dict name -> torch tensor, metadata dict or {})."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (hlen,) = struct.unpack("<Q", blob[:8])
    if 8 + hlen > len(blob):
        raise ValueError(f"{path}: header length {hlen} past end of file")
    header = json.loads(blob[8 : 8 + hlen].decode("utf-8"))
    data = memoryview(blob)[8 + hlen :]
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for name, info in header.items():
        dt = info["dtype"]
        if dt not in _DTYPES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        start, end = info["data_offsets"]
        arr = np.frombuffer(data[start:end], dtype=np.dtype(_DTYPES[dt]).newbyteorder("<"))
        shape = tuple(info["shape"])
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {name}: {arr.size} elements for shape {shape}")
        out[name] = torch.from_numpy(arr.reshape(shape).astype(_DTYPES[dt], copy=True))
    return out, meta


def save_safetensors(path, tensors, metadata=None):
    """Write tensors (name -> torch tensor or numpy array) to a safetensors file, data in
    sorted-name order, header padded with spaces to a multiple of 8 bytes."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks, off = [], 0
    for name in sorted(tensors):
        t = tensors[name]
        a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        a = np.ascontiguousarray(a)
        if a.dtype not in _NAMES:
            raise ValueError(f"tensor {name}: unsupported dtype {a.dtype}")
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in chunks:
            f.write(b)


# ---------------------------------------------------------------------------- model


class RMSNorm(nn.Module):
    """y = x * w / sqrt(mean(x^2) + eps) over the last axis."""

    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):  # x (..., d)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS) * self.weight


def selective_scan(u, delta, A, Bm, Cm, D):
    """The recurrence, one token at a time.
    u, delta (B, L, E); A (E, N); Bm, Cm (B, L, N); D (E) -> y (B, L, E)
      h_t = exp(delta_t[e] A[e,n]) h_{t-1} + delta_t[e] B_t[n] u_t[e]
      y_t[e] = sum_n C_t[n] h_t[e,n] + D[e] u_t[e]"""
    Bsz, L, E = u.shape
    N = A.shape[1]
    h = u.new_zeros(Bsz, E, N)  # (B, E, N)
    ys = []
    for t in range(L):
        dt = delta[:, t, :, None]  # (B, E, 1)
        h = torch.exp(dt * A) * h + dt * Bm[:, t, None, :] * u[:, t, :, None]
        ys.append((h * Cm[:, t, None, :]).sum(-1) + D * u[:, t])
    return torch.stack(ys, dim=1)


class Mixer(nn.Module):
    def __init__(self, d, E, N, R, K):
        super().__init__()
        self.E, self.N, self.R, self.K = E, N, R, K
        self.in_proj = nn.Linear(d, 2 * E, bias=False)
        # depthwise conv, weight (E, 1, K); applied through F.conv1d in forward
        self.conv1d = nn.Conv1d(E, E, K, groups=E, padding=K - 1, bias=True)
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        self.A_log = nn.Parameter(torch.zeros(E, N))
        self.D = nn.Parameter(torch.ones(E))
        self.out_proj = nn.Linear(E, d, bias=False)

    def forward(self, a):  # a (B, L, d)
        L = a.shape[1]
        E, N, R, K = self.E, self.N, self.R, self.K
        xz = self.in_proj(a)  # (B, L, 2E)
        x, z = xz[..., :E], xz[..., E:]
        # causal depthwise conv: pad K-1 on both sides, keep the first L outputs
        xc = F.conv1d(x.transpose(1, 2), self.conv1d.weight, self.conv1d.bias, padding=K - 1, groups=E)
        u = F.silu(xc[..., :L].transpose(1, 2))  # (B, L, E)
        p = self.x_proj(u)  # (B, L, R+2N)
        dt_low, Bm, Cm = p[..., :R], p[..., R : R + N], p[..., R + N :]
        delta = F.softplus(self.dt_proj(dt_low), beta=1.0, threshold=SOFTPLUS_THRESHOLD)  # (B, L, E)
        A = -torch.exp(self.A_log)  # (E, N)
        y = selective_scan(u, delta, A, Bm, Cm, self.D)
        return self.out_proj(y * F.silu(z))


class MLP(nn.Module):
    def __init__(self, d, M):
        super().__init__()
        self.fc1 = nn.Linear(d, M)
        self.fc2 = nn.Linear(M, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="none"))


class Block(nn.Module):
    def __init__(self, d, E, N, R, K, M):
        super().__init__()
        self.norm = RMSNorm(d)
        self.mixer = Mixer(d, E, N, R, K)
        self.M = M
        if M > 0:
            self.norm2 = RMSNorm(d)
            self.mlp = MLP(d, M)

    def forward(self, h):
        h = h + self.mixer(self.norm(h))
        if self.M > 0:
            h = h + self.mlp(self.norm2(h))
        return h


class Backbone(nn.Module):
    def __init__(self, d, layer_dims):
        super().__init__()
        # keyed by the checkpoint's layer index so parameter names match it exactly
        self.layers = nn.ModuleDict({str(i): Block(d, *dims) for i, dims in layer_dims})
        self.norm_f = RMSNorm(d)


class PatchMamba(nn.Module):
    def __init__(self, d, C, H, W, P, classes, layer_dims):
        """layer_dims: list of (checkpoint layer index, (E, N, R, K, M))."""
        super().__init__()
        if H % P or W % P:
            raise ValueError(f"image {H}x{W} not divisible by patch {P}")
        self.d, self.C, self.H, self.W, self.P, self.classes = d, C, H, W, P, classes
        self.L = (H // P) * (W // P)
        self.patch_embed = nn.Linear(C * P * P, d)
        self.pos_embed = nn.Parameter(torch.zeros(self.L, d))
        self.backbone = Backbone(d, layer_dims)
        self.head = nn.Linear(d, classes)

    def patchify(self, x):
        """x (B, C, H, W) -> (B, L, C*P*P); token t = row-major (ph, pw), feature
        f = c*P*P + py*P + px."""
        Bsz, C, H, W = x.shape
        P = self.P
        x = x.reshape(Bsz, C, H // P, P, W // P, P)  # b c ph py pw px
        x = x.permute(0, 2, 4, 1, 3, 5)  # b ph pw c py px
        return x.reshape(Bsz, (H // P) * (W // P), C * P * P)

    def forward(self, images):  # images (B, C, H, W) -> logits (B, V)
        h = self.patch_embed(self.patchify(images)) + self.pos_embed
        for blk in self.backbone.layers.values():
            h = blk(h)
        h = self.backbone.norm_f(h)
        return self.head(h.mean(dim=1))


def config_from_tensors(tensors, meta, image=None):
    """Derive (d, C, H, W, P, classes, layer_dims) from shapes and prunelab metadata.
    image: (C, H, W) for checkpoints without our metadata."""
    d = tensors["patch_embed.weight"].shape[0]
    classes = tensors["head.weight"].shape[0]
    info = json.loads(meta["prunelab"]) if "prunelab" in meta else {}
    if "image" in info:
        C, H, W = info["image"]
    elif image is not None:
        C, H, W = image
    else:
        raise ValueError("checkpoint has no prunelab metadata: pass image=(C, H, W)")
    if "patch_size" in info:
        P = int(info["patch_size"])
    else:
        P = int(round((tensors["patch_embed.weight"].shape[1] / C) ** 0.5))
    if tensors["patch_embed.weight"].shape[1] != C * P * P:
        raise ValueError("patch_embed width does not match C*P*P")
    idx = sorted(
        {int(k.split(".")[2]) for k in tensors if k.startswith("backbone.layers.")}
    )
    layer_dims = []
    for i in idx:
        pre = f"backbone.layers.{i}."
        E = tensors[pre + "mixer.in_proj.weight"].shape[0] // 2
        N = tensors[pre + "mixer.A_log"].shape[1]
        R = tensors[pre + "mixer.dt_proj.weight"].shape[1]
        K = tensors[pre + "mixer.conv1d.weight"].shape[2]
        fc1 = pre + "mlp.fc1.weight"
        M = tensors[fc1].shape[0] if fc1 in tensors else 0
        layer_dims.append((i, (E, N, R, K, M)))
    return d, C, H, W, P, classes, layer_dims


def load_model(path, dtype=torch.float32, image=None):
    """Build a PatchMamba from a checkpoint; every checkpoint tensor must be used, and every
    model parameter must be present. Returns (model, metadata)."""
    tensors, meta = load_safetensors(path)
    d, C, H, W, P, classes, layer_dims = config_from_tensors(tensors, meta, image)
    model = PatchMamba(d, C, H, W, P, classes, layer_dims).to(dtype)
    own = dict(model.named_parameters())
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        raise ValueError(f"{path}: missing {missing}, unexpected {extra}")
    with torch.no_grad():
        for name, p in own.items():
            t = tensors[name]
            if tuple(t.shape) != tuple(p.shape):
                raise ValueError(f"{path}: {name} has shape {tuple(t.shape)}, expected {tuple(p.shape)}")
            p.copy_(t.to(dtype))
    return model, meta
