"""SPNet's strip pooling (SPBlock) and mixed pooling (StripPooling) blocks, computed as the official code
(houqb/SPNet, MIT) computes them: ``nn.AdaptiveAvgPool2d`` strips and pyramid pools, expand / bilinear
``align_corners=True`` resizes, eval-mode BatchNorm written out; the module only lends its weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import bn_eval


def _conv_bn(seq, z, relu=False):
    conv, bn = seq[0], seq[1]
    y = bn_eval(bn, F.conv2d(z, conv.weight, None, padding=conv.padding))
    return F.relu(y) if relu else y


def strip_pooling_gate(m, x):
    """SPBlock.forward: the gate σ(conv3(ReLU(expand(bn1(conv1(pool1 x))) + expand(bn2(conv2(pool2 x))))))."""
    _, _, h, w = x.shape
    x1 = _conv_bn(m.rows, F.adaptive_avg_pool2d(x, (h, 1))).expand(-1, -1, h, w)
    x2 = _conv_bn(m.cols, F.adaptive_avg_pool2d(x, (1, w))).expand(-1, -1, h, w)
    return torch.sigmoid(F.conv2d(F.relu(x1 + x2), m.fuse.weight, m.fuse.bias))


def mixed_pooling(m, x):
    """StripPooling.forward (SPNet's head block) with pool_size = m.pool_sizes."""
    _, _, h, w = x.shape

    def up(z):
        return F.interpolate(z, (h, w), mode="bilinear", align_corners=True)

    x1 = _conv_bn(m.reduce_short, x, relu=True)
    x2 = _conv_bn(m.reduce_long, x, relu=True)
    short = _conv_bn(m.local, x1)
    for s, conv in zip(m.pool_sizes, m.pyramid):
        short = short + up(_conv_bn(conv, F.adaptive_avg_pool2d(x1, s)))
    long = up(_conv_bn(m.strip_w, F.adaptive_avg_pool2d(x2, (1, w)))) + up(_conv_bn(m.strip_h, F.adaptive_avg_pool2d(x2, (h, 1))))
    a = _conv_bn(m.fuse_short, F.relu(short), relu=True)
    b = _conv_bn(m.fuse_long, F.relu(long), relu=True)
    return F.relu(x + _conv_bn(m.proj, torch.cat([a, b], 1)))
