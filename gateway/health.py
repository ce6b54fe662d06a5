"""Health without a port: the gateway writes a file by its buffer; `plantgate health` reads it.

The file is stamped every ``metrics_interval`` and names the process (pid and start time), so
a gateway that was killed is seen as gone at once, not only once the stamp is stale.
"""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import Any

HEALTH_FILE = "health.json"

HEALTHY, UNHEALTHY, DEGRADED = 0, 1, 2


def health_path(buffer_path: Path) -> Path:
    """Where the health file of a gateway with this buffer lives."""
    return buffer_path.parent / HEALTH_FILE


def write_health(path: Path, snapshot: dict[str, Any]) -> None:
    """Replace the health file atomically (a reader never sees half a file); on a full disk,
    where a second file has no room, rewrite it in place instead (its blocks are reused)."""
    text = json.dumps(snapshot, separators=(",", ":"))
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(text)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno != errno.ENOSPC or not path.exists():
            raise
        with open(path, "r+") as f:
            f.write(text)
            f.truncate()
        return
    os.replace(tmp, path)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (None: no such process, or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22, counted after the command name


def process_identity() -> dict[str, Any]:
    """This process, as the health file names it."""
    return {"pid": os.getpid(), "start": _start_time(os.getpid())}


def process_gone(identity: dict[str, Any]) -> bool:
    """True when the process a health file names is no longer running (pid gone or reused)."""
    pid, start = identity.get("pid"), identity.get("start")
    if not isinstance(pid, int) or start is None or not Path("/proc/self").exists():
        return False  # cannot tell here: the stamp's age decides
    return bool(_start_time(pid) != start)


def _stalls(snapshot: dict[str, Any], now_ms: float) -> list[str]:
    """Readings that are not moving: into the buffer, or out of it while online."""
    limit = float(snapshot.get("stall_after_s", 30.0)) * 1000
    buffer = snapshot.get("buffer", {})
    publisher = snapshot.get("publisher", {})
    backlog = snapshot.get("backlog", {})
    found = []
    oldest = buffer.get("oldest_queued_ms")
    if oldest is not None and now_ms - oldest > limit:
        found.append(
            f"the buffer is not committing: readings have waited {(now_ms - oldest) / 1000:.0f}s"
            + (" (the disk is full)" if buffer.get("disk_full") else "")
        )
    last_ack = publisher.get("last_ack_ms") or 0
    if (
        publisher.get("state") == "online"
        and backlog.get("readings", 0) > 0
        and now_ms - last_ack > limit
        and now_ms - (backlog.get("oldest_ts") or now_ms) > limit
    ):
        found.append(
            f"the publisher is online but not draining: {backlog.get('readings')} readings "
            f"waiting, no acknowledgement for {(now_ms - last_ack) / 1000:.0f}s"
        )
    return found


def check_health(path: Path, max_age: float, strict: bool = False) -> tuple[int, str]:
    """Exit code and report: 0 alive and moving, 1 not running, stale or stalled, 2 (strict)
    the broker or a source is down."""
    try:
        snapshot = json.loads(path.read_text())
    except FileNotFoundError:
        return UNHEALTHY, f"unhealthy: no {path}; is the gateway running with this config?"
    except (OSError, ValueError) as exc:
        return UNHEALTHY, f"unhealthy: cannot read {path}: {exc}"
    now_ms = time.time() * 1000
    age = (now_ms - snapshot.get("ts", 0)) / 1000
    if snapshot.get("state") == "stopped":
        return UNHEALTHY, "unhealthy: the gateway stopped"
    if snapshot.get("state") == "failed":
        return UNHEALTHY, f"unhealthy: the gateway failed: {snapshot.get('reason')}"
    process = snapshot.get("process", {})
    if process_gone(process):
        return UNHEALTHY, f"unhealthy: the gateway process {process.get('pid')} is gone"
    if age > max_age:
        return UNHEALTHY, f"unhealthy: last sign of life {age:.0f}s ago (more than {max_age:.0f}s)"
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
    stalls = _stalls(snapshot, now_ms)
    if stalls:
        return UNHEALTHY, "\n".join(["unhealthy: " + s for s in stalls] + lines)
    down = publisher.get("state") != "online" or any(
        s.get("state") != "connected" for s in sources.values()
    )
    code = DEGRADED if strict and down else HEALTHY
    return code, "\n".join(lines)
