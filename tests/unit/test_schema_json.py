"""plantgate.schema.json: current with the models, and agreeing with ``validate`` on what it
can say: every example in the repository passes both, the bad examples fail both, and what only
``validate`` can judge is listed here, case by case."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import TypeAdapter

from gateway.cli import main
from gateway.config import interpolate, parse_config
from gateway.errors import ConfigError
from gateway.schema_export import (
    ENVIRONMENT,
    SCHEMA_FILE,
    config_models,
    config_schema,
    schema_text,
)

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = jsonschema.Draft7Validator(config_schema())

BASE: dict[str, Any] = {
    "gateway": {"name": "line1-edge"},
    "mqtt": {"url": "mqtt://127.0.0.1:1883"},
    "sources": [
        {
            "name": "press1",
            "protocol": "modbus",
            "host": "127.0.0.1",
            "tags": [{"name": "oil_temp", "address": "holding:100", "type": "float32"}],
        },
        {
            "name": "oven",
            "protocol": "opcua",
            "url": "opc.tcp://127.0.0.1:4840",
            "tags": [{"name": "zone1_temp", "node": "nsu=urn:plantgate:sim;s=Oven.Zone1.Temp"}],
        },
        {
            "name": "filler",
            "protocol": "logix",
            "host": "127.0.0.1",
            "tags": [{"name": "bottles", "address": "Program:MainProgram.BottleCount"}],
        },
    ],
}
MB, UA, LX = ("sources", 0), ("sources", 1), ("sources", 2)  # Modbus, OPC UA, Logix
MB_TAG, UA_TAG, LX_TAG = (*MB, "tags", 0), (*UA, "tags", 0), (*LX, "tags", 0)
GONE = object()  # a change that deletes the key


def changed(*edits: tuple[tuple[str | int, ...], Any]) -> dict[str, Any]:
    """BASE with each (path, value) set, or deleted when the value is GONE."""
    doc = copy.deepcopy(BASE)
    for path, value in edits:
        node = doc
        for part in path[:-1]:
            node = node[part]
        if value is GONE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return doc


def validate_accepts(doc: Any) -> bool:
    """What ``plantgate validate`` says of this document (files are not looked at)."""
    try:
        parse_config(yaml.safe_dump(doc, sort_keys=False))
    except ConfigError:
        return False
    return True


def schema_problems(doc: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in VALIDATOR.iter_errors(doc)]


def test_the_shipped_schema_is_generated_from_the_models() -> None:
    shipped = (ROOT / SCHEMA_FILE).read_text()
    assert shipped == schema_text(), (
        f"{SCHEMA_FILE} is not what the config models generate: run `make schema` and commit it"
    )


def test_plantgate_schema_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == config_schema()


def test_it_is_a_draft_7_schema_and_config_yaml_points_at_it() -> None:
    jsonschema.Draft7Validator.check_schema(config_schema())
    first_line = (ROOT / "config.yaml").read_text().splitlines()[0]
    assert first_line == f"# yaml-language-server: $schema=./{SCHEMA_FILE}"


# -- every example in the repository -----------------------------------------------------------

MINIMAL_SOURCE = BASE["sources"][0]


def yaml_blocks(path: Path) -> Iterator[tuple[str, str]]:
    """Each ```yaml block of a Markdown file, with where it starts."""
    text = path.read_text()
    for match in re.finditer(r"^```yaml\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        line = text.count("\n", 0, match.start()) + 1
        yield f"{path.relative_to(ROOT)}:{line}", match.group(1)


def as_tag_map(where: str, block: str) -> Any:
    """A docs example as a whole tag map: a sources: section or source entries get the rest."""
    doc = yaml.safe_load(block)
    if isinstance(doc, list):
        doc = {"sources": doc}
    if not isinstance(doc, dict) or not set(doc) <= {"gateway", "mqtt", "sources"}:
        raise AssertionError(
            f"{where}: a ```yaml block must be a tag map, a part of one (gateway:, mqtt:, "
            "sources:) or source entries; write other snippets as ```text"
        )
    doc.setdefault("gateway", {"name": "example"})
    doc.setdefault("sources", [MINIMAL_SOURCE])
    return doc


def examples() -> Iterator[Any]:
    # config.yaml is also the simulators' demo config (`make demo` runs simulators/demo.py with it).
    yield pytest.param("config.yaml", (ROOT / "config.yaml").read_text(), id="config.yaml")
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for where, block in yaml_blocks(path):
            yield pytest.param(where, block, id=where)


