"""The module registry: ``register``, ``create``, ``info``, ``list_modules``, ``entries`` and ``classes``.

Every module of the library (and any third-party module) is registered once under a short lowercase name
with a :class:`ModuleInfo`.  The contract test suite, the ``attnzoo bench`` profiler, ``attnzoo deploy`` and the
integrations all iterate over this registry (through its public functions, never the private dict),
so a module is tested and profiled the moment it is registered.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import torch.nn as nn

from .tracing import PortableForm

__all__ = [
    "FAMILIES",
    "LAYOUTS",
    "CONTRACT_CHECKS",
    "ModuleInfo",
    "register",
    "create",
    "info",
    "list_modules",
    "entries",
    "classes",
    "unregister",
]

FAMILIES = ("channel", "spatial", "self_attention", "local", "fusion", "resample", "sequence", "temporal")
LAYOUTS = ("nchw", "pair", "pyramid", "tokens", "temporal", "multi")

#: Names of the contract checks a module may declare an exception for (with a reason).
CONTRACT_CHECKS = (
    "any_size",
    "bad_input",
    "gradients",
    "gradcheck",
    "bfloat16",
    "float16",
    "channels_last",
    "train_batch1",
    "deterministic",
    "eval_determinism",
    "serialisation",
    "torchscript",
    "fx",
    "export",
    "compile",
    "onnx",
    "openvino",
    "ncnn",
)


@dataclass(frozen=True)
class ModuleInfo:
    """What the registry knows about one module.

    Attributes:
        name: registry name (``attnzoo.create(name, ...)``).
        family: one of :data:`FAMILIES`.
        cls: the ``nn.Module`` class; ``cls(channels, **kwargs)`` builds it.
        paper: title, venue and year of the paper that defines the module.
        url: link to the paper (or the official code).
        layout: input layout, one of :data:`LAYOUTS`.
        complexity: cost in the number of positions N, e.g. ``"O(N)"`` or ``"O(N^2)"``.
        summary: one line on what the module does.
        identity_at_init: the paper initialises the block as the identity (zero-init gamma / BN / GN).
        min_size: smallest spatial size (H, W) — for the temporal layout (N, T) — the module accepts with its
            default arguments; smaller inputs must raise ``ValueError``.  (1, 1) for almost every module.
        output_shape: ``f(module, *inputs) -> shape`` (a list of shapes for pyramids) when the output shape is
            not the layout's default (same as the input; query-shaped for pairs; per-level sizes for pyramids).
        test_kwargs: constructor arguments the contract suite and the unit tests use on their small inputs
            (merged into the defaults), e.g. fewer heads.  The profiler (``attnzoo bench``), ``attnzoo deploy``
            and the documentation build the module with its default arguments instead.
        maps: the capture keys the module records under ``attnzoo.capture_attention`` (the contract checks
            that it records exactly these); empty for modules without an attention or gate map.
        exceptions: contract checks (names from :data:`CONTRACT_CHECKS`) this module cannot pass, each with
            the reason.  The contract suite asserts that the list stays short and justified.
        forms: the module's portable forms for export targets (:class:`attnzoo.tracing.PortableForm`), each
            tested equal to the eager form; a module that calls ``tracing.portable`` must declare one.
    """

    name: str
    family: str
    cls: type
    paper: str
    url: str
    layout: str
    complexity: str
    summary: str
    identity_at_init: bool = False
    min_size: tuple[int, int] = (1, 1)
    output_shape: Callable[..., Any] | None = None
    test_kwargs: Mapping[str, Any] = field(default_factory=dict)
    exceptions: Mapping[str, str] = field(default_factory=dict)
    maps: tuple[str, ...] = ()
    same_size_context: bool = False
    forms: tuple[PortableForm, ...] = ()

    def __repr__(self) -> str:  # short: the class object makes the default repr noisy
        return (
            f"ModuleInfo(name={self.name!r}, family={self.family!r}, cls={self.cls.__name__}, layout={self.layout!r})"
        )


_REGISTRY: dict[str, ModuleInfo] = {}


def register(
    name: str,
    *,
    family: str,
    paper: str,
    complexity: str,
    layout: str = "nchw",
    url: str = "",
    summary: str = "",
    identity_at_init: bool = False,
    min_size: tuple[int, int] = (1, 1),
    output_shape: Callable[..., Any] | None = None,
    test_kwargs: Mapping[str, Any] | None = None,
    exceptions: Mapping[str, str] | None = None,
    maps: Sequence[str] = (),
    same_size_context: bool = False,
    forms: Sequence[PortableForm] = (),
) -> Callable[[type], type]:
    """Class decorator that registers an ``nn.Module`` under ``name``.

    Usable by third parties::

        @attnzoo.register("my_gate", family="channel", paper="Me, 2026", complexity="O(N)", maps=("gate",))
        class MyGate(nn.Module):
            def __init__(self, channels: int): ...

    The class must take the channel count as its first positional argument.  Registering an existing name
    raises ``ValueError`` (no silent overwrite).
    """
    if not isinstance(name, str) or not name or name != name.lower() or " " in name:
        raise ValueError(f"register: name must be a non-empty lowercase string without spaces, got {name!r}")
    if not isinstance(complexity, str) or not complexity.startswith("O("):
        raise ValueError(f"register({name!r}): complexity must be a string such as 'O(N)', got {complexity!r}")
    if family not in FAMILIES:
        raise ValueError(f"register({name!r}): family must be one of {FAMILIES}, got {family!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"register({name!r}): layout must be one of {LAYOUTS}, got {layout!r}")
    unknown = sorted(set(exceptions or {}) - set(CONTRACT_CHECKS))
    if unknown:
        raise ValueError(
            f"register({name!r}): unknown contract checks in exceptions {unknown}; known: {CONTRACT_CHECKS}"
        )
    if not all(isinstance(f, PortableForm) for f in forms):
        raise ValueError(f"register({name!r}): forms must be attnzoo.tracing.PortableForm objects, got {forms!r}")
    for check, reason in (exceptions or {}).items():
        if not isinstance(reason, str) or len(reason.strip()) < 10:
            raise ValueError(f"register({name!r}): exception {check!r} needs a real reason, got {reason!r}")

    def decorator(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ValueError(f"register({name!r}): expected an nn.Module subclass, got {cls!r}")
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"register: name {name!r} is already registered to {_REGISTRY[name].cls.__name__}")
        doc = (inspect.getdoc(cls) or "").strip().splitlines()
        _REGISTRY[name] = ModuleInfo(
            name=name,
            family=family,
            cls=cls,
            paper=paper,
            url=url,
            layout=layout,
            complexity=complexity,
            summary=summary or (doc[0] if doc else cls.__name__),
            identity_at_init=identity_at_init,
            min_size=(int(min_size[0]), int(min_size[1])),
            output_shape=output_shape,
            test_kwargs=MappingProxyType(dict(test_kwargs or {})),
            exceptions=MappingProxyType(dict(exceptions or {})),
            maps=tuple(maps),
            same_size_context=bool(same_size_context),
            forms=tuple(forms),
        )
        return cls

    return decorator


def _unknown_name_error(name: str) -> ValueError:
    close = difflib.get_close_matches(str(name), list(_REGISTRY), n=5, cutoff=0.4)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"unknown attnzoo module {name!r}{hint} (attnzoo.list_modules() lists all {len(_REGISTRY)})")


def info(name: str) -> ModuleInfo:
    """Return the :class:`ModuleInfo` of a registered module; ``ValueError`` with close matches if unknown."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise _unknown_name_error(name) from None


