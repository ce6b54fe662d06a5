"""The Node-RED flows and settings ``bench.peers`` runs, generated per case.

Each flow publishes the same topics and payloads as plantgate's JSON contract, so one
subscriber counts both alike: per tag ``{prefix}/{source}/{tag}`` with
``{"value", "quality", "ts", "seq"}``; batched ``{prefix}/{source}`` with
``{"ts", "readings": [{"tag", "value", "quality", "ts", "seq"}]}``.

Modbus: one Modbus-Read node per block of at most 125 registers, each polling on its own
timer (how node-red-contrib-modbus polls), all on one modbus-client connection with its
default queue. A Modbus-Read message carries no time, so the function node stamps ``ts``
when the block's reply reaches the flow (plantgate stamps a scan when it starts reading).
OPC UA: one OpcUa-Client node in ``subscribe`` mode, given every variable at once (its
``multiple`` group: one monitored item per variable, created in one request; the older
one-message-per-item way also updates the node's status on every change, which costs
more); ``ts`` is the value's source timestamp, as plantgate publishes it. The node asks for
at most 10 notifications per publish response (its fixed subscription parameters).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

MAX_BLOCK = 125  # registers per Modbus read request (the protocol's limit)

# One message per register; the seq counter lives in the node's context, as a flow would keep it.
MODBUS_PER_TAG = """
const values = msg.payload;
const first = Number(msg.input.payload.address) - START;
const ts = Date.now();
let seq = context.get("seq") || 0;
const out = new Array(values.length);
for (let i = 0; i < values.length; i++) {
    out[i] = {
        topic: TOPIC + "r" + String(first + i).padStart(5, "0"),
        payload: {value: values[i], quality: "good", ts: ts, seq: ++seq},
    };
}
context.set("seq", seq);
return [out];
"""

# One message per block read, carrying its registers as readings.
MODBUS_PER_BLOCK = """
const values = msg.payload;
const first = Number(msg.input.payload.address) - START;
const ts = Date.now();
let seq = context.get("seq") || 0;
const readings = new Array(values.length);
for (let i = 0; i < values.length; i++) {
    readings[i] = {
        tag: "r" + String(first + i).padStart(5, "0"),
        value: values[i], quality: "good", ts: ts, seq: ++seq,
    };
}
context.set("seq", seq);
return {topic: TOPIC, payload: {ts: ts, readings: readings}};
"""

# The client node's first output also says which subscription it made: not a value. The
# first value tells the subscribing node that the items exist.
OPCUA_PER_TAG = """
const value = msg.payload;
if (!value || value.sourceTimestamp === undefined) {
    return null;
}
const id = msg.topic;
const severity = value.statusCode.value >>> 30;
let seq = context.get("seq") || 0;
context.set("seq", ++seq);
if (seq === 1) {
    flow.set("flowing", true);
}
return {
    topic: TOPIC + "v" + id.slice(id.lastIndexOf("Var") + 3).padStart(5, "0"),
    payload: {
        value: value.value.value,
        quality: severity === 0 ? "good" : severity === 1 ? "uncertain" : "bad",
        ts: value.sourceTimestamp.getTime(),
        seq: seq,
    },
};
"""

# Asks the client node for every variable in one group of monitored items (one request, as
# plantgate asks in chunks); again every 30 s until values flow, since the client forgets
# what it queued while connecting when that attempt fails.
OPCUA_SUBSCRIBE = """
if (flow.get("flowing")) {
    return null;
}
return {topic: "multiple", payload: NODES.map((id) => ({nodeId: id}))};
"""


def blocks(start: int, count: int) -> list[tuple[int, int]]:
    """(first register, registers) of each read request covering ``count`` from ``start``."""
    return [
        (at, min(MAX_BLOCK, start + count - at)) for at in range(start, start + count, MAX_BLOCK)
    ]


def _code(template: str, **constants: Any) -> str:
    head = "".join(f"const {name} = {json.dumps(value)};\n" for name, value in constants.items())
    return head + template.lstrip("\n")


def _tab() -> dict[str, Any]:
    return {"id": "bench", "type": "tab", "label": "bench.peers", "disabled": False}


def _broker(port: int) -> dict[str, Any]:
    """MQTT 3.1.1, clean session, no birth or will: what plantgate's link does."""
    return {
        "id": "broker",
        "type": "mqtt-broker",
        "name": "mosquitto",
        "broker": "127.0.0.1",
        "port": str(port),
        "clientid": "bench-nodered",
        "autoConnect": True,
        "usetls": False,
        "protocolVersion": 4,
        "keepalive": 60,
        "cleansession": True,
        "autoUnsubscribe": True,
    }


def _mqtt_out(retain: bool) -> dict[str, Any]:
    """QoS 1 to the topic each message names."""
    return {
        "id": "publish",
        "type": "mqtt out",
        "z": "bench",
        "name": "",
        "topic": "",
        "qos": "1",
        "retain": "true" if retain else "false",
        "broker": "broker",
        "wires": [],
    }


def _function(
    node_id: str, code: str, outputs: int = 1, wires: Sequence[str] = ()
) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "function",
        "z": "bench",
        "name": f"{node_id} message",
        "func": code,
        "outputs": outputs,
        "timeout": 0,
        "noerr": 0,
        "initialize": "",
        "finalize": "",
        "libs": [],
        "wires": [list(wires)],
    }


