"""AFF / iAFF written from the paper's equations (Sec. 3, Fig. 2-3) and YimianDai/open-aff
``aff_pytorch/aff_net/fusion.py`` (the ``"official"`` variant: AFF's factor 2, iAFF's reused ``global_att``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bn_eval(bn, x):
    return (x - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps) * \
        bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)


def pwconv(conv, x):
    """1×1 conv as an explicit channel contraction."""
    return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x) + conv.bias.view(1, -1, 1, 1)


def local_ctx(cam, X):
    return bn_eval(cam.local_bn2, pwconv(cam.local_conv2, F.relu(bn_eval(cam.local_bn1, pwconv(cam.local_conv1, X)))))


def global_ctx(cam, X):
    g = X.sum((2, 3), keepdim=True) / (X.shape[2] * X.shape[3])
    return bn_eval(cam.global_bn2, pwconv(cam.global_conv2, F.relu(bn_eval(cam.global_bn1, pwconv(cam.global_conv1, g)))))


def ms_cam(cam, X):
    """M(X) = σ(L(X) ⊕ g(X)), the global context broadcast over H×W."""
    return torch.sigmoid(local_ctx(cam, X) + global_ctx(cam, X))


@torch.no_grad()
def aff_reference(module, x, y):
    """What ``AttentionalFeatureFusion`` (eval mode) must return."""
    official = module.variant == "official"
    if module.attn2 is None:
        m = ms_cam(module.attn, x + y)  # Z = M(X ⊎ Y) ⊗ X + (1 − M(X ⊎ Y)) ⊗ Y, X ⊎ Y = X + Y
        z = m * x + (1 - m) * y
        return 2 * z if official else z
    m1 = ms_cam(module.attn, x + y)  # iAFF: X ⊎ Y = M(X + Y) ⊗ X + (1 − M(X + Y)) ⊗ Y
    xi = m1 * x + (1 - m1) * y
    if official:
        m2 = torch.sigmoid(local_ctx(module.attn2, xi) + global_ctx(module.attn, xi))
    else:
        m2 = ms_cam(module.attn2, xi)
    return m2 * x + (1 - m2) * y
