"""ASFF as the official YOLOv3 ``ASFF`` computes it."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.fusion import (
    AdaptiveSpatialFeatureFusion,
)


def official_yolov3_asff(m: AdaptiveSpatialFeatureFusion, official_level: int, x_level_0, x_level_1, x_level_2):
    """The official ``ASFF.forward`` (GOATmessi7/ASFF, models/network_blocks.py) written out; x_level_0 is the
    coarsest (512 ch, stride 32), x_level_2 the finest (256 ch, stride 8); module names mapped to ours."""
    ours = {0: 2, 1: 1, 2: 0}  # official level index → index in our finest-first list
    if official_level == 0:
        level_0_resized = x_level_0
        level_1_resized = conv_block(m.resize[ours[1]][-1], x_level_1, 2)  # stride_level_1
        level_2_downsampled_inter = F.max_pool2d(x_level_2, 3, stride=2, padding=1)
        level_2_resized = conv_block(m.resize[ours[2]][-1], level_2_downsampled_inter, 2)  # stride_level_2
    elif official_level == 1:
        level_0_compressed = conv_block(m.resize[ours[0]], x_level_0, 1)  # compress_level_0
        level_0_resized = F.interpolate(level_0_compressed, scale_factor=2, mode="nearest")
        level_1_resized = x_level_1
        level_2_resized = conv_block(m.resize[ours[2]][-1], x_level_2, 2)  # stride_level_2
    else:
        level_0_compressed = conv_block(m.resize[ours[0]], x_level_0, 1)
        level_0_resized = F.interpolate(level_0_compressed, scale_factor=4, mode="nearest")
        level_1_resized = F.interpolate(x_level_1, scale_factor=2, mode="nearest")  # dims equal: no compress
        level_2_resized = x_level_2
    level_0_weight_v = conv_block(m.weight[ours[0]], level_0_resized, 1)
    level_1_weight_v = conv_block(m.weight[ours[1]], level_1_resized, 1)
    level_2_weight_v = conv_block(m.weight[ours[2]], level_2_resized, 1)
    levels_weight_v = torch.cat((level_0_weight_v, level_1_weight_v, level_2_weight_v), 1)
    # weight_levels: official input blocks and outputs are ordered coarse → fine; ours fine → coarse
    c = m.compress_channels
    wt = m.weight_levels.weight.flip(0).unflatten(1, (3, c)).flip(1).flatten(1, 2)
    levels_weight = F.softmax(F.conv2d(levels_weight_v, wt, m.weight_levels.bias.flip(0)), dim=1)
    fused_out_reduced = (
        level_0_resized * levels_weight[:, 0:1, :, :]
        + level_1_resized * levels_weight[:, 1:2, :, :]
        + level_2_resized * levels_weight[:, 2:, :, :]
    )
    return conv_block(m.expand, fused_out_reduced, 1), levels_weight


def official_param_count(official_level: int, rfb: bool = False) -> int:
    """Parameters of the official ASFF(level) by its constructor: add_conv = conv (no bias) + BN (2 per channel)."""
    dim, inter = [512, 256, 256], [512, 256, 256][official_level]

    def add_conv(i, o, k):
        return i * o * k * k + 2 * o

    cw = 8 if rfb else 16
    n = {0: add_conv(256, inter, 3) * 2 + add_conv(inter, 1024, 3),
         1: add_conv(512, inter, 1) + add_conv(256, inter, 3) + add_conv(inter, 512, 3),
         2: add_conv(512, inter, 1) + add_conv(inter, 256, 3)}[official_level]
    assert dim[1] == dim[2]  # official level 2 has no compress_level_1
    return n + 3 * add_conv(inter, cw, 1) + (3 * cw * 3 + 3)



def conv_block(block, x, stride):
    """conv → (GroupNorm / BatchNorm in eval) → (ReLU / LeakyReLU) written with functional calls."""
    conv = block.conv
    y = F.conv2d(x, conv.weight, conv.bias, stride=stride, padding=conv.kernel_size[0] // 2)
    norm = getattr(block, "norm", None)
    if isinstance(norm, nn.GroupNorm):
        y = F.group_norm(y, norm.num_groups, norm.weight, norm.bias, norm.eps)
    elif isinstance(norm, nn.BatchNorm2d):
        y = F.batch_norm(y, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps)
    act = getattr(block, "act", None)
    if isinstance(act, nn.ReLU):
        y = F.relu(y)
    elif isinstance(act, nn.LeakyReLU):
        y = F.leaky_relu(y, act.negative_slope)
    return y

