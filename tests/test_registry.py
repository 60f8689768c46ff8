"""Public API of the registry."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import attnzoo
from attnzoo import dev, registry

ROOT = Path(__file__).resolve().parents[1]


def test_list_and_info():
    names = attnzoo.list_modules()
    assert names == sorted(names)
    assert {"se", "eca", "sk", "coord"} <= set(attnzoo.list_modules("channel"))
    assert {"cbam", "cbam_channel", "cbam_spatial", "triplet"} <= set(attnzoo.list_modules("spatial"))
    i = attnzoo.info("se")
    assert isinstance(i, attnzoo.ModuleInfo) and i.cls is attnzoo.SqueezeExcite
    for field in ("name", "family", "cls", "paper", "url", "layout", "complexity", "summary"):
        assert getattr(i, field), field
    with pytest.raises(Exception):
        i.name = "x"  # frozen
    for name in names:
        e = attnzoo.info(name)
        assert e.layout in attnzoo.LAYOUTS and e.family in attnzoo.FAMILIES
        assert getattr(attnzoo, e.cls.__name__) is e.cls, f"{e.cls.__name__} not exported from attnzoo"
        assert e.cls.__name__ in attnzoo.__all__
        assert e.cls.__doc__ and len(e.cls.__doc__) > 80, f"{name}: needs a docstring with paper and shapes"
    with pytest.raises(ValueError):
        attnzoo.list_modules("nope")


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="'cbam'"):
        attnzoo.create("cbma", 64)
    with pytest.raises(ValueError, match="did you mean"):
        attnzoo.info("sse")


def test_unknown_keyword_is_type_error():
    with pytest.raises(TypeError, match="reductoin"):
        attnzoo.create("se", 64, reductoin=4)
    m = attnzoo.create("se", 64, reduction=4)
    assert m.fc1.out_channels == 16


def test_third_party_register():
    @attnzoo.register("my_test_gate", family="channel", paper="Someone, 2026", complexity="O(N)", summary="a test gate")
    class MyGate(nn.Module):
        def __init__(self, channels: int, scale: float = 1.0):
            super().__init__()
            self.scale = scale

        def forward(self, x):
            return x * self.scale

    try:
        assert "my_test_gate" in attnzoo.list_modules("channel")
        m = attnzoo.create("my_test_gate", 8, scale=2.0)
        assert torch.equal(m(torch.ones(1, 8, 2, 2)), 2 * torch.ones(1, 8, 2, 2))
        with pytest.raises(ValueError, match="already registered"):
            attnzoo.register("my_test_gate", family="channel", paper="x", complexity="O(N)")(type("Other", (nn.Module,), {}))
    finally:
        registry.unregister("my_test_gate")
    assert "my_test_gate" not in attnzoo.list_modules()
    with pytest.raises(ValueError, match="my_test_gate"):
        registry.unregister("my_test_gate")
    with pytest.raises(ValueError):
        attnzoo.register("bad", family="nope", paper="x", complexity="O(N)")
    with pytest.raises(ValueError):
        attnzoo.register("bad", family="channel", paper="x", complexity="O(N)", exceptions={"onnx": "short"})


def test_import_is_light():
    code = "import sys, attnzoo; bad = [m for m in ('timm', 'torchvision', 'ultralytics', 'matplotlib', 'rich', 'onnx') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out


def test_readme_module_table_in_sync():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- modules:start -->\n(.*?)\n<!-- modules:end -->", readme, re.S)
    assert block, "README lacks the module table markers"
    assert block.group(1).strip() == dev.markdown_table().strip(), "regenerate: python -m attnzoo.dev sync"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    cmd = re.search(r"```bash\n# run the whole test suite\n(.+?)\n```", readme, re.S)
    assert cmd, "README lacks the test command block"
    assert cmd.group(1).strip() in ci


def faithful_names() -> set[str]:
    """Registry names named by a ``@pytest.mark.faithful(...)`` marker anywhere in tests/ (read statically)."""
    import ast

    names: set[str] = set()
    for path in Path(__file__).parent.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "faithful"
                    and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "mark"):
                names.update(a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return names


def test_every_module_has_a_faithfulness_test():
    """Each registered module has a test marked ``@pytest.mark.faithful(name)`` that checks it against an
    independent computation (a reference in tests/reference/, a peer with copied weights, or an invariant)."""
    missing = sorted(set(attnzoo.list_modules()) - faithful_names())
    assert not missing, f"no faithfulness test (@pytest.mark.faithful) for {missing}"


def test_every_module_has_a_provenance_page():
    docs = Path(__file__).parents[1] / "docs" / "provenance"
    missing = sorted(n for n in attnzoo.list_modules() if not (docs / f"{n}.md").is_file())
    assert not missing, f"no docs/provenance/<name>.md for {missing}"


def test_info_prints_readably_and_keeps_its_repr():
    e = attnzoo.info("cbam")
    assert repr(e) == "ModuleInfo(name='cbam', family='spatial', cls=CBAM, layout='nchw')"
    lines = str(e).splitlines()
    assert lines[0] == "cbam (attnzoo.spatial.cbam.CBAM)"
    fields = dict(line.split(None, 1) for line in lines[1:])
    assert fields == {
        "paper": e.paper,
        "url": e.url,
        "family": "spatial",
        "layout": "nchw (one B×C×H×W map)",
        "shape": "same as the input",
        "cost": "O(N)",
        "summary": e.summary,
    }
    assert "shape    upsamples" in str(attnzoo.info("dysample"))
    assert "shape" not in dict(line.split(None, 1) for line in str(attnzoo.info("bifpn")).splitlines()[1:])


def test_list_modules_wildcards():
    assert attnzoo.list_modules("*cb*") == ["cbam", "cbam_channel", "cbam_spatial", "lcbam"]  # as timm's list_models
    assert attnzoo.list_modules("*CB*") == attnzoo.list_modules(pattern="*cbam*") == attnzoo.list_modules("*cb*")
    assert attnzoo.list_modules(pattern="cbam*") == ["cbam", "cbam_channel", "cbam_spatial"]
    assert attnzoo.list_modules("channel", pattern="s?") == ["se", "sk"]
    assert attnzoo.list_modules(pattern="danet_[cp]*") == ["danet_channel", "danet_position"]
    assert attnzoo.list_modules("*") == attnzoo.list_modules() and attnzoo.list_modules("zz*") == []
    assert attnzoo.list_modules(family="channel") == attnzoo.list_modules("channel")
    with pytest.raises(ValueError, match="or a wildcard pattern such as"):
        attnzoo.list_modules("chanel")
    with pytest.raises(ValueError, match="two patterns"):
        attnzoo.list_modules("*a*", pattern="*b*")
