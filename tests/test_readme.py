"""The README's commands are true: every install is from a clone with extras that exist, every ``attnzoo``
command parses, the runs that take long say so, the CPU-only note matches the pinned torch, and the YOLO example
trains offline on data it makes itself.  (The README's test command equals .ci/run's: tests/test_registry.py.)"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

import attnzoo
from attnzoo.bench import checks
from attnzoo.cli import SUBCOMMANDS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = {p.name: p.read_text() for p in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]}


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def command_lines(text: str) -> list[str]:
    """Each shell command of the bash blocks (``&&`` chains split), without its comment."""
    out = []
    for block in blocks(text, "bash"):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].split(" # ", 1)[0].strip()
            out += [part.strip() for part in line.split("&&") if part.strip() and not part.strip().startswith("#")]
    return out


def test_every_install_is_from_a_clone_with_real_extras():
    section = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]\n", 1)[1].split("\n[", 1)[0]
    extras = set(re.findall(r"^(\w+) = ", section, re.M))  # (tomllib is Python 3.11+; the package supports 3.10)
    assert {"cli", "deploy", "dev", "docs"} <= extras
    seen = 0
    for name, text in DOCS.items():
        for cmd in command_lines(text):
            if "pip install" not in cmd:
                continue
            args = shlex.split(cmd.split("pip install", 1)[1])
            assert not [a for a in args if re.match(r"attnzoo\b", a)], f"{name}: {cmd!r} (attnzoo is not on PyPI)"
            for i, arg in enumerate(args):
                m = re.fullmatch(r"\.\[([\w,]+)\]", arg)
                if m:
                    assert args[i - 1] == "-e", f"{name}: {cmd!r}: install the clone editable, -e \".[...]\""
                    assert set(m.group(1).split(",")) <= extras, f"{name}: {cmd!r}: unknown extra"
                    seen += 1
    assert seen >= 5


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="attnzoo")
    sub = p.add_subparsers(dest="command", required=True)
    for mod in SUBCOMMANDS:
        importlib.import_module(mod).add_parser(sub)
    return p


def readme_attnzoo_commands() -> list[list[str]]:
    cmds = []
    for cmd in command_lines(README):
        args = shlex.split(cmd)
        if args and args[0].endswith("attnzoo") and "..." not in args:
            cmds.append(args[1:])
    return cmds


def test_every_readme_attnzoo_command_parses():
    p = parser()
    cmds = readme_attnzoo_commands()
    assert {c[0] for c in cmds} >= {"bench", "viz", "deploy", "compare"}
    for args in cmds:
        try:
            p.parse_args(args)
        except SystemExit:
            pytest.fail(f"README: `attnzoo {' '.join(args)}` does not parse")


def readme_commands_with_comments() -> list[tuple[list[str], str]]:
    """``(attnzoo arguments, the line's comment)`` of every ``attnzoo`` command in the README's bash blocks."""
    out = []
    for block in blocks(README, "bash"):
        for line in block.splitlines():
            code, _, comment = line.partition(" #")
            for part in code.split("&&"):
                args = shlex.split(part)
                if args and args[0].endswith("attnzoo") and "..." not in args:
                    out.append((args[1:], comment))
    return out


def test_long_commands_are_marked_long():
    """The bench lines that bench's own estimate calls long, the whole-registry deploy and the compare sweep say
    "long" in their comment; bench lines it calls short do not."""
    from attnzoo.bench.cli import parse_sizes
    from attnzoo.layouts import DEFAULT_SIZE, example_channels

    p = parser()
    infos = {n: attnzoo.info(n) for n in attnzoo.list_modules()}
    cmds = readme_commands_with_comments()
    benches = [(p.parse_args(args), comment) for args, comment in cmds if args[0] == "bench"]
    assert len(benches) >= 3
    for args, comment in benches:
        names = args.modules.split(",") if args.modules else [n for n, i in infos.items()
                                                              if args.family in (None, i.family)]
        rows = [{"name": n, "layout": infos[n].layout, "complexity": infos[n].complexity,
                 "default_size": DEFAULT_SIZE[infos[n].layout],
                 "default_channels": (lambda c: c[0] if isinstance(c, list) else c)(example_channels(n))}
                for n in names]
        settings = {"batch": args.batch, "channels": args.channels, "threads": 1, "min_time": args.min_time,
                    "max_time": args.max_time, "backward": not args.forward_only, "memory": not args.no_memory}
        long = checks.long_run_warning(*checks.estimate_run(rows, parse_sizes(args.sizes), settings)) is not None
        assert long == ("long" in comment), f"README: bench {args.modules or args.family or ''}: estimated long={long}"
    deploy_all = [c for a, c in cmds if a[0] == "deploy" and "--modules" not in a and "--model" not in a]
    compare = [c for a, c in cmds if a[0] == "compare"]
    assert deploy_all and compare
    for comment in deploy_all + compare:
        assert "long" in comment, f"README: {comment!r}: a long command must say so"


def test_cpu_only_note_matches_the_pinned_torch():
    test_cmd = re.search(r"```bash\n# run the whole test suite\n(.+?)\n```", README, re.S).group(1)
    torch_pin = re.search(r"torch==[\d.]+", test_cmd).group(0)
    vision_pin = re.search(r"torchvision==[\d.]+", test_cmd).group(0)
    cpu = [c for c in command_lines(README) if "download.pytorch.org/whl/cpu" in c]
    assert cpu, "README lacks the CPU-only wheel command"
    assert torch_pin in cpu[0] and vision_pin in cpu[0] and "--index-url https://download.pytorch.org/whl/cpu" in cpu[0]


def yolo_example() -> str:
    section = README.split("### Ultralytics YOLO", 1)[1].split("\n### ", 1)[0]
    return blocks(section, "python")[0]


def test_yolo_example_makes_its_own_data():
    code = yolo_example()
    assert "coco8" not in code and "download" not in code.lower().replace("nothing downloaded", "")
    m = re.search(r'\.train\(data="([^"]+)"', code)
    assert m and f'Path("{m.group(1)}").write_text' in code, "the example must write the dataset YAML it trains on"


@pytest.mark.slow
def test_yolo_example_trains_offline(tmp_path, monkeypatch):
    """Run the README's YOLO block as written (one epoch of two batches at 64×64 on the CPU)."""
    from helpers import require

    require("ultralytics")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_VERBOSE", "False")
    exec(compile(yolo_example(), "README.md:yolo", "exec"), {"__name__": "readme_yolo"})
    assert (tmp_path / "runs/attn/weights/last.pt").exists()
    assert len(list((tmp_path / "boxes/labels").glob("*.txt"))) == 8
