"""Peer rows for the sparse / linear global attention modules: criss_cross, double_attention, external_attention,
axial, halo (against External-Attention-pytorch = fightingcv-attention, and timm's HaloAttn).

    PYTHONPATH=src:benchmarks python benchmarks/peers.py --only cc,a2,ea,axial,halo --runs 1 \
        --output benchmarks/results/sparse_attention.md
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from peers import Call, Comparison, Impl, az, copy_weights, fcv, nchw, timm_layer

C, H = 64, 56


class _EABlock(nn.Module):
    """fightingcv's ExternalAttention core (tokens) inside the official EANet block (conv1, conv2 + BN,
    residual, ReLU), so the whole computation equals attnzoo's."""

    def __init__(self, core: nn.Module, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 1)
        self.core = core
        self.conv2 = nn.Conv2d(c, c, 1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        u = self.conv1(x).flatten(2).transpose(1, 2)
        f = self.core(u).transpose(1, 2).reshape(b, c, h, w)
        return F.relu(x + self.bn(self.conv2(f)))


def comparisons() -> list[Comparison]:
    hid = C // 8

    def cc_fcv(a):
        p = fcv("CrissCrossAttention", "CrissCrossAttention")(C)
        sl = {"query_conv": slice(0, hid), "key_conv": slice(hid, 2 * hid), "value_conv": slice(2 * hid, None)}
        special = {f"{n}.weight": (lambda s, sl=v: s["qkv_weight"][sl]) for n, v in sl.items()}
        special.update({f"{n}.bias": (lambda s, sl=v: s["qkv_bias"][sl]) for n, v in sl.items()})
        copy_weights(a, p, [], special)
        return p, a

    def a2_fcv(a):
        p = fcv("A2Atttention", "DoubleAttention")(C, C // 4, C // 4, True)
        cm = cn = C // 4
        sl = {"convA": slice(0, cm), "convB": slice(cm, cm + cn), "convV": slice(cm + cn, None)}
        special = {f"{n}.weight": (lambda s, sl=v: s["proj.weight"][sl]) for n, v in sl.items()}
        special.update({f"{n}.bias": (lambda s, sl=v: s["proj.bias"][sl]) for n, v in sl.items()})
        copy_weights(a, p, [("conv_reconstruct.", "out.")], special)
        return p, None

    def ea_fcv(a):
        core = fcv("ExternalAttention", "ExternalAttention")(d_model=C, S=64)
        return Call(core, lambda m, x: m(x.flatten(2).transpose(1, 2))), None  # NCHW → tokens: one copy

    def ea_fcv_block(a):
        p = _EABlock(fcv("ExternalAttention", "ExternalAttention")(d_model=C, S=64), C)
        copy_weights(a, p, [("conv1.", "conv_in."), ("core.mk.", "mk."), ("core.mv.", "mv."), ("conv2.", "conv_out."),
                            ("bn.", "norm.")])
        return p, a

    def axial_fcv(a):
        p = fcv("Axial_attention", "AxialAttention")(C, num_dimensions=2, heads=8, dim_heads=8, dim_index=1,
                                                     sum_axial_out=False)
        inner = 64
        rename = []
        special = {}
        for i, ax in enumerate(("attn_h", "attn_w")):
            pre = f"axial_attentions.{i}.fn."
            special[pre + "to_q.weight"] = lambda s, ax=ax: s[f"{ax}.to_qkv.weight"][:inner]
            special[pre + "to_kv.weight"] = lambda s, ax=ax: s[f"{ax}.to_qkv.weight"][inner:]
            rename.append((pre + "to_out.", f"{ax}.to_out."))
        copy_weights(a, p, rename, special)
        return p, a

    def halo_timm(a):
        p = timm_layer("halo_attn", "HaloAttn")(C, num_heads=8, dim_head=8, block_size=8, halo_size=3)
        skip = 6
        copy_weights(a, p, [("pos_embed.height_rel", "height_rel"), ("pos_embed.width_rel", "width_rel")], {
            "pos_embed.height_rel": lambda s: torch.cat([torch.zeros(skip, 8), s["height_rel"]]),
            "pos_embed.width_rel": lambda s: torch.cat([torch.zeros(skip, 8), s["width_rel"]]),
        })
        return p, None

    def halo_fcv(a):
        return fcv("HaloAttention", "HaloAttention")(dim=C, block_size=8, halo_size=3, dim_head=8, heads=8), None

    shape = f"2×{C}×{H}×{H}"
    return [
        Comparison("cc", "criss_cross", f"{shape}, q/k C/8", az("criss_cross", C), nchw(C, H, H),
                   [Impl("fightingcv", cc_fcv, True, "CrissCrossAttention (CCNet-Pure-Pytorch copy): same math with "
                         "copied weights; −∞ diagonal built on the CPU every call (device mismatch on CUDA), "
                         "permute().contiguous() copies")]),
        Comparison("a2", "double_attention", f"{shape}, c_m = c_n = 16", az("double_attention", C), nchw(C, H, H),
                   [Impl("fightingcv", a2_fcv, False, "DoubleAttention(64, 16, 16): softmax without dim (dim 0 = the "
                         "batch axis for 3-D input: samples mix), no residual; three separate input convs")]),
        Comparison("ea", "external_attention", f"{shape}, S = 64", az("external_attention", C), nchw(C, H, H),
                   [Impl("fightingcv", ea_fcv, False, "ExternalAttention(64, S=64) on B×N×C tokens: the memory core "
                         "only (no 1×1 conv in/out, BN, residual, ReLU): less work than the official block"),
                    Impl("fightingcv+block", ea_fcv_block, True, "the same core inside the official EANet block "
                         "(conv1, conv2 + BN, residual, ReLU; weights copied): same math")],
                   ),
        Comparison("axial", "axial", f"{shape}, 8 heads × 8", az("axial", C, heads=8, dim_head=8), nchw(C, H, H),
                   [Impl("fightingcv", axial_fcv, True, "AxialAttention(sum_axial_out=False, dim_index=1): same math "
                         "with copied weights; explicit einsum softmax, permute().contiguous() per axis")]),
        Comparison("halo", "halo", f"{shape}, block 8, halo 3, 8 heads × 8", az("halo", C, heads=8, dim_head=8),
                   nchw(C, H, H),
                   [Impl("timm", halo_timm, False, "HaloAttn (weights copied): equal on interior blocks; attends to "
                         "its zero halo padding at the border (attnzoo masks it); asserts H, W divisible by the block"),
                    Impl("fightingcv", halo_fcv, False, "HaloAttention (lucidrains copy): inverted padding mask (every "
                         "valid key masked: output independent of q/k), output projection, H, W divisible only")]),
    ]
