"""``plantgate tail``: a small subscriber that prints what the gateway publishes."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import MqttConfig
from gateway.models import epoch_ms


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
    cfg: MqttConfig, topic: str | None = None, count: int | None = None, out: TextIO = sys.stdout
) -> int:
    """Subscribe to the gateway's topics and print each message until Ctrl-C (or ``count``)."""
    seen = 0
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.secret())
    if cfg.use_tls:
        client.tls_set(ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None)
        client.tls_insecure_set(cfg.tls.insecure)
    wanted = topic or f"{cfg.topic_prefix}/#"

    def on_connect(c: paho.Client, u: Any, f: Any, code: Any, p: Any) -> None:
        if code.is_failure:
            print(f"broker refused: {code}", file=sys.stderr)
            c.disconnect()
            return
        c.subscribe(wanted, qos=0)
        print(f"subscribed to {wanted} on {cfg.host}:{cfg.port}", file=out, flush=True)

    def on_message(c: paho.Client, u: Any, msg: paho.MQTTMessage) -> None:
        nonlocal seen
        print(
            describe(msg.topic, bytes(msg.payload), epoch_ms()),
            file=out,
            flush=True,
        )
        seen += 1
        if count is not None and seen >= count:
            c.disconnect()

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(cfg.host, cfg.port)
        client.loop_forever(retry_first_connection=True)
    except KeyboardInterrupt:
        client.disconnect()
    except OSError as exc:
        print(f"cannot connect to {cfg.host}:{cfg.port}: {exc}", file=sys.stderr)
        return 1
    return 0
