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
torchvision video ``BasicBlock`` / ``Bottleneck`` (``r3d_18``,  after ``conv2.1`` / ``conv3.1`` (the BatchNorm3d
``mc3_18``, ``r2plus1d_18``)                                    ending the residual branch)
MONAI ``ResidualUnit`` (``UNet(num_res_units>0)``)              after the last unit of ``conv`` (before the addition);
                                                              the output head (``last_conv_only``) is left alone
MONAI ``TwoConv`` (``BasicUNet``'s double-conv blocks)          after ``conv_1``
============================================================  =====================================================

Rank: the module gets ``dims`` from the activation it follows (``dims=3`` in a video or volume network,
``dims=1`` in a signal network): read from the layer (``Conv3d`` / ``BatchNorm3d`` / ``InstanceNorm3d`` ... or
the last child that tells), or measured with ``example_input``.  A module without that rank is refused with a
``ValueError`` before the model is touched.

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

from .placement import InsertedAttention, measure_outputs, out_channels, recognised_block, spatial_rank

__all__ = ["insert", "Insertion", "InsertedAttention", "out_channels", "recognised_block", "spatial_rank"]

Factory = Union[str, Callable[..., nn.Module]]
Where = Union[None, Callable[[str, nn.Module], bool], Sequence[str], str]


@dataclass(frozen=True)
class Insertion:
    """One inserted module: ``name`` is its qualified name in the model (``model.get_submodule(name)``),
    ``after`` the qualified name of the layer whose output it takes, ``channels`` its channel count,
    ``params`` its number of parameters and ``dims`` the spatial rank it was built for."""

    name: str
    after: str
    channels: int
    params: int
    dims: int = 2

    def __str__(self) -> str:
        rank = "" if self.dims == 2 else f" ({self.dims}-D)"
        return f"{self.name}: {self.channels} channels{rank}, {self.params:,} params, after {self.after}"


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


def _with_dims(name: Factory, rank: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` plus ``dims=rank`` for a registered module taking ``dims`` (a factory gets ``kwargs`` as given)."""
    if not isinstance(name, str) or "dims" in kwargs or "spatial_dims" in kwargs or rank == 2:
        return kwargs
    return {**kwargs, "dims": rank}


def _check_registered(
    name: str, widths: list[tuple[int, int]], plans: list[tuple[nn.Module, str, str, nn.Module, str]], kwargs: dict
) -> None:
    """The module keeps the shape of a map at each width (the shape rule does not depend on the rank), then
    every inferred rank is one it supports."""
    from ..registry import info

    entry = info(name)
    plain = {k: v for k, v in kwargs.items() if k not in ("dims", "spatial_dims")}
    for c in sorted({c for c, _ in widths}):
        entry.require_same_shape_nchw("insert", c, **plain)
    for (c, rank), plan in zip(widths, plans):
        if rank not in entry.dims:
            ref, after = plan[3], plan[4]
            raise ValueError(
                f"insert: module {entry.name!r} ({entry.cls.__name__}) supports dims {entry.dims}, but the output "
                f"of {after!r} ({type(ref).__name__}) is {rank}-D (dims={rank}); modules with dims={rank}: "
                f"attnzoo.list_modules(dims={rank})"
            )


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
                f"ResNet, MobileNet, EfficientNet, torchvision video ResNet, MONAI ResidualUnit / TwoConv blocks); "
                f"choose positions with where= (a list of module names or a function (name, module) -> bool)"
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
            docs/names.md) that maps one B×C×H×W map (B×C×L, B×C×D×H×W in 1-D / 3-D networks) to a map of
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
        **kwargs: passed to the module: ``attnzoo.create(name, channels, **kwargs)``.  ``dims`` is inferred
            (see below); an explicit ``dims=`` must agree with it.

    Channels are inferred from the layer the module follows: a norm's ``num_features``, a conv's
    ``out_channels``, for containers the last child that has one; the spatial rank likewise (``BatchNorm3d``,
    ``Conv1d``: :func:`spatial_rank`), or both measured on ``example_input``.  A registered module gets
    ``dims=`` that rank (none in 2-D); one that does not support it raises ``ValueError`` naming the module,
    the rank and its supported ranks, before the model is changed.  A factory gets ``kwargs`` as given.  The
    new modules take the device, dtype and train/eval mode of the layer they follow.  A layer object used at
    several places in the forward (torchvision's shared ``relu``) gets the module at every use.

    Returns:
        The same ``model`` object and a list of :class:`Insertion` records (qualified name, the layer it
        follows, channels, parameter count, spatial rank), in model order.
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

    measured: dict[int, tuple[int, int]] = {}
    if example_input is not None:
        measured = measure_outputs(model, [p[3] for p in plans], example_input)

    given = kwargs.get("dims", kwargs.get("spatial_dims"))
    widths: list[tuple[int, int]] = []  # (channels, spatial rank) per plan
    for _, _, _, ref, after in plans:
        seen_c, seen_rank = measured.get(id(ref), (None, None))
        c = channels if channels is not None else seen_c if seen_c is not None else out_channels(ref)
        if c is None:
            raise ValueError(
                f"insert: cannot infer the channels after {type(ref).__name__} (no num_features / out_channels); "
                f"pass channels= or example_input="
            )
        rank: int = seen_rank or spatial_rank(ref) or given or 2
        if given is not None and given != rank:
            raise ValueError(
                f"insert: dims={given!r} was passed, but the output of {after!r} ({type(ref).__name__}) is "
                f"{rank}-D (dims={rank}); leave dims out to have it inferred"
            )
        widths.append((c, rank))
    if isinstance(name, str):
        _check_registered(name, widths, plans, kwargs)

    inserted: list[tuple[nn.Module, str, int, int]] = []  # (attn, name of the layer it follows, channels, rank)
    for (parent, attr, kind, ref, after), (c, rank) in zip(plans, widths):
        attn = _move_like(_build(name, c, _with_dims(name, rank, kwargs)), ref)
        slot = getattr(parent, attr)
        if kind == "slot" and (slot is None or isinstance(slot, nn.Identity)):
            setattr(parent, attr, attn)
        else:
            setattr(parent, attr, InsertedAttention(slot, attn))
        inserted.append((attn, after, c, rank))

    names: dict[int, str] = {}
    for n, m in model.named_modules(remove_duplicate=False):
        names.setdefault(id(m), n)
    report = [
        Insertion(
            name=names[id(attn)],
            after=after,
            channels=c,
            params=sum(p.numel() for p in attn.parameters()),
            dims=rank,
        )
        for attn, after, c, rank in inserted
    ]
    order = {n: i for i, (n, _) in enumerate(model.named_modules(remove_duplicate=False))}
    report.sort(key=lambda r: order.get(r.name, 0))
    return model, report
