"""Runs Eclipse Tahu's sparkplug-payload with node: ``decode.js`` on payloads our code
encoded, ``encode.js`` to make payloads as a host using Tahu would.

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
DECODE = HERE / "decode.js"
ENCODE = HERE / "encode.js"
PACKAGE = HERE / "node_modules" / "sparkplug-payload"


def decode_with_tahu(payloads: Sequence[bytes]) -> list[dict[str, Any]]:
    """Each payload as Tahu decodes it: ``{"tahu": decodePayload(), "raw": protobuf fields}``
    or ``{"error": message}``; 64-bit integers, bytes and NaN restored to Python's."""
    lines = [base64.b64encode(p).decode("ascii") for p in payloads]
    return [_restore(json.loads(line)) for line in _run(DECODE, lines)]


def encode_with_tahu(payloads: Sequence[dict[str, Any]]) -> list[bytes]:
    """Each payload (in sparkplug-payload's form) as Tahu's encodePayload writes it."""
    return [base64.b64decode(line) for line in _run(ENCODE, [json.dumps(p) for p in payloads])]


def _run(script: Path, lines: list[str]) -> list[str]:
    node = shutil.which("node")
    if node is None or not PACKAGE.is_dir():
        raise RuntimeError("Tahu's codec is not installed: run `make node-deps`")
    done = subprocess.run(
        [node, str(script)],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} failed ({done.returncode}): {done.stderr.strip()}")
    answers = done.stdout.splitlines()
    if len(answers) != len(lines):
        raise RuntimeError(f"{script.name} answered {len(answers)} of {len(lines)} payloads")
    return answers


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
