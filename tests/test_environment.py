"""The environment the suite runs in has every package of the dev extra.

Peer packages (timm, torchvision, natten, fightingcv-attention, segmentation-models-pytorch, ultralytics) and the
export runtimes are what the faithfulness, parity and deployment tests compare against.  Those tests import them
with :func:`helpers.require`, which fails rather than skips; this test names every missing package at once.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from helpers import missing

ROOT = Path(__file__).parents[1]


def extra_requirements(extra: str) -> set[str]:
    """Distribution names the extra installs, following ``attnzoo[...]`` self-references (from pyproject.toml)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    extras: dict[str, list[str]] = {}
    for name, body in re.findall(r"^(\w+) = \[(.*?)\]$", section, re.S | re.M):
        extras[name] = re.findall(r'"([^"]+)"', re.sub(r"#[^\n]*", "", body))
    names: set[str] = set()
    todo, seen = [extra], set()
    while todo:
        e = todo.pop()
        if e in seen:
            continue
        seen.add(e)
        for req in extras[e]:
            m = re.match(r"([A-Za-z0-9_.-]+)(\[([^\]]*)\])?", req)
            assert m, req
            if m.group(1) == "attnzoo":
                todo.extend(x.strip() for x in m.group(3).split(","))
            else:
                names.add(m.group(1))
    return names


def test_extra_parser_follows_self_references():
    dev = extra_requirements("dev")
    assert {"natten", "fightingcv-attention", "timm", "torchvision", "ultralytics", "onnxruntime", "openvino"} <= dev
    assert "attnzoo" not in dev


def test_dev_extra_is_installed():
    absent = []
    for dist in sorted(extra_requirements("dev")):
        try:
            importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            absent.append(dist)
    if absent:
        missing(", ".join(absent))
