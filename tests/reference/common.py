"""Small written-out pieces the references share (1×1 conv, eval BatchNorm, ceil pooling, head split, window starts)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def conv(x, c):
    """A 1×1 (possibly grouped) conv with the module's weights, written out."""
    return F.conv2d(x, c.weight, c.bias, groups=c.groups)


def bn_eval(bn, z):
    return (z - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps) * bn.weight[
        :, None, None
    ] + bn.bias[:, None, None]


def pool_ceil(x):
    """2×2 max-pool that keeps odd last rows/columns: replicate-pad to even, then the official floor pooling."""
    return F.max_pool2d(F.pad(x, (0, x.shape[3] % 2, 0, x.shape[2] % 2), mode="replicate"), 2, 2)



def heads_of(t, h):  # B×N×(h·d) → B×h×N×d
    return t.reshape(t.shape[0], t.shape[1], h, -1).permute(0, 2, 1, 3)



def window_starts(size: int, k: int, s: int) -> list[int]:
    starts = list(range(0, max(size - k, 0) + 1, s))
    if starts[-1] + k < size:
        starts.append(starts[-1] + s)
    return starts

