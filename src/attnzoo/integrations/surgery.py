"""Model surgery: ``attnzoo.insert(model, "cbam")`` puts a registered module into an existing network.

Default placement (``where=None``): one module in every residual block the function recognises, after the
last normalisation of the residual branch and before the addition — the position of SE / CBAM / ECA in
their papers and of timm's ``attn_layer`` slot.  Recognised blocks:

============================================================  =====================================================
block                                                         where the module goes
============================================================  =====================================================
torchvision ``resnet.BasicBlock`` / ``resnet.Bottleneck``      after ``bn2`` / ``bn3`` (the norm is wrapped)
timm ``resnet.BasicBlock`` / ``resnet.Bottleneck``             timm's own ``se`` slot (after ``bn2`` / ``bn3``)
timm ``InvertedResidual`` / ``CondConvResidual``               after ``bn3`` (projection norm, before the skip)
timm ``DepthwiseSeparableConv`` / ``EdgeResidual``             after ``bn2``
torchvision MobileNetV2 / V3 ``InvertedResidual``,            after the last layer of the ``conv`` / ``block``
EfficientNet ``MBConv`` / ``FusedMBConv``                       branch (its projection conv + norm)
============================================================  =====================================================

Subclasses of these blocks are recognised too.  MobileNet / EfficientNet blocks get the module whether or not
they have a skip connection (a block without a skip has no addition: the module then ends the block).

Wrapping and state_dict keys: where the host block has no slot (torchvision), the norm is replaced by
:class:`InsertedAttention` ``(module, attn)``, so ``layer1.0.bn2.weight`` becomes
``layer1.0.bn2.module.weight`` and the new weights live under ``layer1.0.bn2.attn.*``.  The wrapper maps the
old keys on load, so a checkpoint of the *original* model loads into the modified one with
``model.load_state_dict(sd, strict=False)``: the only missing keys are the new module's.  timm's ResNet
blocks keep every key; the module appears as ``layer1.0.se.*``, exactly what
``timm.create_model(..., block_args=dict(attn_layer=...))`` would give.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, Union

import torch
import torch.nn as nn

__all__ = ["insert", "Insertion", "InsertedAttention", "out_channels", "recognised_block"]

Factory = Union[str, Callable[..., nn.Module]]
Where = Union[None, Callable[[str, nn.Module], bool], Sequence[str], str]


class InsertedAttention(nn.Module):
    """``attn(module(x))``: an existing layer followed by an inserted attention module.

    Children are ``module`` (the original layer, unchanged) and ``attn``.  Loading a state dict that still
    has the original layer's keys (``...bn2.weight`` rather than ``...bn2.module.weight``) works: the old
    keys are mapped to ``module.*`` on load.
    """

    def __init__(self, module: nn.Module, attn: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.module(x))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # Keys written by the unmodified model (prefix + "weight", prefix + "running_mean", ...) belong to `module`.
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix) :]
            if not rest.startswith(("module.", "attn.")):
                new = prefix + "module." + rest
                if new not in state_dict:
                    state_dict[new] = state_dict.pop(key)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


@dataclass(frozen=True)
class Insertion:
    """One inserted module: ``name`` is its qualified name in the model (``model.get_submodule(name)``),
    ``after`` the qualified name of the layer whose output it takes, ``channels`` its channel count and
    ``params`` its number of parameters."""

    name: str
    after: str
    channels: int
    params: int

    def __str__(self) -> str:
        return f"{self.name}: {self.channels} channels, {self.params:,} params, after {self.after}"


# ----------------------------------------------------------------------------------------------------------------
# recognised blocks


def _last_child(seq_name: str) -> Callable[[nn.Module], str]:
    def pick(block: nn.Module) -> str:
        seq = getattr(block, seq_name)
        return f"{seq_name}.{len(seq) - 1}"

    return pick


#: (module of the class, class name) -> ("after", child path or function of the block) or ("slot", attribute, norm).
_BLOCKS: dict[tuple[str, str], tuple[str, Any, str]] = {
    ("torchvision.models.resnet", "BasicBlock"): ("after", "bn2", "bn2"),
    ("torchvision.models.resnet", "Bottleneck"): ("after", "bn3", "bn3"),
    ("timm.models.resnet", "BasicBlock"): ("slot", "se", "bn2"),
    ("timm.models.resnet", "Bottleneck"): ("slot", "se", "bn3"),
    ("timm.models._efficientnet_blocks", "InvertedResidual"): ("after", "bn3", "bn3"),
    ("timm.models._efficientnet_blocks", "CondConvResidual"): ("after", "bn3", "bn3"),
    ("timm.models._efficientnet_blocks", "DepthwiseSeparableConv"): ("after", "bn2", "bn2"),
    ("timm.models._efficientnet_blocks", "EdgeResidual"): ("after", "bn2", "bn2"),
    ("torchvision.models.mobilenetv2", "InvertedResidual"): ("after", _last_child("conv"), ""),
    ("torchvision.models.mobilenetv3", "InvertedResidual"): ("after", _last_child("block"), ""),
    ("torchvision.models.efficientnet", "MBConv"): ("after", _last_child("block"), ""),
    ("torchvision.models.efficientnet", "FusedMBConv"): ("after", _last_child("block"), ""),
}


def recognised_block(module: nn.Module) -> tuple[str, str, str] | None:
    """``(kind, child, norm)`` if ``module`` is (a subclass of) a block :func:`insert` knows, else ``None``.

    ``kind`` is ``"after"`` (the module goes after the child ``child``) or ``"slot"`` (the block's attribute
    ``child`` is an attention slot applied after its norm ``norm``).
    """
    for cls in type(module).__mro__:
        entry = _BLOCKS.get((cls.__module__, cls.__name__))
        if entry is not None:
            kind, child, norm = entry
            child = child(module) if callable(child) else child
            return kind, child, norm or child
    return None


# ----------------------------------------------------------------------------------------------------------------
# channel inference

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm)


def out_channels(module: nn.Module) -> int | None:
    """Output channels of a layer, read from its attributes: a norm's ``num_features`` / ``num_channels``, a
    conv's (or any layer's) integer ``out_channels``; for containers the last child that tells.  ``None``
    when nothing tells (then :func:`insert` needs ``channels=`` or ``example_input=``)."""
    if isinstance(module, InsertedAttention):
        return out_channels(module.module)
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return int(module.num_features)
    if isinstance(module, nn.GroupNorm):
        return int(module.num_channels)
    if isinstance(module, nn.LayerNorm) and type(module).__name__.endswith("2d") and len(module.normalized_shape) == 1:
        return int(module.normalized_shape[0])  # timm LayerNorm2d: channels-first
    value = getattr(module, "out_channels", None)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    for child in reversed(list(module.children())):
        value = out_channels(child)
        if value is not None:
            return value
    return None


def _measure_channels(model: nn.Module, targets: Sequence[nn.Module], example_input: Any) -> dict[int, int]:
    """Channels of each target's output measured on one forward of ``example_input`` (eval mode, no grad)."""
    seen: dict[int, int] = {}

    def hook(mod: nn.Module, args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and out.dim() == 4:
            seen.setdefault(id(mod), int(out.shape[1]))

    handles = [t.register_forward_hook(hook) for t in targets]
    training = [m.training for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(example_input, (tuple, list)):
                model(*example_input)
            else:
                model(example_input)
    finally:
        for h in handles:
            h.remove()
        for m, t in zip(model.modules(), training):
            m.training = t
    return seen


# ----------------------------------------------------------------------------------------------------------------
# insert


def _build(factory: Factory, channels: int, kwargs: dict[str, Any]) -> nn.Module:
    if isinstance(factory, str):
        from ..registry import create

        return create(factory, channels, **kwargs)
    module = factory(channels, **kwargs)
    if not isinstance(module, nn.Module):
        raise ValueError(f"insert: the factory must return an nn.Module, got {type(module).__name__}")
    return module


def _check_factory(name: Factory) -> None:
    if isinstance(name, str):
        from ..registry import info

        info(name)  # ValueError with close matches if unknown
    elif isinstance(name, nn.Module) or not callable(name):
        raise ValueError(
            f"insert: name must be a registered module name or a factory called as factory(channels, **kwargs), "
            f"got {name!r}"
        )


def _match(name: str, pattern: str) -> bool:
    """Shell-style match per dotted segment: ``"layer4.*"`` matches ``layer4.0`` but not ``layer4.0.conv1``."""
    parts, pats = name.split("."), pattern.split(".")
    return len(parts) == len(pats) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pats))


