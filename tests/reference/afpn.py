"""AFPN written literally after gyyang23/AFPN: ``mmyolo/mmyolo/models/necks/yolov5_afpn.py`` (``ScaleBlockBody``,
3 levels) and ``mmdetection/mmdet/models/necks/afpn.py`` (``BlockBody``, 4 levels), block by block with the
official names, reading the weights of an ``AsymptoticFPN`` in eval mode (BN written out).  Valid on sizes that
divide exactly (the official code's domain)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bn(b, x):
    return (x - b.running_mean.view(1, -1, 1, 1)) / torch.sqrt(b.running_var.view(1, -1, 1, 1) + b.eps) * \
        b.weight.view(1, -1, 1, 1) + b.bias.view(1, -1, 1, 1)


def basic_conv(m, x, act):
    k, st = m.conv.kernel_size[0], m.conv.stride[0]
    return act(bn(m.bn, F.conv2d(x, m.conv.weight, None, st, (k - 1) // 2 if k % 2 else 0)))


def upsample(m, x, act):  # Upsample: BasicConv 1×1, nn.Upsample(scale_factor, 'bilinear')
    return F.interpolate(basic_conv(m.conv, x, act), scale_factor=m.factor, mode="bilinear")


def downsample(m, x, act):  # Downsample_x{2,4,8}: k×k stride-k conv
    return basic_conv(m.conv, x, act)


def asff(m, inputs, act):
    v = torch.cat([basic_conv(w, t, act) for w, t in zip(m.weight_level, inputs)], 1)
    w = torch.softmax(F.conv2d(v, m.weight_levels.weight, m.weight_levels.bias), 1)
    fused = sum(t * w[:, i : i + 1] for i, t in enumerate(inputs))
    return basic_conv(m.conv, fused, act)


def blocks(seq, x, act):
    for blk in seq:
        r = x
        out = act(bn(blk.bn1, F.conv2d(x, blk.conv1.weight, None, 1, 1)))
        out = bn(blk.bn2, F.conv2d(out, blk.conv2.weight, None, 1, 1))
        x = act(out + r)
    return x


@torch.no_grad()
def afpn_reference(module, x, act=F.relu):
    """The official forward (YOLOv5AFPN for 3 levels, AFPN for 4 levels, without the P6 max-pool)."""
    n = len(x)
    xs = [basic_conv(module.input_convs[i], x[i], act) for i in range(n)]  # conv1/conv2/conv3 (conv0..conv3)
    xs = [basic_conv(module.first_convs[i], xs[i], act) for i in range(n)]  # blocks_top1 / blocks_scalezero1 ...
    s2, s3 = module.stages[0], module.stages[1]
    x1, x2, x3 = xs[0], xs[1], xs[2]
    # stage with ASFF_2: top = asff_top1(x1, upsample_mid1_2(x2)); mid = asff_mid1(downsample_top1_2(x1), x2)
    top = asff(s2.asff[0], [x1, upsample(s2.resample[0][1], x2, act)], act)
    mid = asff(s2.asff[1], [downsample(s2.resample[1][0], x1, act), x2], act)
    x1, x2 = blocks(s2.blocks[0], top, act), blocks(s2.blocks[1], mid, act)
    # stage with ASFF_3
    top = asff(s3.asff[0], [x1, upsample(s3.resample[0][1], x2, act), upsample(s3.resample[0][2], x3, act)], act)
    mid = asff(s3.asff[1], [downsample(s3.resample[1][0], x1, act), x2, upsample(s3.resample[1][2], x3, act)], act)
    bot = asff(s3.asff[2], [downsample(s3.resample[2][0], x1, act), downsample(s3.resample[2][1], x2, act), x3], act)
    x1, x2, x3 = blocks(s3.blocks[0], top, act), blocks(s3.blocks[1], mid, act), blocks(s3.blocks[2], bot, act)
    outs = [x1, x2, x3]
    if n == 4:  # mmdetection BlockBody: the fourth level joins with ASFF_4
        s4, x4 = module.stages[2], xs[3]
        r = s4.resample
        z = asff(s4.asff[0], [x1, upsample(r[0][1], x2, act), upsample(r[0][2], x3, act), upsample(r[0][3], x4, act)], act)
        o = asff(s4.asff[1], [downsample(r[1][0], x1, act), x2, upsample(r[1][2], x3, act), upsample(r[1][3], x4, act)], act)
        t = asff(s4.asff[2], [downsample(r[2][0], x1, act), downsample(r[2][1], x2, act), x3, upsample(r[2][3], x4, act)], act)
        h = asff(s4.asff[3], [downsample(r[3][0], x1, act), downsample(r[3][1], x2, act), downsample(r[3][2], x3, act), x4], act)
        outs = [blocks(s4.blocks[i], v, act) for i, v in enumerate((z, o, t, h))]
    return [basic_conv(module.output_convs[i], outs[i], act) for i in range(n)]
