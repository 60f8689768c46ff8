"""One naming scheme for people: registry names in any case, class names and community aliases
resolve to the registry name in ``create``, ``info``, ``insert`` and ``timm_attn``; unknown names suggest all
three kinds; docs/names.md lists the aliases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch.nn as nn

import attnzoo
from attnzoo.integrations import insert, timm_attn
from attnzoo.names import ALIASES, _key
from attnzoo.registry import entries

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "name, registry_name",
    [("EMA", "ema"), ("CBAM", "cbam"), ("EfficientChannelAttention", "eca"), ("CA", "coord"), ("SA", "shuffle_attention"),
     ("Shuffle-Attention", "shuffle_attention"), ("se", "se"), ("SqueezeExcite", "se"), ("sknet", "sk"), ("GAM", "gam"),
     ("BAM", "bam"), ("squeeze_excite", "se")],
)
def test_people_names_resolve(name, registry_name):
    assert attnzoo.info(name).name == registry_name
    assert type(attnzoo.create(name, 32)) is attnzoo.info(registry_name).cls


def test_every_registry_and_class_name_resolves_to_itself_and_aliases_are_unambiguous():
    keys: dict[str, str] = {}
    for e in entries():
        for spelled in (e.name, e.name.upper(), e.cls.__name__, e.cls.__name__.lower()):
            assert attnzoo.info(spelled) is e, spelled
        for k in {_key(e.name), _key(e.cls.__name__)}:
            assert keys.setdefault(k, e.name) == e.name, f"{k!r} would mean {keys[k]!r} and {e.name!r}"
    for alias, target in ALIASES.items():
        assert attnzoo.info(alias).name == target
        assert _key(alias) not in keys, f"alias {alias!r} repeats a registry or class name: drop it or fix it"
    assert attnzoo.list_modules() == sorted(e.name for e in entries())  # canonical names unchanged
    assert all(n == n.lower() for n in attnzoo.list_modules())


def test_did_you_mean_includes_class_names_and_aliases():
    with pytest.raises(ValueError, match=r"did you mean .*'EfficientChannelAttention' \('eca'\)"):
        attnzoo.info("EfficientChanelAttention")
    with pytest.raises(ValueError, match=r"did you mean .*'CoordAtt' \('coord'\)"):
        attnzoo.create("CoordAt", 16)
    with pytest.raises(ValueError, match=r"^unknown attnzoo module 'ecaa'; did you mean 'eca'"):
        attnzoo.info("ecaa")
    with pytest.raises(ValueError, match="unknown attnzoo module"):
        attnzoo.info(3)  # type: ignore[arg-type]


def test_third_party_names_and_ambiguity():
    @attnzoo.register("zz_gate", family="channel", paper="Me, 2026", complexity="O(N)")
    class ZzGate(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()

    try:
        assert attnzoo.info("ZzGate").name == "zz_gate" and attnzoo.info("ZZ-GATE").name == "zz_gate"

        @attnzoo.register("zzgate", family="channel", paper="Me, 2026", complexity="O(N)")
        class Other(nn.Module):
            def __init__(self, channels: int) -> None:
                super().__init__()

        try:
            assert attnzoo.info("zzgate").cls is Other and attnzoo.info("zz_gate").cls is ZzGate  # exact names win
            with pytest.raises(ValueError, match=r"'ZZ-Gate' is ambiguous: it may mean \['zz_gate', 'zzgate'\]"):
                attnzoo.info("ZZ-Gate")
        finally:
            attnzoo.registry.unregister("zzgate")
    finally:
        assert attnzoo.registry.unregister("ZzGate").name == "zz_gate"  # unregister resolves too
    assert "zz_gate" not in attnzoo.list_modules()


def test_insert_and_timm_attn_take_the_same_names():
    host = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32))
    _, report = insert(host, "CA", where=["1"])
    assert isinstance(host[1].attn, attnzoo.CoordinateAttention) and len(report) == 1
    with pytest.raises(ValueError, match=r"did you mean .*'CoordAtt' \('coord'\)"):
        insert(nn.Sequential(nn.Conv2d(3, 32, 1)), "CoordAt", where=["0"])
    factory = timm_attn("EMA")
    assert repr(factory) == "timm_attn('ema')" and isinstance(factory(64), attnzoo.EfficientMultiScaleAttention)


def test_docs_table_lists_every_alias():
    text = (ROOT / "docs" / "names.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \| `([^`]+)` \|", text, re.M)
    assert {a: r for a, r, _ in rows} == dict(ALIASES)
    assert all(attnzoo.info(r).cls.__name__ == c for _, r, c in rows)
    assert "names.md" in (ROOT / "mkdocs.yml").read_text()