@pytest.mark.parametrize(("where", "block"), list(examples()))
def test_every_example_passes_the_schema_and_validate(
    where: str, block: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = as_tag_map(where, block)
    assert schema_problems(doc) == [], where
    # Variables the example leaves to the reader's environment get a plausible value.
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", block):
        monkeypatch.setenv(name, "example")
    parse_config(yaml.safe_dump(doc, sort_keys=False), where)


# -- what both refuse ---------------------------------------------------------------------------

REFUSED_BY_BOTH = {
    "unknown top-level key": [(("gatway",), {"name": "x"})],
    "unknown gateway key": [(("gateway", "nmae"), "x")],
    "unknown source key": [((*MB, "hots"), "10.0.0.1")],
    "unknown tag key": [((*MB_TAG, "adress"), "holding:1")],
    "unknown security key": [((*UA, "security"), {"polcy": "None"})],
    "unknown protocol": [((*MB, "protocol"), "profibus")],
    "no protocol": [((*MB, "protocol"), GONE)],
    "port not a number": [((*MB, "port"), "abc")],
    "port out of range": [((*MB, "port"), 70000)],
    "qos 2": [(("mqtt", "qos"), 2)],
    "retain not a boolean": [(("mqtt", "retain"), "sometimes")],
    "deadband not a number": [((*MB_TAG, "deadband"), "a lot")],
    "negative deadband": [((*MB_TAG, "deadband"), -1)],
    "units not text": [((*MB_TAG, "units"), 5)],
    "sources not a list": [(("sources",), {"name": "press1"})],
    "duration in words": [((*MB, "scan"), "5 minutes")],
    "duration with a bad unit": [(("gateway", "buffer"), {"max_age": "7days"})],
    "negative duration": [((*MB_TAG, "heartbeat"), "-1s")],
    "zero scan": [((*MB, "scan"), 0)],
    "scan below 1ms as a number": [((*MB_TAG, "scan"), 0.0001)],
    "size with a bad unit": [(("gateway", "buffer"), {"max_bytes": "1 GiBs"})],
    "unknown layout": [(("mqtt", "layout"), "per_message")],
    "unknown byte order": [((*MB, "byte_order"), "ABDC")],
    "unknown Modbus type": [((*MB_TAG, "type"), "float16")],
    "unknown report": [((*MB_TAG, "report"), "sometimes")],
    "unknown durability": [(("gateway", "buffer"), {"durability": "paranoid"})],
    "unknown security policy": [((*UA, "security"), {"policy": "Basic128Rsa15"})],
    "unknown replay order": [(("mqtt", "replay"), {"order": "newest_first"})],
    "no gateway name": [(("gateway", "name"), GONE)],
    "no sources": [(("sources",), GONE)],
    "empty sources": [(("sources",), [])],
    "no tags": [((*MB, "tags"), GONE)],
    "empty tags": [((*MB, "tags"), [])],
    "Modbus source without host": [((*MB, "host"), GONE)],
    "Modbus tag without address": [((*MB_TAG, "address"), GONE)],
    "OPC UA source without url": [((*UA, "url"), GONE)],
    "OPC UA tag without node": [((*UA_TAG, "node"), GONE)],
    "gateway name with a space": [(("gateway", "name"), "line 1")],
    "source name with a dot": [((*MB, "name"), "press.1")],
    "tag name with a slash": [((*MB_TAG, "name"), "oil/temp")],
    "unit id above 255": [((*MB, "unit_id"), 256)],
    "17 connections": [((*MB, "connections"), 17)],
    "no messages in flight": [(("mqtt", "max_inflight"), 0)],
    "metrics every 10 ms": [(("gateway", "metrics_interval"), 0.01)],
    "keepalive beyond MQTT's limit": [(("mqtt", "keepalive"), 70000)],
    "empty OPC UA queue": [((*UA, "queue_size"), 0)],
    "Logix slot above 255": [((*LX, "slot"), 256)],
    "Logix port 65535": [((*LX, "port"), 65535)],
    "address without a colon": [((*MB_TAG, "address"), "holding100")],
    "Modicon number of no table": [((*MB_TAG, "address"), 20001)],
    "Modicon number 0": [((*MB_TAG, "address"), 40000)],
    "bit of a coil": [((*MB_TAG, "address"), "coil:3.1"), ((*MB_TAG, "type"), "bool")],
    "bit 16": [((*MB_TAG, "address"), "holding:6.16"), ((*MB_TAG, "type"), "bool")],
    "unknown table": [((*MB_TAG, "address"), "register:1")],
}


def test_the_base_example_passes_both() -> None:
    assert validate_accepts(BASE)
    assert schema_problems(BASE) == []


@pytest.mark.parametrize("case", list(REFUSED_BY_BOTH))
def test_both_refuse(case: str) -> None:
    doc = changed(*REFUSED_BY_BOTH[case])
    assert not validate_accepts(doc), f"validate accepts {case}"
    assert schema_problems(doc), f"the schema accepts {case}"


# -- what only validate can judge ---------------------------------------------------------------

# Each of these is refused by `plantgate validate` and passes the schema. JSON Schema cannot say
# it (or says it only at a cost that would make the schema unreadable); an editor with the schema
# does not flag it, `validate` does. If the schema learns one, move it to REFUSED_BY_BOTH.
ONLY_VALIDATE_REFUSES = {
    # Durations and sizes written as text are bounded after parsing ("0.5ms" < 1ms): a pattern
    # cannot compare quantities. Their bare-number forms are bounded by the schema.
    "scan below 1ms as text": [((*MB_TAG, "scan"), "0.5ms")],
    "heartbeat over 3650 days as text": [((*MB_TAG, "heartbeat"), "4000d")],
    # Field validators of the buffer: its own bounds, for text and numbers alike.
    "max_age under a minute": [(("gateway", "buffer"), {"max_age": "30s"})],
    "max_bytes under 1MiB as text": [(("gateway", "buffer"), {"max_bytes": "512KiB"})],
    "max_bytes under 1MiB as a number": [(("gateway", "buffer"), {"max_bytes": 1000})],
    # Cross-field rules: one key's validity depends on another's.
    "reconnect min above max": [(("mqtt", "reconnect"), {"min": "10s", "max": "1s"})],
    "string without length": [((*MB_TAG, "type"), "string")],
    "length on a float": [((*MB_TAG, "length"), 4)],
    "float32 on a coil": [((*MB_TAG, "address"), "coil:3")],
    "empty raw range": [((*MB_TAG, "scale"), {"raw": [0, 0], "eng": [0, 100]})],
    "scale and multiplier": [
        ((*MB_TAG, "scale"), {"raw": [0, 1], "eng": [0, 100]}),
        ((*MB_TAG, "multiplier"), 0.1),
    ],
    "write limits on a read-only tag": [((*MB_TAG, "write"), {"max": 10})],
    "writable input register": [
        ((*MB_TAG, "address"), "input:3"),
        ((*MB_TAG, "type"), "uint16"),
        ((*MB_TAG, "writable"), True),
    ],
    "password file without username": [(("mqtt", "password_file"), "/run/secrets/mqtt")],
    "user certificate without its key": [((*UA, "user_cert_file"), "/data/user.der")],
    "percent deadband above 100": [
        ((*UA_TAG, "deadband"), 150),
        ((*UA_TAG, "deadband_type"), "percent"),
    ],
    "slot and route": [((*LX, "slot"), 0), ((*LX, "route"), "backplane/2")],
    "tag_list false with untyped tags": [((*LX, "tag_list"), False)],
    "two sources of one name": [(("sources", 1, "name"), "press1")],
    # Addresses, node ids and types in full are their parsers' (the schema checks the form of a
    # Modbus address, not its numbers; Logix addresses, types and node ids are plain text).
    "Modbus offset beyond 65535": [((*MB_TAG, "address"), "holding:70000")],
    "Modicon text 0": [((*MB_TAG, "address"), "40000")],
    "Logix name starting with a digit": [((*LX_TAG, "address"), "1Tag")],
    "Logix type that does not exist": [((*LX_TAG, "type"), "FLOAT")],
    "node id of no kind": [((*UA_TAG, "node"), "x=1")],
    # URLs and topics are checked by their validators.
    "broker url over http": [(("mqtt", "url"), "http://broker:1883")],
    "OPC UA url over http": [((*UA, "url"), "http://plc:4840")],
    "wildcard in topic_prefix": [(("mqtt", "topic_prefix"), "acme/#")],
    # A cross-field rule: format sparkplug needs a group id.
    "format sparkplug without a group id": [(("mqtt", "format"), "sparkplug")],
    # ${VAR} is substituted when the config is loaded: the schema sees only its text, validate
    # sees the variable is not set. (Duplicate YAML keys are the same kind of thing: JSON has
    # none, the YAML parser keeps the last one; validate names both lines.)
    "unset variable": [(("gateway", "name"), "${PLANTGATE_TEST_UNSET}")],
}


@pytest.mark.parametrize("case", list(ONLY_VALIDATE_REFUSES))
def test_only_validate_refuses(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLANTGATE_TEST_UNSET", raising=False)
    doc = changed(*ONLY_VALIDATE_REFUSES[case])
    assert not validate_accepts(doc), f"validate accepts {case}"
    assert schema_problems(doc) == [], f"the schema refuses {case}: move it to REFUSED_BY_BOTH"


# The schema is stricter in one way: values written in another type's form, which pydantic
# coerces (it must: ${VAR} always gives text), are flagged by an editor and accepted by validate.
# A YAML 1.1 boolean such as `yes` is the same story seen from the other side: PyYAML reads a
# boolean, an editor's YAML 1.2 parser reads text.
ONLY_THE_SCHEMA_REFUSES = {
    "quoted port": [((*MB, "port"), "502")],
    "quoted boolean": [(("mqtt", "retain"), "true")],
    "number for a boolean": [(("gateway", "writes"), 1)],
    "quoted deadband": [((*MB_TAG, "deadband"), "0.5")],
}


@pytest.mark.parametrize("case", list(ONLY_THE_SCHEMA_REFUSES))
def test_only_the_schema_refuses(case: str) -> None:
    doc = changed(*ONLY_THE_SCHEMA_REFUSES[case])
    assert validate_accepts(doc), f"validate refuses {case}"
    assert schema_problems(doc), f"the schema accepts {case}"


# -- the parts the schema says in the YAML's terms ---------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "coil:0", "discrete:5", "input:3", "holding:100", "holding:6.3", "input:2.15",
        " holding:1 ", "00001", "10001", "30001", "40101", "400001", "465536", "40101.3",
        10001, 19999, 30001, 40101, 100001, 165536, 300001, 465536,
    ],
)  # fmt: skip
def test_every_address_the_parser_takes_passes_the_schema(address: str | int) -> None:
    doc = changed(((*MB_TAG, "address"), address), ((*MB_TAG, "type"), None))
    assert validate_accepts(doc)
    assert schema_problems(doc) == []


