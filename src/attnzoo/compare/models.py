"""Models for ``attnzoo compare``: torchvision ResNets, CIFAR-style ResNets, and timm models when timm is installed.

Names:

- ``resnet18``, ``resnet34``, ``resnet50`` (and the other torchvision ResNets / ResNeXts / Wide ResNets):
  torchvision, random initialisation.  With ``stem="auto"`` (default) inputs smaller than 64×64 get the
  usual CIFAR stem (3×3 stride-1 first convolution, no max-pool), otherwise a 32×32 image is 1×1 after
  ``layer3``; ``stem="imagenet"`` keeps torchvision's stem as is.
- ``cifar_resnet{8,14,20,32,44,56,110}``: the CIFAR ResNets of He et al. (2016, section 4.2): a 3×3 stem with 16
  channels, three stages of 16/32/64 channels with n = (depth − 2) / 6 torchvision ``BasicBlock``\\ s each
  (projection shortcuts, "option B"), global pooling and a linear classifier.  Built from torchvision's own
  ``BasicBlock`` so that :func:`attnzoo.insert` treats them like any torchvision ResNet.
- ``r3d_18``, ``mc3_18``, ``r2plus1d_18``: torchvision's video ResNets (Tran et al., CVPR 2018), random
  initialisation; they take clips B×3×T×H×W (the ``video_shapes`` dataset, their default) and
  :func:`attnzoo.insert` gives the module ``dims=3``.
- any other name that ``timm.is_model`` knows, built with ``pretrained=False``.

``--pretrained PATH`` loads a local checkpoint (a state dict, or a dict holding one under ``state_dict``,
``model`` or ``model_state``) into the base network *before* attention modules are inserted; tensors whose
shape does not match (typically the classifier of another number of classes) are skipped and reported.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn as nn

__all__ = [
    "build_model",
    "check_model_name",
    "check_model_input",
    "known_models",
    "model_rank",
    "CifarResNet",
    "load_pretrained",
    "zero_init_residual",
]

_TV_RESNETS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)
_CIFAR_DEPTHS = (8, 14, 20, 32, 44, 56, 110)
_TV_VIDEO = ("r3d_18", "mc3_18", "r2plus1d_18")


class CifarResNet(nn.Module):
    """ResNet for 32×32 inputs (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, §4.2).

    Stem 3×3 conv (16 channels) + BN + ReLU, stages of ``n`` torchvision ``BasicBlock``\\ s with 16, 32 and 64
    channels (the 2nd and 3rd stages start with stride 2 and a 1×1 conv + BN projection shortcut), global
    average pooling and a linear layer.  Depth = 6n + 2.  Attribute names follow torchvision's ``ResNet``
    (``conv1``, ``bn1``, ``layer1``..``layer3``, ``fc``).

    Input B×3×H×W (any H, W ≥ 1), output B×num_classes.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_chans: int = 3, width: int = 16) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CifarResNet: depth must be 6n + 2 with n >= 1, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_chans, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        layers, inplanes = [], width
        for i, planes in enumerate((width, 2 * width, 4 * width)):
            stride = 1 if i == 0 else 2
            blocks = []
            for b in range(n):
                s = stride if b == 0 else 1
                down = None
                if s != 1 or inplanes != planes:
                    down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=s, bias=False), nn.BatchNorm2d(planes))
                blocks.append(BasicBlock(inplanes, planes, stride=s, downsample=down))
                inplanes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def known_models() -> list[str]:
    """Names built in (timm names come on top when timm is installed)."""
    return [*_TV_RESNETS, *(f"cifar_resnet{d}" for d in _CIFAR_DEPTHS), *_TV_VIDEO]


def model_rank(name: str) -> int:
    """Spatial rank of the model's input: 3 for the video models (clips T×H×W), 2 for every other one."""
    return 3 if name in _TV_VIDEO else 2


def check_model_input(name: str, dataset: str, rank: int) -> None:
    """``ValueError`` when a dataset of samples of spatial rank ``rank`` cannot feed the model."""
    if model_rank(name) != rank:
        what = {2: "images B×3×H×W", 3: "clips B×3×T×H×W"}
        raise ValueError(
            f"compare: model {name!r} takes {what[model_rank(name)]}, but dataset {dataset!r} holds "
            f"{what.get(rank, f'{rank}-D samples')}; leave --dataset out for the model's default"
        )


def _timm_has(name: str) -> bool:
    try:
        import timm
    except ImportError:
        return False
    return bool(timm.is_model(name))


def check_model_name(name: str) -> None:
    """Raise ``ValueError`` (with close matches) for a model name that cannot be built."""
    if name in known_models() or _timm_has(name):
        return
    close = difflib.get_close_matches(name, known_models(), n=3, cutoff=0.5)
    try:
        import timm

        close += [m for m in timm.list_models(f"*{name[:6]}*")[:3] if m not in close]
        extra = "any timm model name"
    except ImportError:
        extra = "timm model names once timm is installed"
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"compare: model must be one of {', '.join(known_models())} or {extra}, got {name!r}{hint}")


