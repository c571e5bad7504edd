"""The commands the README and docs/ show a user to copy: every flag they name must be one the
command takes, so a renamed or removed flag cannot leave a page that fails when pasted."""
import re
from pathlib import Path

import pytest
import typer

from quickadapt.cli import app

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def shown_commands(text):
    """`quickadapt COMMAND ...` in shell blocks (continuation lines joined, comments dropped) and
    in inline code spans (`torchrun ... -m quickadapt meta-train ...`, over a line break too)."""
    lines, fence, prose = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
        elif fence in ("", "bash", "sh"):
            lines.append(line)
        elif fence is None:
            prose.append(line)
    shell = re.sub(r"\\\n", " ", "\n".join(lines)).splitlines()
    spans = re.findall(r"`((?:quickadapt|torchrun) [^`]+)`", " ".join(prose))
    return [m.groups() for line in shell + spans
            for m in re.finditer(r"quickadapt ([a-z][a-z-]*)(.*)", re.sub(r"\s#.*", "", line))]


def flags_of(command):
    params = typer.main.get_command(app).commands[command].params
    return {opt for p in params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("--")}


CASES = [(page.name, name, rest) for page in PAGES for name, rest in shown_commands(page.read_text())]


def test_the_pages_show_commands():
    assert len(CASES) > 30 and {name for _, name, _ in CASES} >= {
        "fit", "predict", "evaluate", "meta-train", "episodes", "domain-adapt", "datasets", "demo"}


@pytest.mark.parametrize("page,command,rest", CASES)
def test_every_flag_a_page_shows_is_one_the_command_takes(page, command, rest):
    commands = typer.main.get_command(app).commands
    assert command in commands, f"{page}: quickadapt {command} is no command"
    unknown = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", rest)) - flags_of(command)
    assert not unknown, f"{page}: quickadapt {command} {rest.strip()} names {sorted(unknown)}"
