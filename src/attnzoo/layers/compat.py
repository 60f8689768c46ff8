"""Backward compatibility: deprecated argument names and renamed state-dict keys.

Registered names, constructor arguments and state-dict keys are public: a rename keeps the old name working
(with a ``DeprecationWarning``) and migrates old checkpoints the torchvision way (``_version`` in the module's
metadata and ``_load_from_state_dict``).
"""

from __future__ import annotations

import functools
import re
import warnings
from typing import Any, Callable, Mapping, TypeVar, Union

__all__ = ["renamed_args", "deprecated_args_of", "migrate_keys"]

F = TypeVar("F", bound=Callable[..., Any])
#: ``old name -> new name`` or ``old name -> (new name, value transform)`` (e.g. ``no_spatial -> spatial = not v``).
Rename = Union[str, tuple[str, Callable[[Any], Any]]]


def renamed_args(**renames: Rename) -> Callable[[F], F]:
    """Decorate an ``__init__`` so that deprecated keyword names still work, with a ``DeprecationWarning``."""

    def decorator(init: F) -> F:
        @functools.wraps(init)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
            owner = type(self).__name__
            for old, spec in renames.items():
                if old not in kwargs:
                    continue
                new, convert = (spec, None) if isinstance(spec, str) else spec
                if new in kwargs:
                    raise TypeError(f"{owner}: got both {old!r} (deprecated) and {new!r}; pass only {new!r}")
                value = kwargs.pop(old)
                warnings.warn(f"{owner}: argument {old!r} is deprecated, use {new!r}", DeprecationWarning, stacklevel=2)
                kwargs[new] = convert(value) if convert is not None else value
            init(self, *args, **kwargs)

        # an __init__ decorated twice keeps the aliases of both layers
        wrapper.deprecated_args = {  # type: ignore[attr-defined]
            **getattr(init, "deprecated_args", {}),
            **{old: spec if isinstance(spec, str) else spec[0] for old, spec in renames.items()},
        }
        wrapper.deprecated_convert = {  # type: ignore[attr-defined]
            **getattr(init, "deprecated_convert", {}),
            **{old: spec[1] for old, spec in renames.items() if not isinstance(spec, str)},
        }
        return wrapper  # type: ignore[return-value]

    return decorator


def deprecated_args_of(cls: type) -> Mapping[str, str]:
    """``{old: new}`` deprecated constructor arguments of ``cls`` (empty when there are none)."""
    return getattr(vars(cls).get("__init__"), "deprecated_args", {}) or getattr(
        getattr(cls, "__init__", None), "deprecated_args", {}
    )


def migrate_keys(state_dict: dict[str, Any], prefix: str, patterns: Mapping[str, str]) -> None:
    """Rename, in place, the keys under ``prefix`` that match a regex of ``patterns`` (``{regex: replacement}``)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix) :]
        for pattern, replacement in patterns.items():
            new_rest = re.sub(pattern, replacement, rest)
            if new_rest != rest:
                state_dict[prefix + new_rest] = state_dict.pop(key)
                break
