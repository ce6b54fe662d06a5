"""Runs ``decode.js`` (Eclipse Tahu's sparkplug-payload) on payloads our code encoded.

Installed by ``make node-deps`` (node, then ``npm ci`` from the committed lock file); a test
that needs it fails, rather than skips, when it is missing.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
SCRIPT = HERE / "decode.js"
PACKAGE = HERE / "node_modules" / "sparkplug-payload"


def decode_with_tahu(payloads: Sequence[bytes]) -> list[dict[str, Any]]:
    """Each payload as Tahu decodes it: ``{"tahu": decodePayload(), "raw": protobuf fields}``
    or ``{"error": message}``; 64-bit integers, bytes and NaN restored to Python's."""
    node = shutil.which("node")
    if node is None or not PACKAGE.is_dir():
        raise RuntimeError("Tahu's decoder is not installed: run `make node-deps`")
    lines = "".join(base64.b64encode(p).decode("ascii") + "\n" for p in payloads)
    done = subprocess.run(
        [node, str(SCRIPT)], input=lines, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"decode.js failed ({done.returncode}): {done.stderr.strip()}")
    results = [_restore(json.loads(line)) for line in done.stdout.splitlines()]
    if len(results) != len(payloads):
        raise RuntimeError(f"decode.js answered {len(results)} of {len(payloads)} payloads")
    return results


def _restore(value: Any) -> Any:
    if isinstance(value, list):
        return [_restore(v) for v in value]
    if not isinstance(value, dict):
        return value
    if value.keys() == {"$long"}:
        return int(value["$long"])
    if value.keys() == {"$bytes"}:
        return base64.b64decode(value["$bytes"])
    if value.keys() == {"$float"}:
        return float(value["$float"])
    return {k: _restore(v) for k, v in value.items()}