def list_modules(family: str | None = None) -> list[str]:
    """Sorted registry names, optionally of one family."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"list_modules: family must be one of {FAMILIES} or None, got {family!r}")
    return sorted(n for n, i in _REGISTRY.items() if family is None or i.family == family)


def create(name: str, channels: int | Sequence[int], **kwargs: Any) -> nn.Module:
    """Build a registered module: ``info(name).cls(channels, **kwargs)``.

    ``channels`` is an int (a sequence of ints, finest level first, for pyramid modules).  An unknown name
    raises ``ValueError`` listing close matches; an unknown keyword raises ``TypeError`` naming the accepted
    ones.
    """
    entry = info(name)
    params = inspect.signature(getattr(entry.cls, "__init__")).parameters
    takes_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes_var_kw:
        accepted = [p for p in list(params)[2:] if params[p].kind is not inspect.Parameter.VAR_POSITIONAL]
        aliases = getattr(getattr(entry.cls, "__init__"), "deprecated_args", {})
        unknown = sorted(set(kwargs) - set(accepted) - set(aliases))
        if unknown:
            raise TypeError(f"{name} ({entry.cls.__name__}) got unknown keyword(s) {unknown}; accepted: {accepted}")
    return entry.cls(channels, **kwargs)


def entries(family: str | None = None) -> list[ModuleInfo]:
    """The :class:`ModuleInfo` of every registered module (optionally of one family), sorted by name."""
    return [_REGISTRY[n] for n in list_modules(family)]


def classes(family: str | None = None) -> dict[str, type]:
    """``{registry name: class}`` of every registered module (optionally of one family), sorted by name.

    Several names may share a class only if a third party registers it twice; tools that need the distinct
    classes (e.g. to find the registered modules inside a network) take ``set(classes().values())``.
    """
    return {e.name: e.cls for e in entries(family)}


def unregister(name: str) -> ModuleInfo:
    """Remove a registered module and return its :class:`ModuleInfo` (``ValueError`` if unknown).

    For third-party code and tests that register temporary modules (a notebook cell run twice, a test that
    registers a stand-in); the library's own modules are registered once at import and never removed.
    """
    entry = info(name)
    del _REGISTRY[name]
    return entry


def markdown_table() -> str:
    """The README's module table, generated from the registry (``python -m attnzoo.dev sync`` writes it)."""
    rows = ["| name | class | family | layout | cost | paper |", "|---|---|---|---|---|---|"]
    for family in FAMILIES:
        for name in list_modules(family):
            e = _REGISTRY[name]
            paper = f"[{e.paper}]({e.url})" if e.url else e.paper
            rows.append(f"| `{name}` | `{e.cls.__name__}` | {family} | {e.layout} | {e.complexity} | {paper} |")
    return "\n".join(rows)


if __name__ == "__main__":
    from attnzoo import registry  # the imported module holds the registry (this __main__ copy does not)

    print(registry.markdown_table())  # `python -m attnzoo.dev sync` writes it into the README
