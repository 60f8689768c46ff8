"""Non-local block (Wang et al., CVPR 2018), written from the official ``_NonLocalBlockND``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reference.common import bn_eval, conv, pool_ceil


def ref_nonlocal(m, x):
    """video-nonlocal-net ``spacetime_nonlocal`` (+ the paper's Gaussian and Non-local_pytorch's concatenation,
    which materialises the 2d×N×N' pairwise tensor), one sample at a time."""
    outs = []
    for b in range(x.shape[0]):
        xb = x[b : b + 1]
        _, c, h, w = xb.shape
        src = pool_ceil(xb) if m.subsample else xb
        if m.mode == "gaussian":
            theta, phi = xb.reshape(c, -1), src.reshape(c, -1)
        else:
            theta, phi = conv(xb, m.theta).reshape(m.inner_channels, -1), conv(src, m.phi).reshape(m.inner_channels, -1)
        g = conv(src, m.g).reshape(m.inner_channels, -1)  # d×N'
        n, n_keys = theta.shape[1], phi.shape[1]
        if m.mode == "concatenation":
            pair = torch.cat([theta[:, :, None].expand(-1, n, n_keys), phi[:, None, :].expand(-1, n, n_keys)], 0)
            f = F.relu(F.conv2d(pair[None], m.concat_project.weight))[0, 0]  # N×N'
            p = f / n_keys
        else:
            affinity = theta.t() @ phi
            if m.mode == "dot_product":
                p = affinity / n_keys
            else:
                if m.use_scale:
                    affinity = affinity * theta.shape[0] ** -0.5
                p = torch.softmax(affinity, dim=1)
        y = (g @ p.t()).reshape(1, m.inner_channels, h, w)
        z = conv(y, m.out)
        if m.bn is not None:
            z = bn_eval(m.bn, z)
        outs.append(xb + z)
    return torch.cat(outs)