def modbus_flow(
    *,
    broker_port: int,
    modbus_port: int,
    topic: str,
    start: int,
    registers: int,
    scan_ms: int,
    per_block: bool,
) -> list[dict[str, Any]]:
    """Holding registers ``start``.. polled every ``scan_ms``, published per tag or per block.

    ``topic`` is ``{prefix}/{source}``; tags are named ``r00000``.. from ``start``, as in
    plantgate's bench config.
    """
    client = {
        "id": "plc",
        "type": "modbus-client",
        "name": "simulator",
        "clienttype": "tcp",
        "bufferCommands": True,
        "stateLogEnabled": False,
        "queueLogEnabled": False,
        "failureLogEnabled": False,
        "tcpHost": "127.0.0.1",
        "tcpPort": str(modbus_port),
        "tcpType": "DEFAULT",
        "unit_id": 1,
        "commandDelay": 1,
        "clientTimeout": 3000,
        "reconnectOnTimeout": True,
        "reconnectTimeout": 2000,
        "parallelUnitIdsAllowed": True,
        "showErrors": True,
        "showWarnings": True,
        "showLogs": False,
    }
    reads = [
        {
            "id": f"read{n:03d}",
            "type": "modbus-read",
            "z": "bench",
            "name": f"holding {at}+{count}",
            "topic": "",
            "showStatusActivities": False,
            "logIOActivities": False,
            "showErrors": True,
            "showWarnings": True,
            "unitid": "1",
            "dataType": "HoldingRegister",
            "adr": str(at),
            "quantity": str(count),
            "rate": str(scan_ms),
            "rateUnit": "ms",
            "delayOnStart": False,
            "enableDeformedMessages": False,
            "startDelayTime": "",
            "server": "plc",
            "useIOFile": False,
            "ioFile": "",
            "useIOForPayload": False,
            "emptyMsgOnFail": False,
            "wires": [["shape"], []],
        }
        for n, (at, count) in enumerate(blocks(start, registers))
    ]
    if per_block:
        shape = _code(MODBUS_PER_BLOCK, START=start, TOPIC=topic)
    else:
        shape = _code(MODBUS_PER_TAG, START=start, TOPIC=f"{topic}/")
    return [
        _tab(),
        _broker(broker_port),
        client,
        *reads,
        _function("shape", shape, wires=["publish"]),
        _mqtt_out(retain=not per_block),  # plantgate retains live per_tag values, not batches
    ]


def opcua_flow(
    *, broker_port: int, endpoint: str, topic: str, node_ids: Sequence[str], interval_ms: int
) -> list[dict[str, Any]]:
    """A monitored item per node id (sampled and published every ``interval_ms``), one
    message per change; ``node_ids`` end in ``Var<n>``, published as tag ``v<n>``."""
    return [
        _tab(),
        _broker(broker_port),
        {
            "id": "server",
            "type": "OpcUa-Endpoint",
            "endpoint": endpoint,
            "secpol": "None",
            "secmode": "None",
            "none": True,
            "login": False,
            "usercert": False,
            "usercertificate": "",
            "userprivatekey": "",
        },
        {
            "id": "start",
            "type": "inject",
            "z": "bench",
            "name": "subscribe until values flow",
            "props": [],
            "repeat": "30",
            "crontab": "",
            "once": True,
            "onceDelay": "1",
            "wires": [["items"]],
        },
        _function("items", _code(OPCUA_SUBSCRIBE, NODES=list(node_ids)), wires=["client"]),
        {
            "id": "client",
            "type": "OpcUa-Client",
            "z": "bench",
            "name": "OPC UA client",
            "endpoint": "server",
            "action": "subscribe",
            "deadbandtype": "a",
            "deadbandvalue": 1,
            "time": interval_ms,
            "timeUnit": "ms",
            "certificate": "n",
            "localfile": "",
            "localkeyfile": "",
            "securitymode": "None",
            "securitypolicy": "None",
            "useTransport": False,
            "maxChunkCount": 1,
            "maxMessageSize": 8192,
            "receiveBufferSize": 8192,
            "sendBufferSize": 8192,
            "setstatusandtime": False,
            "keepsessionalive": False,
            "wires": [["shape"], [], []],
        },
        _function("shape", _code(OPCUA_PER_TAG, TOPIC=f"{topic}/"), wires=["publish"]),
        _mqtt_out(retain=True),
    ]


SETTINGS = """\
// Generated by bench.peers: no editor, no HTTP endpoints, nothing fetched, warnings only.
module.exports = {
    flowFile: "flows.json",
    flowFilePretty: false,
    credentialSecret: false,
    httpAdminRoot: false,
    httpNodeRoot: false,
    uiHost: "127.0.0.1",
    diagnostics: {enabled: false, ui: false},
    runtimeState: {enabled: false, ui: false},
    telemetry: {enabled: false, updateNotification: false},
    externalModules: {autoInstall: false, palette: {allowInstall: false}},
    functionExternalModules: false,
    logging: {console: {level: "warn", metrics: false, audit: false}},
};
"""