def _cifar_stem(model: nn.Module) -> None:
    """Replace a torchvision ResNet's 7×7/2 conv + max-pool stem by a 3×3/1 conv (the usual CIFAR adaptation)."""
    old = cast(nn.Conv2d, model.conv1)
    model.conv1 = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()


def _last_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm ending the residual branch of every torchvision ``BasicBlock``/``Bottleneck`` (``bn2`` /
    ``bn3``; ``conv2[1]`` / ``conv3[1]`` in the video ResNets)."""
    from torchvision.models.resnet import BasicBlock, Bottleneck
    from torchvision.models.video import resnet as video

    found: list[nn.modules.batchnorm._BatchNorm] = []
    for m in model.modules():
        bn: Any = m.bn3 if isinstance(m, Bottleneck) else m.bn2 if isinstance(m, BasicBlock) else None
        if isinstance(m, (video.BasicBlock, video.Bottleneck)):
            bn = (m.conv3 if isinstance(m, video.Bottleneck) else m.conv2)[1]
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            found.append(bn)
    return found


def count_residual_blocks(model: nn.Module) -> int:
    """Number of torchvision ``BasicBlock``/``Bottleneck`` blocks (2-D or video) in ``model``."""
    return len(_last_norms(model))


def zero_init_residual(model: nn.Module) -> int:
    """Zero the weight of the last BatchNorm of every torchvision ``BasicBlock``/``Bottleneck`` (``bn2``/``bn3``,
    in the video ResNets ``conv2[1]`` / ``conv3[1]``): each residual block starts as the identity (Goyal et al.
    2017; torchvision's ``zero_init_residual``).  Returns how many blocks were changed."""
    n = 0
    for bn in _last_norms(model):
        if bn.weight is not None:
            nn.init.zeros_(bn.weight)
            n += 1
    return n


def build_model(
    name: str,
    num_classes: int,
    image_size: int,
    stem: str = "auto",
    pretrained: str | Path | None = None,
    zero_init: bool | None = False,
) -> tuple[nn.Module, dict]:
    """Build the base network (no attention inserted yet); returns ``(model, notes)``.

    ``zero_init=True`` zeroes the last BatchNorm of every residual block (:func:`zero_init_residual`; timm
    models keep timm's own default, ``zero_init_last``), before a ``pretrained`` checkpoint is loaded;
    ``None`` does it for networks with more than 16 residual blocks (deeper ones blow up at the start otherwise).

    ``notes`` records what was adapted (``stem``) and, with ``pretrained``, which tensors were loaded/skipped.
    """
    check_model_name(name)
    if stem not in ("auto", "imagenet", "cifar"):
        raise ValueError(f"compare: stem must be 'auto', 'imagenet' or 'cifar', got {stem!r}")
    notes: dict = {}
    m = re.fullmatch(r"cifar_resnet(\d+)", name)
    if m:
        model = CifarResNet(int(m.group(1)), num_classes=num_classes)
        notes["stem"] = "cifar"
    elif name in _TV_RESNETS:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
        use_cifar = stem == "cifar" or (stem == "auto" and image_size < 64)
        if use_cifar:
            _cifar_stem(model)
        notes["stem"] = "cifar" if use_cifar else "imagenet"
    elif name in _TV_VIDEO:
        import torchvision.models.video

        model = getattr(torchvision.models.video, name)(weights=None, num_classes=num_classes)
        notes["stem"] = "video"
    else:
        import timm

        model = cast(Any, timm.create_model(name, pretrained=False, num_classes=num_classes))
        notes["stem"] = "timm default"
    if zero_init is None and not notes["stem"].startswith("timm"):  # auto: the deep networks only
        zero_init = count_residual_blocks(model) > 16
    if zero_init and not notes["stem"].startswith("timm"):
        notes["zero_init_residual"] = zero_init_residual(model)
    if pretrained is not None:
        notes["pretrained"] = load_pretrained(model, pretrained)
    return model, notes


def load_pretrained(model: nn.Module, path: str | Path) -> dict:
    """Load the matching tensors of a local checkpoint into ``model``; returns counts of loaded and skipped keys."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"compare: --pretrained must be an existing checkpoint file, got {str(path)!r}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"compare: could not read checkpoint {str(path)!r}: {type(e).__name__}: {e}") from e
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise ValueError(f"compare: checkpoint {str(path)!r} must hold a state dict, got {type(obj).__name__}")
    obj = {k.removeprefix("module."): v for k, v in obj.items()}
    own = model.state_dict()
    use = {k: v for k, v in obj.items() if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape}
    if not use:
        raise ValueError(f"compare: checkpoint {str(path)!r} has no tensor matching the model (wrong architecture?)")
    model.load_state_dict(use, strict=False)
    skipped = sorted(k for k in obj if k not in use)
    missing = sorted(k for k in own if k not in use)
    return {"path": str(path), "loaded": len(use), "skipped": skipped, "not_in_checkpoint": missing}
