"""``plantgate schema``: the tag map's JSON Schema, for editors (plantgate.schema.json).

Generated from the config models by pydantic, then said in the YAML's terms: defaults as the
YAML writes them (``7d``, ``1GiB``), one-line descriptions, constraints pydantic leaves in its
own words put in JSON Schema's, and ``${VAR}`` accepted wherever the YAML may write it (the
loader substitutes the environment before validating). Draft 7, the draft editors support
fully (VS Code's YAML extension). ``plantgate validate`` stays the judge: it also checks what
a schema cannot say (cross-field rules, addresses and node ids in full, files).
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
from collections.abc import Iterator
from typing import Any, get_args

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import CoreSchema

from gateway.config import Config
from gateway.schema import Duration, Size, format_duration

SCHEMA_FILE = "plantgate.schema.json"
DRAFT = "http://json-schema.org/draft-07/schema#"
# What gateway.config.interpolate replaces: ${VAR} or ${VAR:-default}, anywhere in a string.
ENVIRONMENT = {
    "type": "string",
    "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}",
    "description": "${VAR} or ${VAR:-default}: taken from the environment when loaded.",
}
_ENVIRONMENT_REF = {"$ref": "#/$defs/Environment"}
# pydantic's names for constraints it could not place on a JSON type (a duration's number).
_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
_SIZE_UNITS = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


class _Generator(GenerateJsonSchema):
    """pydantic's generator without a title per key: the key's name is its title."""

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        """Never: the description says what a key is."""
        return False


def format_size(size: int) -> str:
    """Bytes as the YAML would write them: ``1GiB``, else the bare number."""
    for unit, factor in _SIZE_UNITS:
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def config_models(model: type[BaseModel] = Config) -> Iterator[type[BaseModel]]:
    """Every config model reachable from ``model`` (itself first)."""
    yield model
    for field in model.model_fields.values():
        yield from _models_in(field.annotation)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield from config_models(annotation)
    for arg in get_args(annotation):
        yield from _models_in(arg)


def field_docs(model: type[BaseModel]) -> dict[str, str]:
    """The string under each field in the class body of a model and of its bases."""
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not issubclass(cls, BaseModel) or cls is BaseModel:
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
        assert isinstance(body, ast.ClassDef)
        for field, after in zip(body.body, body.body[1:], strict=False):
            if (
                isinstance(field, ast.AnnAssign)
                and isinstance(field.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[field.target.id] = after.value.value
    return docs


def config_schema() -> dict[str, Any]:
    """The JSON Schema of config.yaml."""
    generated = Config.model_json_schema(schema_generator=_Generator)
    for model in config_models():
        body = generated if model is Config else generated["$defs"][model.__name__]
        for name, doc in field_docs(model).items():
            body["properties"][name].setdefault("description", doc)
    kinds = [
        (TypeAdapter(Duration).json_schema()["anyOf"], format_duration),
        (TypeAdapter(Size).json_schema()["anyOf"], format_size),
    ]
    body = _yaml_view(generated, kinds)
    body["$defs"]["Environment"] = ENVIRONMENT
    return {
        "$schema": DRAFT,
        "title": "plantgate tag map (config.yaml)",
        "description": (
            "Generated from plantgate's config models by `plantgate schema`. "
            "`plantgate validate` checks everything; this schema what JSON Schema can say."
        ),
        **{k: v for k, v in body.items() if k not in ("title", "description")},
    }


def schema_text() -> str:
    """The schema as the repository ships it (plantgate.schema.json)."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"


def _yaml_view(schema: dict[str, Any], kinds: list[tuple[Any, Any]]) -> dict[str, Any]:
    """One schema (and every schema inside it) put in the YAML's terms."""
    out = dict(schema)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if key in out:
            out[key] = [_yaml_view(branch, kinds) for branch in out[key]]
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _yaml_view(out[key], kinds)
    if "$defs" in out:
        out["$defs"] = {name: _yaml_view(s, kinds) for name, s in out["$defs"].items()}
    if "properties" in out:
        out["properties"] = {
            name: _with_environment(_yaml_view(s, kinds)) for name, s in out["properties"].items()
        }
    for name, keyword in _BOUNDS.items():
        if name in out:
            # Beside an anyOf these bound numbers only: a string such as "5m" is judged by
            # validate, after parsing.
            out[keyword] = out.pop(name)
    if "prefixItems" in out:  # draft 2020-12's tuples, written as draft 7 writes them
        out["items"] = out.pop("prefixItems")
    if out.get("format") == "path":  # pydantic's own name: validators warn of an unknown format
        del out["format"]
    if "description" in out:  # one line, and first: what a key is, then what it takes
        out = {"description": " ".join(out.pop("description").split()), **out}
    if isinstance(out.get("default"), dict):
        del out["default"]  # a section's default is its keys' defaults, each said at its key
    for branches, render in kinds:
        default = out.get("default")
        if out.get("anyOf") == branches and isinstance(default, int | float):
            out["default"] = render(default)
    return out


def _with_environment(schema: dict[str, Any]) -> dict[str, Any]:
    """A single value (not a section or list) may also be written as ``${VAR}``."""
    if "const" in schema or not _single_value(schema) or _any_text(schema):
        return schema
    notes: dict[str, Any] = {k: schema[k] for k in ("description", "default") if k in schema}
    rest = {k: v for k, v in schema.items() if k not in notes}
    if list(rest) == ["anyOf"]:
        return {"anyOf": [*rest["anyOf"], _ENVIRONMENT_REF], **notes}
    return {"anyOf": [rest, _ENVIRONMENT_REF], **notes}


def _single_value(schema: dict[str, Any]) -> bool:
    """True for a number, string, boolean or choice (and their nullable forms)."""
    if "$ref" in schema or schema.get("type") in ("object", "array"):
        return False
    return all(_single_value(branch) for branch in schema.get("anyOf", ()))


def _any_text(schema: dict[str, Any]) -> bool:
    """True when every string is accepted already (so ``${VAR}`` is too)."""
    if schema.get("type") == "string" and not {"pattern", "enum", "const"} & schema.keys():
        return True
    return any(_any_text(branch) for branch in schema.get("anyOf", ()))
