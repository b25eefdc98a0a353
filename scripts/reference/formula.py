"""The pseudo-random formula the tiny test checkpoints are written from, here and in
tests/common/mod.rs (`formula_*`, keep the two in sync): no weights are stored in the repo, the
tests write their checkpoints from the same formula the reference scripts use.

Element j of the stream named `name` (a tensor's name, say) comes from the integer hash
  h(name, j) = mix32(mix32(fnv1a(name)) XOR (j * 0x9E3779B9 mod 2^32))
with fnv1a the 32-bit FNV-1a hash of the UTF-8 name and mix32 the "lowbias32" integer hash
(x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16, mod 2^32).
  uniform(name, j) = (h + 0.5) / 2^31 - 1            in (-1, 1), exact in float64
  values(name, n, scale, base) = float32(base + scale * uniform(name, j)), computed in float64
  byte(name, j) = h & 0xFF
"""
import math

import numpy as np

M32 = 0xFFFFFFFF
SQRT3 = math.sqrt(3.0)


def fnv1a(name):
    h = 0x811C9DC5
    for b in name.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & M32
    return h


def mix32(x):
    """lowbias32 of a uint64 array (values < 2^32) or of an int."""
    x = np.asarray(x, dtype=np.uint64) & np.uint64(M32)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & np.uint64(M32)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & np.uint64(M32)
    x ^= x >> np.uint64(16)
    return x


def hashes(name, n, start=0):
    j = np.arange(start, start + n, dtype=np.uint64)
    return mix32(mix32(fnv1a(name)) ^ ((j * np.uint64(0x9E3779B9)) & np.uint64(M32)))


def uniform(name, n):
    return (hashes(name, n).astype(np.float64) + 0.5) / 2.0**31 - 1.0


def values(name, n, scale, base=0.0):
    return (base + scale * uniform(name, n)).astype(np.float32)


def raw_bytes(name, n):
    return (hashes(name, n) & np.uint64(0xFF)).astype(np.uint8)


def hf_weight(name, shape, norm_base):
    """A tiny decoder's weight, by its name in the checkpoint and its shape: uniform with the
    variance of N(0, 1/in) for matrices, norm weights norm_base ± 0.3·√3 (1 for Llama-style
    norms, 0 for Gemma's, which multiply by 1 + w), other vectors ± 0.1·√3, and the vision
    tower of a multimodal checkpoint ± 0.05·√3."""
    n = int(np.prod(shape))
    if "vision_tower" in name or "multi_modal" in name:
        v = values(name, n, 0.05 * SQRT3)
    elif len(shape) == 2:
        v = values(name, n, math.sqrt(3.0 / shape[1]))
    elif "norm" in name:
        v = values(name, n, 0.3 * SQRT3, float(norm_base))
    else:
        v = values(name, n, 0.1 * SQRT3)
    return v.reshape(shape)
