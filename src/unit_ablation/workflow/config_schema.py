"""The config's JSON schema: validation that fills the defaults, with one clear message per fault.

Each message names the key path, the bad value and what the schema accepts (generated from the
schema: types, ranges, enums, patterns); unknown keys get a "did you mean" suggestion, and a key
of an older config format (`RENAMED_KEYS`) the name that replaced it. Imports no torch and no
Snakemake.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

MAX_REPR = 100
MAX_LISTED = 20
# Keys renamed since an earlier config format, the one table of them: old key path -> (new key path,
# the format version of the recorded config, `files.formats` "study config", that renamed it).
RENAMED_KEYS: dict[str, tuple[str, int]] = {
    "correlation.bootstrap": ("correlation.resamples", 2),
}


def load_schema(path: str | Path) -> dict:
    """The config schema (YAML or JSON)."""
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _with_defaults(validator_class: type) -> type:
    """A validator that fills `default`s of absent properties while validating, as
    `snakemake.utils.validate` does (the rules rely on filled defaults)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        for name, subschema in properties.items():
            if "default" in subschema and isinstance(instance, dict):
                instance.setdefault(name, subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def key_path(parts: Iterable[Any]) -> str:
    """`ablation.chunk_size`, `analysis.layers[1]`; `(top level)` for the root."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _join(path: str, key: str) -> str:
    return key if path == "(top level)" else f"{path}.{key}"


def show(value: Any) -> str:
    """repr of a config value, shortened."""
    text = repr(value)
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def _bounds(schema: dict) -> list[str]:
    bounds = []
    for key, sign in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ):
        if key in schema:
            bounds.append(f"{sign} {schema[key]:g}")
    return bounds


def describe(schema: dict, root: dict) -> str:
    """What a schema accepts, in words: `an integer >= 1, or 'auto'`."""
    if "$ref" in schema:
        return describe(_resolve(schema["$ref"], root), root)
    if "const" in schema:
        return show(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(show(value) for value in schema["enum"])
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return ", or ".join(describe(branch, root) for branch in schema[key])
    types = schema.get("type", ["string"] if "pattern" in schema else [])
    types = [types] if isinstance(types, str) else list(types)
    return " or ".join(_describe_type(kind, schema, root) for kind in types) or "anything"


def _describe_type(kind: str, schema: dict, root: dict) -> str:
    if kind in ("integer", "number"):
        return " ".join(
            ["an integer" if kind == "integer" else "a number", " and ".join(_bounds(schema))]
        ).strip()
    if kind == "string":
        return f"a string matching {schema['pattern']}" if "pattern" in schema else "a string"
    if kind == "boolean":
        return "true or false"
    if kind == "null":
        return "null"
    if kind == "array":
        words = ["a list of"]
        if schema.get("minItems"):
            words.append(f"at least {schema['minItems']}")
        if schema.get("uniqueItems"):
            words.append("unique")
        words.append("items")
        if "items" in schema:
            words[-1] += f", each {describe(schema['items'], root)}"
        return " ".join(words)
    if kind == "object":
        properties = schema.get("properties", {})
        if properties:
            return "a mapping with keys " + ", ".join(properties)
        if isinstance(schema.get("additionalProperties"), dict):
            return f"a mapping of names to ({describe(schema['additionalProperties'], root)})"
        return "a mapping"
    return kind


def _resolve(reference: str, root: dict) -> dict:
    node: Any = root
    for part in reference.lstrip("#/").split("/"):
        node = node[part]
    return node


def renamed_key_message(old: str) -> str:
    """The fault of a config that uses `old`, a key path of `RENAMED_KEYS`."""
    new, version = RENAMED_KEYS[old]
    return (
        f"`{old}` was renamed to `{new}` in unit-ablation config format {version}: rename it in your config"
    )


def _renamed_present(instance: Any, path: str) -> set[str]:
    """The new key paths whose old names (`RENAMED_KEYS`) the mapping at `path` uses: a missing new
    key is named by the old key's message, not twice."""
    if not isinstance(instance, dict):
        return set()
    old_paths = [_join(path, str(key)) for key in instance]
    return {RENAMED_KEYS[old][0] for old in old_paths if old in RENAMED_KEYS}


def _unknown_keys(error: ValidationError, path: str) -> Iterator[str]:
    allowed = list(error.schema.get("properties", {}))
    for key in error.instance:
        if key in allowed:
            continue
        if _join(path, str(key)) in RENAMED_KEYS:
            yield renamed_key_message(_join(path, str(key)))
            continue
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f"did you mean `{close[0]}`?" if close else f"accepted keys: {', '.join(allowed)}"
        yield f"unknown key `{_join(path, str(key))}`; {hint}"


def _schema_messages(error: ValidationError, root: dict) -> Iterator[str]:
    path = key_path(error.absolute_path)
    if "propertyNames" in error.schema_path:
        accepted = f"names matching {error.schema['pattern']}" if "pattern" in error.schema else "other names"
        yield f"{path}: name {show(error.instance)} is not accepted (accepted: {accepted})"
    elif error.validator == "additionalProperties" and error.schema.get("additionalProperties") is False:
        yield from _unknown_keys(error, path)
    elif error.validator == "required":
        properties = error.schema.get("properties", {})
        renamed = _renamed_present(error.instance, path)
        for name in error.validator_value:
            if name not in error.instance and _join(path, name) not in renamed:
                accepted = describe(properties[name], root) if name in properties else "any value"
                yield f"missing key `{_join(path, name)}` (accepted: {accepted})"
    elif error.validator == "uniqueItems":
        seen, repeated = [], []
        for item in error.instance:
            (repeated if item in seen and item not in repeated else seen).append(item)
        yield (
            f"{path}: {show(error.instance)} repeats {', '.join(show(item) for item in repeated)}"
            f" (accepted: {describe(error.schema, root)})"
        )
    else:
        yield f"{path}: {show(error.instance)} is not accepted (accepted: {describe(error.schema, root)})"


def schema_faults(config: dict, schema: dict, set_defaults: bool = True) -> list[tuple[str, str]]:
    """(key path, message) per schema fault, ordered by key; fills schema defaults into `config`."""
    validator_class = _with_defaults(Draft202012Validator) if set_defaults else Draft202012Validator
    errors = sorted(
        validator_class(schema).iter_errors(config), key=lambda error: [str(p) for p in error.absolute_path]
    )
    faults: list[tuple[str, str]] = []
    for error in errors:
        path = key_path(error.absolute_path)
        for message in _schema_messages(error, schema):
            if error.validator == "required":  # the missing key's own path
                path = message.split("`")[1]
            if all(message != known for _, known in faults):
                faults.append((path, message))
    return faults


def schema_problems(config: dict, schema: dict, set_defaults: bool = True) -> list[str]:
    """One message per schema fault, ordered by key; fills schema defaults into `config`."""
    return [message for _, message in schema_faults(config, schema, set_defaults)]
