"""A small XML tree that remembers each element's line, for messages that point into the file.

Parsed with expat; a document type declaration is refused, so entity expansion (the "billion
laughs") cannot happen: Studio 5000 exports never carry one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from xml.parsers import expat


@dataclass(eq=False)
class Node:
    """One element: its name, attributes, line, children and text (CDATA included)."""

    tag: str
    attrib: dict[str, str]
    line: int
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def find(self, tag: str) -> Node | None:
        """The first child called ``tag``."""
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, *path: str) -> Iterator[Node]:
        """The descendants reached by following ``path`` one child name at a time."""
        if not path:
            yield self
            return
        for child in self.children:
            if child.tag == path[0]:
                yield from child.findall(*path[1:])

    def get(self, name: str, default: str = "") -> str:
        """An attribute's value, stripped."""
        return self.attrib.get(name, default).strip()


class XmlError(ValueError):
    """The file is not well-formed XML; ``line`` says where."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def parse_xml(data: bytes) -> Node:
    """Parse a document into Nodes; XmlError on malformed XML or a DTD."""
    parser = expat.ParserCreate()
    stack: list[Node] = []
    roots: list[Node] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        node = Node(name, attrs, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)

    def end(_name: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text += data

    def doctype(*_args: object) -> None:
        raise XmlError(parser.CurrentLineNumber, "a DOCTYPE is not expected in a tag export")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.StartDoctypeDeclHandler = doctype
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise XmlError(exc.lineno, f"not well-formed XML: {expat.ErrorString(exc.code)}") from exc
    if not roots:
        raise XmlError(1, "the file holds no XML element")
    return roots[0]
