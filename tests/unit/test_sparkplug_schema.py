"""The Sparkplug schema: the committed generated module is the .proto's, and our enum is its."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.sparkplug import sparkplug_b_pb2 as pb
from gateway.sparkplug.datatypes import DataType

SCHEMA_DIR = Path(pb.__file__).parent


def test_committed_module_is_generated_from_the_committed_proto(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{SCHEMA_DIR}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            str(SCHEMA_DIR / "sparkplug_b.proto"),
        ],
        check=True,
    )
    for name in ("sparkplug_b_pb2.py", "sparkplug_b_pb2.pyi"):
        generated = (tmp_path / name).read_text()
        assert (SCHEMA_DIR / name).read_text() == generated, f"{name} is stale: run `make proto`"


def test_datatype_enum_is_the_schemas() -> None:
    schema = {v.name: v.number for v in pb.DESCRIPTOR.enum_types_by_name["DataType"].values}
    assert {t.name: t.value for t in DataType} == schema


def test_schema_has_the_specifications_field_numbers() -> None:
    # Spelled out here, from the specification's payload definition, so that an edit of the
    # .proto that renumbers a field cannot pass just because the encoders follow it.
    def numbers(message: type[pb.Payload] | type[pb.Payload.Metric]) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}

    assert numbers(pb.Payload) == {"timestamp": 1, "metrics": 2, "seq": 3, "uuid": 4, "body": 5}
    assert numbers(pb.Payload.Metric) == {
        "name": 1,
        "alias": 2,
        "timestamp": 3,
        "datatype": 4,
        "is_historical": 5,
        "is_transient": 6,
        "is_null": 7,
        "metadata": 8,
        "properties": 9,
        "int_value": 10,
        "long_value": 11,
        "float_value": 12,
        "double_value": 13,
        "boolean_value": 14,
        "string_value": 15,
        "bytes_value": 16,
        "dataset_value": 17,
        "template_value": 18,
        "extension_value": 19,
    }
    property_value = {f.name: f.number for f in pb.Payload.PropertyValue.DESCRIPTOR.fields}
    assert property_value["type"] == 1
    assert property_value["int_value"] == 3
    assert property_value["string_value"] == 8
    property_set = {f.name: f.number for f in pb.Payload.PropertySet.DESCRIPTOR.fields}
    assert property_set == {"keys": 1, "values": 2}