def _select(model: nn.Module, where: Where) -> list[tuple[str, nn.Module]]:
    named = list(model.named_modules())
    if where is None:
        picked = [(n, m) for n, m in named if recognised_block(m) is not None]
        if not picked:
            raise ValueError(
                f"insert: found no residual block it recognises in {type(model).__name__} (torchvision / timm "
                f"ResNet, MobileNet, EfficientNet blocks); choose positions with where= (a list of module names "
                f"or a function (name, module) -> bool)"
            )
        return picked
    if isinstance(where, str):
        where = [where]
    if callable(where):
        picked = [(n, m) for n, m in named if where(n, m)]
    elif isinstance(where, Iterable):
        index = dict(named)
        picked = []
        for pattern in where:
            if not isinstance(pattern, str):
                raise ValueError(f"insert: where must list module names, got {pattern!r}")
            if any(c in pattern for c in "*?["):
                hits = [(n, m) for n, m in named if n and _match(n, pattern)]
                if not hits:
                    raise ValueError(f"insert: pattern {pattern!r} in where matches no module name")
                picked += hits
            elif pattern in index and pattern:
                picked.append((pattern, index[pattern]))
            else:
                close = difflib.get_close_matches(pattern, [n for n in index if n], n=3)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ValueError(f"insert: where names {pattern!r}, which is not a submodule of the model{hint}")
    else:
        raise ValueError(
            f"insert: where must be None, a function (name, module) -> bool or a list of names, got {where!r}"
        )
    picked = [(n, m) for n, m in picked if n]  # the model itself has no parent to be wrapped in
    if not picked:
        raise ValueError("insert: where selected no submodule of the model")
    return picked


