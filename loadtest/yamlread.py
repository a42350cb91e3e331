"""Reading YAML with line numbers: every value keeps the node it came from.

PyYAML's `compose` gives nodes with start marks; `Field` wraps one node with its dotted path
(`phases[1].rate`) so a validation error can say `smoke.yaml:14: phases[1].rate: ...`, which
is what a load-tester needs to fix a file without guessing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|m|min|h)?\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*/\s*(s|sec|m|min|h)\s*$")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, None: 1.0, "m": 60.0, "min": 60.0, "h": 3600.0,
           "sec": 1.0}
_BOOL_TRUE = {"true", "yes", "on", "y"}
_BOOL_FALSE = {"false", "no", "off", "n"}


class ScenarioError(ValueError):
    """A scenario file is wrong; the message names the file, the line and the key."""


class Field:
    """One YAML node, where it is (file, line) and how it was reached (path)."""

    __slots__ = ("file", "node", "path")

    def __init__(self, node: yaml.Node, path: str, file: str) -> None:
        self.node = node
        self.path = path
        self.file = file

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def error(self, message: str) -> ScenarioError:
        where = f"{self.path}: " if self.path else ""
        return ScenarioError(f"{self.file}:{self.line}: {where}{message}")

    def child(self, node: yaml.Node, key: str | int) -> Field:
        if isinstance(key, int):
            path = f"{self.path}[{key}]"
        else:
            path = f"{self.path}.{key}" if self.path else key
        return Field(node, path, self.file)

    # -- shapes ----------------------------------------------------------------------------

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.node, yaml.MappingNode)

    @property
    def is_sequence(self) -> bool:
        return isinstance(self.node, yaml.SequenceNode)

    @property
    def is_scalar(self) -> bool:
        return isinstance(self.node, yaml.ScalarNode)

    def mapping(self, allowed: tuple[str, ...] | None = None,
                required: tuple[str, ...] = ()) -> dict[str, Field]:
        """The keys of a mapping node; unknown or duplicate keys and missing ones are errors."""
        if not self.is_mapping:
            raise self.error(f"expected a mapping (key: value), got {self.kind()}")
        out: dict[str, Field] = {}
        for key_node, value_node in self.node.value:
            key_field = Field(key_node, self.path, self.file)
            if not isinstance(key_node, yaml.ScalarNode):
                raise key_field.error("keys must be plain names")
            key = str(key_node.value)
            if key in out:
                raise self.child(key_node, key).error("duplicate key")
            if allowed is not None and key not in allowed:
                raise self.child(key_node, key).error(
                    f"unknown key (expected one of: {', '.join(allowed)})")
            out[key] = self.child(value_node, key)
        for key in required:
            if key not in out:
                raise self.error(f"missing key {key!r}")
        return out

    def sequence(self, allow_empty: bool = False) -> list[Field]:
        if not self.is_sequence:
            raise self.error(f"expected a list, got {self.kind()}")
        items = [self.child(node, i) for i, node in enumerate(self.node.value)]
        if not items and not allow_empty:
            raise self.error("expected a non-empty list")
        return items

    def scalar(self) -> Any:
        """The value of a scalar node as YAML would resolve it (str, int, float, bool, None)."""
        if not self.is_scalar:
            raise self.error(f"expected a single value, got {self.kind()}")
        tag = self.node.tag
        text = str(self.node.value)
        if tag.endswith(":null"):
            return None
        if tag.endswith(":bool"):
            return text.lower() in _BOOL_TRUE
        if tag.endswith(":int"):
            try:
                return int(text.replace("_", ""), 0)
            except ValueError:
                return text
        if tag.endswith(":float"):
            try:
                return float(text.replace("_", ""))
            except ValueError:
                return text
        return text

    def string(self) -> str:
        value = self.scalar()
        if not isinstance(value, str) or not value:
            raise self.error(f"expected a non-empty text, got {value!r}")
        return value

    def number(self, minimum: float | None = None, positive: bool = False) -> float:
        value = self.scalar()
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"expected a number, got {value!r}")
        if positive and value <= 0:
            raise self.error(f"must be positive, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(f"must be at least {minimum:g}, got {value!r}")
        return float(value)

    def integer(self, minimum: int = 0) -> int:
        value = self.scalar()
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"expected a whole number, got {value!r}")
        if value < minimum:
            raise self.error(f"must be at least {minimum}, got {value}")
        return value

    def boolean(self) -> bool:
        value = self.scalar()
        if not isinstance(value, bool):
            raise self.error(f"expected true or false, got {value!r}")
        return value

    def kind(self) -> str:
        if self.is_mapping:
            return "a mapping"
        if self.is_sequence:
            return "a list"
        return repr(self.scalar())

    def __iter__(self) -> Iterator[Field]:
        return iter(self.sequence())


def compose(text: str, file: str) -> Field:
    """The root node of a YAML document; a syntax error names the line too."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = int(mark.line) + 1 if mark is not None else 1
        raise ScenarioError(f"{file}:{line}: YAML syntax: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{file}:1: YAML: {exc}") from None
    if node is None:
        raise ScenarioError(f"{file}:1: the file is empty")
    return Field(node, "", file)


def parse_duration(field: Field, allow_zero: bool = False) -> float:
    """`250ms`, `5s`, `2m`, `1h` or a bare number of seconds."""
    value = field.scalar()
    if isinstance(value, bool) or value is None:
        raise field.error(f"expected a duration like 5s or 200ms, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise field.error(f"expected a duration like 5s or 200ms, got {value!r}")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise field.error(f"must be {'at least 0' if allow_zero else 'positive'}, got {value!r}")
    return seconds


def parse_rate(field: Field, allow_zero: bool = False) -> float:
    """`50/s`, `300/m`, `2/h`: events per second."""
    value = field.scalar()
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None:
        raise field.error(f"expected a number like 50/s, got {value!r}")
    rate = float(match.group(1)) / _UNIT_S[match.group(2)]
    if rate == 0 and not allow_zero:
        raise field.error(f"must be more than 0/s, got {value!r}")
    return rate


def is_rate(field: Field) -> bool:
    value = field.scalar() if field.is_scalar else None
    return isinstance(value, str) and "/" in value
