"""The ``plantgate import`` command: read, report every problem, write validated YAML."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from gateway.errors import ConfigError
from gateway.importers import Format, detect_format, import_file
from gateway.importers.model import Protocol
from gateway.importers.render import SourceSpec, render, validate


def run(
    file: str,
    fmt: Format | None = None,
    source: str | None = None,
    protocol: Protocol | None = None,
    host: str | None = None,
    port: int | None = None,
    byte_order: str | None = None,
    output: str | None = None,
    err: TextIO = sys.stderr,
) -> int:
    """Import ``file``; 0 when YAML was written, 1 (after listing every problem) otherwise."""
    path = Path(file)
    try:
        fmt = fmt or detect_format(path)
        result = import_file(path, fmt, protocol, byte_order)
    except (OSError, ValueError) as exc:
        print(f"{file}: cannot read: {exc}", file=err)
        return 1
    for warning in result.warnings:
        print(warning.render(file, "warning: "), file=err)
    for error in result.errors:
        print(error.render(file), file=err)
    usage = []  # problems with the command rather than the file
    if protocol is not None and protocol != result.protocol:
        usage.append(f"{file}: a {fmt} file holds {result.protocol} tags, not {protocol}")
    if source is not None and host is None:
        usage.append("--source needs --host (the device's address)")
    if not result.tags and not result.errors:
        usage.append(f"{file}: no tags to import")
    for problem in usage:
        print(problem, file=err)
    if result.errors or usage:
        print(f"{file}: not imported: {len(result.errors) + len(usage)} problem(s)", file=err)
        return 1
    spec = None
    if source is not None and host is not None:
        spec = SourceSpec(source, result.protocol, host, port, byte_order)
    text = render(result, f"{path.name} ({fmt}, {result.protocol})", spec)
    try:
        validate(text, result.protocol, spec is not None)
    except ConfigError as exc:  # an importer let through what the config refuses: say so
        print(f"{file}: the YAML made from it does not validate:\n{exc}", file=err)
        return 1
    if output is None:
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")
    warned = f", {len(result.warnings)} warning(s)" if result.warnings else ""
    print(f"{file}: {len(result.tags)} tag(s) imported{warned}", file=err)
    return 0
