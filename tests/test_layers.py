"""The package layers (docs/architecture.md, "Package layers"), read from the source with ast.

Every import of every module counts: at the top, inside functions, under TYPE_CHECKING, and
relative ones. A layer rule is one row of `RULES`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = ("protocol", "runtime", "storage", "push", "server", "client", "loadtest")


@dataclass(frozen=True)
class Rule:
    """Modules under `importer` import none under any of `forbidden` (dotted prefixes)."""

    importer: str
    forbidden: tuple[str, ...]
    why: str


def others(*allowed: str) -> tuple[str, ...]:
    return tuple(package for package in OURS if package not in allowed)


TRANSPORT = ("server.edge", "websockets", "fastapi", "starlette", "uvicorn")

RULES = (
    Rule("protocol", others("protocol"), "the wire contract is pure: no I/O, nothing of ours"),
    Rule("runtime", others("runtime"), "the shared helpers are a leaf that everyone imports"),
    Rule("storage", ("server",), "the store knows nothing of the node above it"),
    Rule("push", ("server",), "push is used by the node, and uses only what is below it"),
    Rule("server.services", TRANSPORT, "a service answers a Caller; the gateway and the HTTP "
         "API both call it, so it knows neither"),
    Rule("server.backends", (*TRANSPORT, "server.services", "server.compose", "server.node"),
         "the shared state is below the services: they call it, never the other way"),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """The dotted names `source` (the text of `module`) imports, relative ones resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def modules(prefix: str) -> list[tuple[str, Path]]:
    root = REPO.joinpath(*prefix.split("."))
    paths = sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]
    return [(module_name(path), path) for path in paths]


def breaches(rule: Rule) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, path in modules(rule.importer):
        names = imports_of(path.read_text(encoding="utf-8"), name,
                           is_package=path.name == "__init__.py")
        bad = sorted(n for n in names if any(under(n, f) for f in rule.forbidden))
        if bad:
            out[name] = bad
    return out


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.importer)
def test_layer(rule: Rule) -> None:
    assert modules(rule.importer), f"{rule.importer} has no modules: a stale rule"
    assert breaches(rule) == {}, f"{rule.importer} must not import {rule.forbidden}: {rule.why}"


def test_the_reader_sees_every_kind_of_import() -> None:
    """The layer tests pass only if the reader would have seen the import."""
    source = """
import server.node
from server import gateway
from . import codec
from ..runtime.tasks import stop_tasks
def later():
    import storage
if TYPE_CHECKING:
    from push.queue import PushJob
"""
    names = imports_of(source, "protocol.sub.frames")
    assert {"server.node", "server", "server.gateway", "protocol.sub", "protocol.sub.codec",
            "protocol.runtime.tasks", "storage", "push.queue"} <= names
    assert "protocol.codec" in imports_of("from . import codec", "protocol", is_package=True)
    assert breaches(Rule("server", ("push",), "a rule that the node breaks")), \
        "server imports push: a rule against it must fail"
