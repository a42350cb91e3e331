"""Building the one `Config` from a TOML file, the environment and command-line flags.

Precedence: flags, then `RENDEZVOUS_<KEY>` environment variables, then the file, then the
defaults. Every key is checked against the `Config` field of that name, and an error names
the key and where it came from, so an operator knows exactly what to fix.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from protocol.limits import Limits
from server.config import SECRET_ENV, Config, ConfigError, JwtKey, hs256_secret

ENV_PREFIX = "RENDEZVOUS_"
# Keys that are not Config fields but build one: public JWT keys and the HS256 switch.
EXTRA_KEYS = {"jwt_public_keys", "jwt_hs256"}
NOT_SETTABLE = {"jwt_keys"}  # built from the keys above


def _fields() -> dict[str, Any]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)
            if f.name not in NOT_SETTABLE}


def coerce(key: str, kind: Any, value: Any, source: str) -> Any:
    """`value` (TOML-typed, or a string from the environment) as a value of `kind`."""
    where = f"{key} (from {source})"
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None or (isinstance(value, str) and value == "" and source == "env"):
            return None
        return coerce(key, options[0], value, source)
    if kind is bool:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return kind(value) if isinstance(value, str) or kind is float else _int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {'an integer' if kind is int else 'a number'}"
                              f", got {value!r}") from None
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if kind is Path:
        return Path(coerce(key, str, value, source))
    if origin is tuple:
        args = typing.get_args(kind)
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = [i.strip() if isinstance(i, str) else i for i in items if i != ""]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(key, args[0], i, source) for i in items)
        if len(items) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(coerce(key, a, i, source) for a, i in zip(args, items, strict=True))
    if kind is Limits:
        return _limits(value, source)
    raise ConfigError(f"{where}: cannot be set here")


def _int(value: Any) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(value)


def _limits(value: Any, source: str) -> Limits:
    if not isinstance(value, Mapping):
        raise ConfigError(f"limits (from {source}): expected a table")
    hints = typing.get_type_hints(Limits)
    known = {f.name for f in dataclasses.fields(Limits)}
    changes = {}
    for key, item in value.items():
        if key not in known:
            raise ConfigError(f"limits.{key} (from {source}): unknown key; known: "
                              f"{', '.join(sorted(known))}")
        changes[key] = coerce(f"limits.{key}", hints[key], item, source)
    return dataclasses.replace(Limits(), **changes)


def from_file(path: Path) -> dict[str, Any]:
    """The file's settings, each checked against its Config field."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return _check(raw, f"file {path}")


def from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """`RENDEZVOUS_<KEY>` variables (the JWT secret variable is read elsewhere)."""
    known = set(_fields()) | EXTRA_KEYS
    raw = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in (SECRET_ENV, "RENDEZVOUS_WORKER"):
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key in known:
            raw[key] = value
    return _check(raw, "env")


def _check(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    fields = _fields()
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "jwt_public_keys":
            out[key] = coerce(key, tuple[str, ...], value, source)
        elif key == "jwt_hs256":
            out[key] = coerce(key, bool, value, source)
        elif key == "demo_enabled":  # TOML true/false, or "auto"/"true"/"false" in any case
            out[key] = (str(value).lower() if isinstance(value, bool)
                        else coerce(key, str, value, source).strip().lower())
        elif key in fields:
            out[key] = coerce(key, fields[key], value, source)
        else:
            raise ConfigError(f"{key} (from {source}): unknown setting; see "
                              "rendezvous.sample.toml for every key")
    return out


def public_key(spec: str, source: str) -> JwtKey:
    """ALG:PATH of a PEM public key."""
    alg, sep, path = spec.partition(":")
    if not sep:
        raise ConfigError(f"jwt_public_keys (from {source}): {spec!r} is not ALG:PATH")
    try:
        return JwtKey(alg, Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"jwt_public_keys (from {source}): cannot read {path}: "
                          f"{exc.strerror}") from None


def load(config_file: Path | None, flags: Mapping[str, Any],
         environ: Mapping[str, str] = os.environ, *,
         create_secret: bool = True) -> tuple[Config, str]:
    """The validated config, and where the HS256 secret came from (for the banner).

    With `create_secret=False` (checking a file) no dev secret is written to the data dir.
    """
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}  # where each value came from, for validate()'s errors
    layers = [(f"file {config_file}", from_file(config_file))] if config_file else []
    layers += [("env", from_env(environ)),
               ("flags", {k: v for k, v in flags.items() if v is not None})]
    for source, layer in layers:
        values.update(layer)
        origins.update(dict.fromkeys(layer, source))
    specs = values.pop("jwt_public_keys", ())
    keys = [public_key(spec, "settings") for spec in specs]
    origin = "public keys only"
    if values.pop("jwt_hs256", True):
        data_dir = Path(values.get("data_dir", Config.__dataclass_fields__["data_dir"].default))
        if create_secret or environ.get(SECRET_ENV) or (data_dir / "jwt-secret").exists():
            secret, origin = hs256_secret(data_dir, environ)
        else:
            secret, origin = "0" * 32, f"a dev secret to be created in {data_dir}"
        keys.insert(0, JwtKey("HS256", secret))
    try:
        return Config(jwt_keys=tuple(keys), **values).validate(), origin
    except ConfigError as error:
        raise ConfigError(_with_origin(str(error), origins)) from None


def _with_origin(message: str, origins: Mapping[str, str]) -> str:
    """validate()'s messages start with the key they blame: add where its value came from."""
    key = re.split(r"[\s:]", message, maxsplit=1)[0]
    return f"{message} (from {origins[key]})" if key in origins else message
