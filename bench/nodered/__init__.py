"""Node-RED as plants run it, beside plantgate in ``bench.peers``: the pinned install and its flows.

``package.json`` pins Node-RED, node-red-contrib-modbus and node-red-contrib-opcua;
``make nodered`` installs them here with ``npm ci`` from the committed lock file.
node-red-contrib-modbus takes its Modbus library from a fork published outside the npm registry
(``@openp4nr/modbus-serial``); the ``overrides`` entry puts the upstream ``modbus-serial`` it was
forked from in its place. Modbus TCP reads only use what both have in common.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

HOME = Path(__file__).resolve().parent
RED_JS = HOME / "node_modules" / "node-red" / "red.js"


def versions() -> dict[str, str]:
    """The pinned Node-RED packages and their versions, as package.json says."""
    pinned: dict[str, str] = json.loads((HOME / "package.json").read_text())["dependencies"]
    return pinned


def node_command() -> list[str]:
    """``node red.js``: refuses with the command to run when the install is missing."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise SystemExit("node is not installed; run: make nodered")
    if not RED_JS.is_file():
        raise SystemExit(f"Node-RED is not installed in {HOME}; run: make nodered")
    return [node, str(RED_JS)]
