"""The docs hold together: links resolve, and the commands, make targets, keys, defaults and
topics they name exist in the code. (Their YAML examples are checked in test_schema_json.py.)"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter

from connectors.logix.config import LogixSource
from connectors.modbus.config import ModbusSource
from connectors.opcua.config import OpcUaSource
from gateway.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def prose(path: Path) -> str:
    """A page's Markdown."""
    return path.read_text()


def anchors(path: Path) -> set[str]:
    """The anchors GitHub makes of a Markdown file's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", prose(path), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves(page: Path) -> None:
    broken = []
    for target in LINK.findall(prose(page)):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        where = (page.parent / file).resolve() if file else page
        if not where.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in anchors(where):
            broken.append(f"{target}: no heading #{anchor} in {where.name}")
    assert broken == []


def test_the_docs_need_nothing_outside_the_repository() -> None:
    for page in PAGES:
        text = prose(page)
        for outside in ("../shared", "shared/DESIGN.md", "/work/"):
            assert outside not in text, f"{page.name} points outside the repository: {outside}"
    readme_links = set(LINK.findall(prose(ROOT / "README.md")))
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in {link.partition("#")[0] for link in readme_links}, (
            f"README.md does not link docs/{page.name}"
        )


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    """Every ``plantgate ...`` command line the parser accepts, as words."""
    found: set[str] = set()
    for action in parser._actions:  # argparse keeps its subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.add(f"{prefix}{name}")
                found |= subcommands(sub, f"{prefix}{name} ")
    return found


def command_lines(text: str) -> list[str]:
    """What follows ``plantgate`` in code spans and in shell or text blocks."""
    lines = re.findall(r"`plantgate ([^`]*)`", text)
    for block in re.findall(r"```(?:sh|text)\n(.*?)```", text, re.DOTALL):
        lines += re.findall(r"^(?:\$ )?plantgate (.*)$", block, re.MULTILINE)
    return lines


def test_every_plantgate_command_in_the_docs_exists() -> None:
    known = subcommands(build_parser())
    named: set[str] = set()
    unknown: list[str] = []
    for page in PAGES:
        for line in command_lines(prose(page)):
            words = [w for w in line.split() if w != "-v"]
            command = words[0] if words else ""
            if any(k.startswith(f"{command} ") for k in known):  # a group: buffer stats
                command = " ".join(words[:2])
            if command in known:
                named.add(command)
            else:
                unknown.append(f"{page.name}: plantgate {line}")
    assert unknown == []
    assert {"run", "validate", "health", "buffer stats", "probe", "browse", "schema"} <= named


def test_every_make_target_in_the_docs_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    named = {t for page in PAGES for t in re.findall(r"`?make ([a-z][a-z-]*)", prose(page))}
    assert named, "no make target found: the pattern is wrong"
    assert named - targets == set()


KEY_TABLES: list[tuple[str, type[BaseModel]]] = [
    ("modbus.md", ModbusSource),
    ("opcua.md", OpcUaSource),
    ("logix.md", LogixSource),
]


def key_rows(page: str) -> list[tuple[list[str], str]]:
    """The keys table of a protocol page: (keys in the first column, the default column)."""
    text = prose(ROOT / "docs" / page)
    table = re.search(r"^\| key \| default \| meaning \|\n\|[-|]+\|\n((?:\|.*\n)+)", text, re.M)
    assert table is not None, f"{page} has no '| key | default | meaning |' table"
    rows = []
    for line in table.group(1).splitlines():
        first, default = line.split("|")[1:3]
        rows.append((re.findall(r"`([a-z_]+)`", first), default.strip()))
    return rows


@pytest.mark.parametrize(("page", "model"), KEY_TABLES)
def test_every_key_in_a_keys_table_exists(page: str, model: type[BaseModel]) -> None:
    keys = [key for row, _ in key_rows(page) for key in row]
    assert keys
    assert [k for k in keys if k not in model.model_fields] == []


@pytest.mark.parametrize(("page", "model"), KEY_TABLES)
def test_every_default_in_a_keys_table_is_the_models(page: str, model: type[BaseModel]) -> None:
    checked = 0
    for keys, default in key_rows(page):
        written = re.findall(r"`([^`]+)`", default)
        if len(keys) != 1 or len(written) != 1 or default != f"`{written[0]}`":
            continue  # prose ("fastest sampling interval...") or several keys at once
        field = model.model_fields[keys[0]]
        value: Any = TypeAdapter(field.rebuild_annotation()).validate_python(written[0])
        assert value == field.default, f"{page}: {keys[0]} defaults to {field.default!r}"
        checked += 1
    assert checked >= 3


def test_the_gateway_topics_in_the_docs_are_published() -> None:
    publisher = "".join(p.read_text() for p in (ROOT / "gateway").rglob("*.py"))
    for page in PAGES:
        for paragraph in prose(page).split("\n\n"):
            for topic in re.findall(r"_gateway/([a-z]+)", paragraph):
                if "planned" in paragraph.lower():
                    continue  # a topic of a feature the docs say is not there yet
                assert f"/_gateway/{topic}" in publisher, f"{page.name}: _gateway/{topic}"
