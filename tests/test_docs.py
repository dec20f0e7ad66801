"""The documentation keeps up with the code: every command, setting and table is in it.

The lists come from the code itself (the click group, the configuration's key
table, the schema), so a command or key added without its documentation fails
here.  The README stays a front door: small, its links all leading somewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from scope.storage.schema import TABLES, VIEWS

from scope.cli import cli
from scope.config import VALIDATORS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: the README's size limit, in bytes: a front door, with the rest in docs/
README_LIMIT = 10_752


def command_names(group: click.Group, prefix: str = "scope") -> Iterator[str]:
    """Every command and subcommand of ``group``, as typed: ``scope cache info``."""
    for name, command in sorted(group.commands.items()):
        yield f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from command_names(command, f"{prefix} {name}")


def headings(path: Path) -> set[str]:
    """The Markdown headings of a file, without their ``#`` marks and backquotes."""
    found = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            found.add(line.lstrip("#").replace("`", "").strip())
    return found


def test_the_walk_finds_nested_commands():
    names = set(command_names(cli))
    assert {"scope run", "scope top", "scope cache", "scope cache info"} <= names


@pytest.mark.parametrize("command", sorted(command_names(cli)))
def test_every_command_has_a_heading_in_the_cli_reference(command):
    assert command in headings(DOCS / "cli.md"), f"docs/cli.md has no heading '### {command}'"


@pytest.mark.parametrize("key", sorted(VALIDATORS))
def test_every_setting_is_documented(key):
    text = (DOCS / "configuration.md").read_text()
    assert f"`{key}`" in text, f"docs/configuration.md does not mention `{key}`"
    assert f"`SCOPE_{key.upper()}`" in text, f"docs/configuration.md lacks SCOPE_{key.upper()}"


@pytest.mark.parametrize("table", sorted(t.name for t in (*TABLES, *VIEWS)))
def test_every_table_has_a_heading_in_the_schema(table):
    assert table in headings(DOCS / "schema.md"), f"docs/schema.md has no heading '## {table}'"


def test_the_readme_is_a_front_door():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move reference to docs/"


def test_the_readme_starts_with_the_two_commands_ci_runs():
    first_block = (ROOT / "README.md").read_text().split("```")[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m scope run examples/calc.py && scope top" in first_block
    assert "python -m scope run examples/calc.py && scope top" in ci
    assert 'pip install -e ".[test]" && pytest -n 2' in first_block
    assert 'pip install -e ".[test]" && pytest -n 2' in ci


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(str(p.relative_to(ROOT)) for p in DOCS.glob("*.md"))]
)
def test_relative_links_lead_to_files(page):
    path = ROOT / page
    targets = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:|#", t)]
    missing = [t for t in local if t and not (path.parent / t).exists()]
    assert not missing, f"{page} links to files that do not exist: {missing}"
