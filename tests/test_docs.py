"""The documentation cannot rot: every flag of every command is in docs/commands.md, every Python
block of the README and docs runs as written, the README stays a front page and its links resolve."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from parity.harness.cli.parser import build_parser
from test_cli import clean_env

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_flag_of_every_command_is_documented():
    text = (ROOT / "docs" / "commands.md").read_text()
    missing = []
    for name, parser in commands().items():
        if not re.search(rf"`?parity {name}\b", text):
            missing.append(f"parity {name}")
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help") and not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
                    missing.append(f"parity {name} {flag}")
    assert missing == [], f"not in docs/commands.md: {', '.join(missing)}"


def test_the_flag_check_can_fail(monkeypatch):
    real = build_parser

    def with_extra():
        parser = real()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["run"].add_argument("--no-such-documented-flag")
        return parser

    monkeypatch.setattr(sys.modules[__name__], "build_parser", with_extra)
    with pytest.raises(AssertionError, match="--no-such-documented-flag"):
        test_every_flag_of_every_command_is_documented()


def blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=lambda p: p.name)
def test_every_python_block_runs_as_written(page, tmp_path):
    # All blocks of a page run in order in one fresh interpreter (as a reader would paste them into
    # one session), in an empty folder, without a GPU: what a page shows must work on a CPU.
    script = "\n\n".join(f"# --- block {i + 1} of {page.name}\n{code}" for i, code in enumerate(blocks(page)))
    (tmp_path / "page.py").write_text(script)
    proc = subprocess.run([sys.executable, "page.py"], cwd=tmp_path, env=clean_env(), capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, f"{page.name}: a Python block fails:\n{proc.stderr[-3000:]}"


def test_the_readme_is_a_front_page_whose_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    first = re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M)[:2]
    assert "parity run" in first[0] and "pytest" in first[1], "the README opens with the main job and the tests"
    for page in PAGES:
        for target in re.findall(r"\]\(([\w./-]+?)(?:#[^)]*)?\)", page.read_text()):
            if not re.match(r"[a-z]+://", target) and target.strip("."):
                assert (page.parent / target).exists(), f"{page.name} links to {target}, which is not there"
