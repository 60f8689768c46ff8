"""DANet's PAM and CAM as the official ``PAM_Module`` / ``CAM_Module`` compute them."""

from __future__ import annotations

import torch

from reference.common import conv


def ref_pam(m, x):
    """DANet ``PAM_Module.forward``."""
    b, c, h, w = x.shape
    proj_query = conv(x, m.query).view(b, -1, w * h).permute(0, 2, 1)
    proj_key = conv(x, m.key).view(b, -1, w * h)
    attention = torch.softmax(torch.bmm(proj_query, proj_key), dim=-1)
    proj_value = conv(x, m.value).view(b, -1, w * h)
    out = torch.bmm(proj_value, attention.permute(0, 2, 1)).view(b, c, h, w)
    return m.gamma * out + x


def ref_cam(m, x, sign="official"):
    """DANet ``CAM_Module.forward`` (``sign="paper"``: the paper's softmax(E))."""
    b, c, h, w = x.shape
    proj_query = x.view(b, c, -1)
    proj_key = x.view(b, c, -1).permute(0, 2, 1)
    energy = torch.bmm(proj_query, proj_key)
    if sign == "official":
        energy = torch.max(energy, -1, keepdim=True)[0].expand_as(energy) - energy
    attention = torch.softmax(energy, dim=-1)
    out = torch.bmm(attention, x.view(b, c, -1)).view(b, c, h, w)
    return m.beta * out + x