def _move_like(new: nn.Module, ref: nn.Module) -> nn.Module:
    tensor: torch.Tensor | None = next(iter(ref.parameters()), None)
    if tensor is None:
        tensor = next(iter(ref.buffers()), None)
    if tensor is not None:
        if tensor.is_floating_point():
            new.to(device=tensor.device, dtype=tensor.dtype)
        else:
            new.to(device=tensor.device)
    return new.train(ref.training)


def insert(
    model: nn.Module,
    name: Factory,
    where: Where = None,
    *,
    position: str = "auto",
    channels: int | None = None,
    example_input: Any = None,
    **kwargs: Any,
) -> tuple[nn.Module, list[Insertion]]:
    """Insert a module into ``model`` (in place) and return ``(model, report)``.

    Args:
        model: a torchvision / timm network or any ``nn.Module``.
        name: a module name (``"cbam"``, ``"eca"``, ``"CA"``, ...: any name :func:`attnzoo.info` resolves,
            docs/names.md) that maps one B×C×H×W map to a map of
            the same shape with these ``kwargs`` (:meth:`attnzoo.ModuleInfo.same_shape_nchw`; a module that
            changes the channels or the resolution, or takes other inputs, is refused with a ``ValueError``
            before the model is touched), or a factory called as ``factory(channels, **kwargs)`` (e.g. a class).
        where: ``None`` — every recognised residual block (see the module docstring); a list of qualified
            module names (``["layer3", "layer4.1"]``; shell patterns per dotted segment, ``"layer4.*"`` = the
            children of ``layer4``); or a
            function ``(name, module) -> bool`` called on ``model.named_modules()``.  A selected recognised
            block gets the module at its in-block position; any other selected layer gets it right after its
            output (the layer is wrapped in :class:`InsertedAttention`).
        position: ``"auto"`` (as just described) or ``"after"`` (always after the selected layer's output,
            also for recognised blocks — i.e. after the residual addition).
        channels: channel count for every inserted module (normally inferred; see below).
        example_input: an input for ``model``; when given, channels are measured on one eval-mode forward
            instead of read from the layers' attributes.
        **kwargs: passed to the module: ``attnzoo.create(name, channels, **kwargs)``.

    Channels are inferred from the layer the module follows: a norm's ``num_features``, a conv's
    ``out_channels``, for containers the last child that has one.  The new modules take the device, dtype
    and train/eval mode of the layer they follow.  A layer object used at several places in the forward
    (torchvision's shared ``relu``) gets the module at every use.

    Returns:
        The same ``model`` object and a list of :class:`Insertion` records (qualified name, the layer it
        follows, channels, parameter count), in model order.
    """
    _check_factory(name)
    if position not in ("auto", "after"):
        raise ValueError(f"insert: position must be 'auto' or 'after', got {position!r}")
    if channels is not None and (not isinstance(channels, int) or isinstance(channels, bool) or channels < 1):
        raise ValueError(f"insert: channels must be a positive integer or None, got {channels!r}")

    parents = {id(m): (parent, child_name) for parent in model.modules() for child_name, m in parent.named_children()}
    # Resolve every selection to (parent, attribute, target, kind, norm) before changing anything.
    plans: list[
        tuple[nn.Module, str, str, nn.Module, str]
    ] = []  # parent, attribute, kind, the layer it follows, its name
    for qual, module in _select(model, where):
        block = recognised_block(module) if position == "auto" else None
        if block is not None:
            kind, child, norm = block
            parent = module.get_submodule(child.rsplit(".", 1)[0]) if "." in child else module
            attr = child.rsplit(".", 1)[-1]
            norm_mod = module.get_submodule(norm)
            if kind == "slot":
                plans.append((parent, attr, "slot", norm_mod, f"{qual}.{norm}"))
            else:
                plans.append((parent, attr, "after", getattr(parent, attr), f"{qual}.{child}"))
        else:
            if id(module) not in parents:
                raise ValueError(f"insert: cannot insert after {qual!r}: it has no parent module")
            parent, attr = parents[id(module)]
            plans.append((parent, attr, "after", module, qual))

    measured: dict[int, int] = {}
    if channels is None and example_input is not None:
        measured = _measure_channels(model, [p[3] for p in plans], example_input)

    widths: list[int] = []
    for _, _, _, ref, _ in plans:
        c = channels if channels is not None else measured.get(id(ref))
        if c is None:
            c = out_channels(ref)
        if c is None:
            raise ValueError(
                f"insert: cannot infer the channels after {type(ref).__name__} (no num_features / out_channels); "
                f"pass channels= or example_input="
            )
        widths.append(c)
    if isinstance(name, str):
        from ..registry import info

        for c in sorted(set(widths)):
            info(name).require_same_shape_nchw("insert", c, **kwargs)

    inserted: list[tuple[nn.Module, str, int]] = []  # (attn, name of the layer it follows, channels)
    for (parent, attr, kind, ref, after), c in zip(plans, widths):
        attn = _move_like(_build(name, c, kwargs), ref)
        slot = getattr(parent, attr)
        if kind == "slot" and (slot is None or isinstance(slot, nn.Identity)):
            setattr(parent, attr, attn)
        else:
            setattr(parent, attr, InsertedAttention(slot, attn))
        inserted.append((attn, after, c))

    names: dict[int, str] = {}
    for n, m in model.named_modules(remove_duplicate=False):
        names.setdefault(id(m), n)
    report = [
        Insertion(
            name=names[id(attn)],
            after=after,
            channels=c,
            params=sum(p.numel() for p in attn.parameters()),
        )
        for attn, after, c in inserted
    ]
    order = {n: i for i, (n, _) in enumerate(model.named_modules(remove_duplicate=False))}
    report.sort(key=lambda r: order.get(r.name, 0))
    return model, report
