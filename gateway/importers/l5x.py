"""Studio 5000 ``.L5X`` exports: the tags a Logix source reads, each with its declared type.

An L5X file is XML: ``RSLogix5000Content/Controller`` holds ``DataTypes`` (the UDTs, member by
member), ``AddOnInstructionDefinitions``, controller ``Tags`` and ``Programs/Program/Tags``.
Each ``Tag`` has a ``Name``, a ``DataType``, optional ``Dimensions`` (``"4 5"``), a
``TagType`` (Base, Alias, Produced, Consumed) and an ``ExternalAccess``.

What is imported, so that the source can read without the controller's tag list (see
``connectors/logix/declared.py``):

- a tag of an atomic type or STRING, arrays included: one tag, ``type: REAL[1000]``;
- a UDT, an Add-On Instruction or a TIMER, COUNTER or CONTROL: one tag per member that holds a
  value (``Recipe.Limits.High: REAL``), arrays of them element by element, hidden members left
  out (a UDT's BOOLs live in a hidden byte: they are imported by their own names);
- program tags as ``Program:Name.Tag``, named ``Name.Tag`` in topics.

Imported without a type (the source then uploads the tag list to read them), with a warning:
aliases, BOOL arrays (they travel as DWORDs), custom string types, types the file does not
describe, and structures of more than MAX_LEAVES values. Not imported, with a warning: tags and
members whose External Access is None (they cannot be read over CIP).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from connectors.logix.declared import ATOMIC, LogixType
from gateway.importers.model import ImportedTag, ImportResult, tag_name
from gateway.importers.xmltree import Node, XmlError, parse_xml

MAX_LEAVES = 2000  # values one tag may expand into before it is imported whole
MAX_DEPTH = 8  # UDTs nest; a definition that refers to itself must not recurse forever
_INDEX = re.compile(r"\[([\d,]+)\]")


@dataclass(frozen=True, slots=True)
class Member:
    """A member of a UDT, an Add-On Instruction or a predefined structure."""

    name: str
    data_type: str
    dims: tuple[int, ...] = ()
    access: str = "Read/Write"
    hidden: bool = False
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Structure:
    """A structured type known from the file (or predefined)."""

    name: str
    members: tuple[Member, ...]
    is_string: bool = False


def _builtin(name: str, dints: tuple[str, ...], bools: tuple[str, ...]) -> Structure:
    members = [Member(n, "DINT") for n in dints] + [Member(n, "BOOL") for n in bools]
    return Structure(name, tuple(members))


# Predefined structures an L5X file uses without defining them.
BUILTIN = {
    "timer": _builtin("TIMER", ("PRE", "ACC"), ("EN", "TT", "DN")),
    "counter": _builtin("COUNTER", ("PRE", "ACC"), ("CU", "CD", "DN", "OV", "UN")),
    "control": _builtin(
        "CONTROL", ("LEN", "POS"), ("EN", "EU", "DN", "EM", "ER", "UL", "IN", "FD")
    ),
}


@dataclass(frozen=True, slots=True)
class Leaf:
    """One value a tag expands into: its address and declared type (None: not declarable,
    ``why`` says so), or ``skip`` when it cannot be read at all."""

    address: str
    type: str | None
    why: str | None = None
    description: str | None = None
    skip: bool = False


def import_l5x(path: Path) -> ImportResult:
    """Read a Studio 5000 L5X export (see the module docstring)."""
    result = ImportResult("logix")
    try:
        root = parse_xml(path.read_bytes())
    except XmlError as exc:
        result.error(exc.line, str(exc))
        return result
    controller = root.find("Controller") if root.tag == "RSLogix5000Content" else None
    if controller is None:
        result.error(root.line, "not a Studio 5000 export: no RSLogix5000Content/Controller")
        return result
    structures = _structures(controller, result)
    for node in controller.findall("Tags", "Tag"):
        _tag(node, None, structures, result)
    for program in controller.findall("Programs", "Program"):
        for node in program.findall("Tags", "Tag"):
            _tag(node, program.get("Name"), structures, result)
    if not result.tags and not result.errors:
        result.warn(0, "the file holds no tags to import")
    return result


def _structures(controller: Node, result: ImportResult) -> dict[str, Structure]:
    found = dict(BUILTIN)
    for node in controller.findall("DataTypes", "DataType"):
        members = _members(node.findall("Members", "Member"), result)
        names = [m.name.upper() for m in members if not m.hidden]
        is_string = node.get("Family") == "StringFamily" or names == ["LEN", "DATA"]
        found[node.get("Name").lower()] = Structure(node.get("Name"), members, is_string)
    for node in controller.findall("AddOnInstructionDefinitions", "AddOnInstructionDefinition"):
        # InOut parameters are references to other tags: the instance holds no value for them.
        params = [p for p in node.findall("Parameters", "Parameter") if p.get("Usage") != "InOut"]
        local = list(node.findall("LocalTags", "LocalTag"))
        members = _members(params + local, result)
        found[node.get("Name").lower()] = Structure(node.get("Name"), members)
    return found


def _members(nodes: Iterable[Node], result: ImportResult) -> tuple[Member, ...]:
    members = []
    for node in nodes:
        data_type = node.get("DataType")
        try:
            dims = _dims(node.get("Dimension"))
        except ValueError:
            result.error(node.line, f"member {node.get('Name')}: Dimension is not a number")
            continue
        members.append(
            Member(
                name=node.get("Name"),
                data_type="BOOL" if data_type.upper() == "BIT" else data_type,
                dims=dims,
                access=node.get("ExternalAccess") or "Read/Write",
                hidden=node.get("Hidden").lower() == "true",
                description=_description(node),
            )
        )
    return tuple(members)


def _tag(
    node: Node, program: str | None, structures: dict[str, Structure], result: ImportResult
) -> None:
    name = node.get("Name")
    if not name:
        result.error(node.line, "a Tag without a Name")
        return
    base = f"Program:{program}.{name}" if program else name
    if node.get("ExternalAccess") == "None":
        result.warn(
            node.line, f"{base}: not imported: External Access None (not readable over CIP)"
        )
        return
    description = _description(node)
    if node.get("TagType") == "Alias":
        why = f"an alias for {node.get('AliasFor') or '?'}"
        _emit(node.line, Leaf(base, None, why, description), result)
        return
    data_type = node.get("DataType")
    if not data_type:
        result.error(node.line, f"{base}: no DataType")
        return
    try:
        dims = _dims(node.get("Dimensions"))
    except ValueError:
        result.error(node.line, f"{base}: Dimensions {node.get('Dimensions')!r} are not numbers")
        return
    values = _leaves(base, data_type, dims, structures, 0, description)
    leaves = list(itertools.islice(values, MAX_LEAVES + 1))
    if len(leaves) > MAX_LEAVES:
        leaves = [Leaf(base, None, f"more than {MAX_LEAVES} values: imported whole", description)]
    for leaf in leaves:
        _emit(node.line, leaf, result)


def _emit(line: int, leaf: Leaf, result: ImportResult) -> None:
    if leaf.skip:
        result.warn(line, f"{leaf.address}: not imported: {leaf.why}")
        return
    if leaf.type is None:
        result.warn(
            line,
            f"{leaf.address}: imported without a type ({leaf.why}): its source uploads the "
            "controller's tag list to read it",
        )
    result.add(
        ImportedTag(
            line=line,
            name=gateway_name(leaf.address),
            address=leaf.address,
            type=leaf.type,
            description=leaf.description,
        )
    )


def _leaves(
    address: str,
    data_type: str,
    dims: tuple[int, ...],
    structures: dict[str, Structure],
    depth: int,
    description: str | None = None,
) -> Iterator[Leaf]:
    """The values stored at ``address``, one Leaf each, in the order the type lists them."""
    upper = data_type.upper()
    if upper in ATOMIC or upper == "STRING":
        if upper == "BOOL" and dims:
            yield Leaf(address, None, "BOOL arrays travel as DWORDs", description)
        else:
            yield Leaf(address, str(LogixType(upper, dims)), None, description)
        return
    structure = structures.get(data_type.lower())
    if structure is None or structure.is_string or depth >= MAX_DEPTH:
        why = (
            f"type {data_type} is not described in the file"
            if structure is None
            else f"{data_type} is a custom string type"
            if structure.is_string
            else "structures nested too deep"
        )
        yield Leaf(address, None, why, description)
        return
    for index in itertools.product(*(range(d) for d in dims)):
        prefix = f"{address}[{','.join(map(str, index))}]" if index else address
        for member in structure.members:
            if member.hidden:
                continue
            path = f"{prefix}.{member.name}"
            if member.access == "None":
                yield Leaf(path, None, "External Access None (not readable over CIP)", skip=True)
                continue
            yield from _leaves(
                path, member.data_type, member.dims, structures, depth + 1, member.description
            )


def gateway_name(address: str) -> str:
    """The tag's name in topics: ``Program:Main.Count`` is ``Main.Count``, ``Recipes[1].Name``
    is ``Recipes_1.Name``."""
    name = address.removeprefix("Program:")
    name = _INDEX.sub(lambda m: "_" + m.group(1).replace(",", "_"), name)
    return tag_name(name)


def _dims(text: str) -> tuple[int, ...]:
    """``"4 5"`` or ``"4,5"`` -> (4, 5); ``""`` and ``"0"`` -> ()."""
    dims = tuple(int(d) for d in text.replace(",", " ").split())
    return () if dims in ((), (0,)) else dims


def _description(node: Node) -> str | None:
    found = node.find("Description")
    if found is None:
        return None
    text = " ".join(found.text.split())
    return text or None
