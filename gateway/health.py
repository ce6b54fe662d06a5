"""Health without a port: the gateway writes a file by its buffer; `plantgate health` reads it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

HEALTH_FILE = "health.json"


def health_path(buffer_path: Path) -> Path:
    """Where the health file of a gateway with this buffer lives."""
    return buffer_path.parent / HEALTH_FILE


def write_health(path: Path, snapshot: dict[str, Any]) -> None:
    """Replace the health file atomically (a reader never sees half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(snapshot, separators=(",", ":")))
    os.replace(tmp, path)


def check_health(path: Path, max_age: float, strict: bool = False) -> tuple[int, str]:
    """Exit code and report: 0 alive, 1 not running or stale, 2 (strict) broker or a source down."""
    try:
        snapshot = json.loads(path.read_text())
    except FileNotFoundError:
        return 1, f"unhealthy: no {path}; is the gateway running with this config?"
    except (OSError, ValueError) as exc:
        return 1, f"unhealthy: cannot read {path}: {exc}"
    age = time.time() - snapshot.get("ts", 0) / 1000
    if snapshot.get("state") == "stopped":
        return 1, "unhealthy: the gateway stopped"
    if age > max_age:
        return 1, f"unhealthy: last sign of life {age:.0f}s ago (more than {max_age:.0f}s)"
    publisher = snapshot.get("publisher", {})
    sources = snapshot.get("sources", {})
    backlog = snapshot.get("backlog", {})
    lines = [
        f"alive {age:.0f}s ago; broker {publisher.get('state', '?')}"
        + (f" ({publisher['last_error']})" if publisher.get("last_error") else ""),
        f"backlog {backlog.get('readings', '?')} readings in {backlog.get('batches', '?')} batches",
    ]
    for name, src in sources.items():
        error = f" ({src['last_error']})" if src.get("last_error") else ""
        lines.append(f"source {name}: {src.get('state')}, seq {src.get('seq')}{error}")
    down = publisher.get("state") != "online" or any(
        s.get("state") != "connected" for s in sources.values()
    )
    code = 2 if strict and down else 0
    return code, "\n".join(lines)