@pytest.mark.parametrize("text", ["${A}", "${A_1:-x}", "pre-${A}-post", "${A:-}"])
def test_what_the_loader_substitutes_passes_as_a_variable(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("A", "1")
    monkeypatch.setenv("A_1", "1")
    assert interpolate(text, (), []) != text
    assert re.search(ENVIRONMENT["pattern"], text)


@pytest.mark.parametrize("text", ["$A", "${1A}", "${A-x}", "{A}", "$(A)"])
def test_what_the_loader_leaves_does_not(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A", "1")
    assert interpolate(text, (), []) == text
    assert not re.search(ENVIRONMENT["pattern"], text)


def test_a_number_or_choice_may_come_from_the_environment() -> None:
    doc = changed(((*MB, "port"), "${MODBUS_PORT:-502}"), (("mqtt", "qos"), "${QOS}"))
    assert schema_problems(doc) == []


def test_every_default_in_the_schema_means_the_models_default() -> None:
    schema = config_schema()
    checked = 0
    for model in {m.__name__: m for m in config_models()}.values():
        properties = schema["$defs"].get(model.__name__, schema)["properties"]
        for name, field in model.model_fields.items():
            if "default" not in properties[name]:
                continue
            written = properties[name]["default"]  # e.g. "7d", "1GiB", "data/buffer.db"
            parsed = TypeAdapter(field.rebuild_annotation()).validate_python(written)
            assert parsed == field.default, f"{model.__name__}.{name}: {written!r}"
            checked += 1
    assert checked > 50


def test_keys_say_what_they_are() -> None:
    schema = config_schema()
    missing = [
        f"{model}.{key}"
        for model, body in schema["$defs"].items()
        for key, prop in body.get("properties", {}).items()
        if "description" not in prop and "$ref" not in prop
    ]
    assert missing == []
