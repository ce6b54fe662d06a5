"""``plantgate tail``: a small subscriber that prints what the gateway publishes."""

from __future__ import annotations

import json
import ssl
import sys
from typing import Any, TextIO

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import MqttConfig
from gateway.models import epoch_ms
from gateway.mqtt import configure_client, socket_problem, tls_problem
from gateway.sparkplug.describe import Births, describe_sparkplug


def describe(topic: str, payload: bytes, now_ms: int) -> str:
    """One line for one message: topic, value, quality, age."""
    try:
        body = json.loads(payload)
    except ValueError:
        return f"{topic}  <{len(payload)} bytes>"
    if isinstance(body, dict) and "value" in body:
        age = (now_ms - int(body.get("ts", now_ms))) / 1000
        hist = "  historical" if body.get("historical") else ""
        value, quality, seq = body["value"], body.get("quality", "?"), body.get("seq")
        return f"{topic:<48} {value!s:>24}  {quality:<9} seq={seq}  age={age:.1f}s{hist}"
    if isinstance(body, dict) and "readings" in body:
        return f"{topic:<48} batch of {len(body['readings'])} readings"
    return f"{topic:<48} {json.dumps(body)[:120]}"


def tail(
    cfg: MqttConfig,
    topic: str | None = None,
    count: int | None = None,
    out: TextIO | None = None,
) -> int:
    """Subscribe to the gateway's topics and print each message until Ctrl-C (or ``count``).

    Exits 1 with one line saying why when the broker cannot be reached, refuses us, or drops
    the connection.
    """
    out = out or sys.stdout  # looked up now: a default bound at import would outlive a redirect
    seen = 0
    failure: list[str] = []
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id="",
        clean_session=True,
        reconnect_on_failure=False,  # say what went wrong instead of retrying in silence
    )
    configure_client(client, cfg)
    sparkplug = cfg.format == "sparkplug"
    if sparkplug:  # the edge node's namespace; births teach the aliases that data uses
        wanted = topic or f"spBv1.0/{cfg.sparkplug.group_id}/#"
    else:
        wanted = topic or f"{cfg.topic_prefix}/#"
    births: Births = {}
    where = f"{cfg.host}:{cfg.port}"
    socket_errors: list[str] = []

    def on_log(c: paho.Client, u: Any, level: int, message: str) -> None:
        if level == paho.MQTT_LOG_ERR and "on socket" in message:
            socket_errors.append(message)

    def on_connect(c: paho.Client, u: Any, f: Any, code: Any, p: Any) -> None:
        if code.is_failure:
            failure.append(f"broker {where} refused the connection: {code}")
            c.disconnect()
            return
        c.subscribe(wanted, qos=0)
        print(f"subscribed to {wanted} on {where}", file=out, flush=True)

    def on_disconnect(c: paho.Client, u: Any, f: Any, code: Any, p: Any) -> None:
        if count is None or seen < count:
            last = socket_errors[-1] if socket_errors else None
            failure.append(f"broker {where}: {socket_problem(last, cfg) or code}")

    def on_message(c: paho.Client, u: Any, msg: paho.MQTTMessage) -> None:
        nonlocal seen
        payload = bytes(msg.payload)
        if sparkplug and msg.topic.startswith("spBv1.0/"):
            text = describe_sparkplug(msg.topic, payload, births, epoch_ms())
        else:
            text = describe(msg.topic, payload, epoch_ms())
        print(text, file=out, flush=True)
        seen += 1
        if count is not None and seen >= count:
            c.disconnect()

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    client.on_log = on_log
    try:
        client.connect(cfg.host, cfg.port)
        client.loop_forever()
    except KeyboardInterrupt:
        client.disconnect()
        return 0
    except ssl.SSLError as exc:
        failure.append(f"broker {where}: {tls_problem(exc, cfg)}")
    except OSError as exc:
        failure.append(f"cannot connect to {where}: {exc.strerror or exc}")
    if failure:
        print(f"tail: {failure[0]}", file=sys.stderr)
        return 1
    return 0
