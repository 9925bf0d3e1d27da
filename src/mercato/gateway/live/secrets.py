"""Secrets from the environment in the config file, and keeping them out of what the gateway prints.

A config file is checked in, copied and pasted into tickets; the keys it needs (backend API
keys, buyers' keys, Redis and PostgreSQL URLs with passwords) belong in the environment. Any
string of the file, mapping keys included, may say ``${VAR}`` (expanded in place; ``$${VAR}`` is
a literal ``${VAR}``), or be exactly ``os.environ/VAR`` (LiteLLM's spelling). Expansion happens
once, at load time, so the rest of the gateway only ever sees plain values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

_REFERENCE = re.compile(r"\$(\$?)\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WHOLE = "os.environ/"


class UnsetVariable(ValueError):
    """A ``${VAR}`` names a variable that is not set (or is not a valid name); ``where`` is the field."""

    def __init__(self, where: str, variable: str, problem: str = "is not set") -> None:
        super().__init__(f"{where or '(top level)'}: environment variable {variable} {problem}")
        self.where = where
        self.variable = variable


def expand_secrets(data: Any, environ: Mapping[str, str] | None = None, where: str = "") -> Any:
    """``data`` (parsed YAML) with every environment reference expanded; raises :class:`UnsetVariable`."""
    env = os.environ if environ is None else environ
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            path = f"{where}.{key}" if where else str(key)
            new_key = _expand(key, env, path) if isinstance(key, str) else key
            out[new_key] = expand_secrets(value, env, path)
        return out
    if isinstance(data, list):
        return [expand_secrets(item, env, f"{where}.{i}" if where else str(i)) for i, item in enumerate(data)]
    if isinstance(data, str):
        return _expand(data, env, where)
    return data


def _expand(text: str, env: Mapping[str, str], where: str) -> str:
    if text.startswith(_WHOLE):
        return _lookup(text.removeprefix(_WHOLE), env, where)

    def one(match: re.Match[str]) -> str:
        if match.group(1):  # $${VAR}: the reference itself, unexpanded
            return "${" + match.group(2) + "}"
        return _lookup(match.group(2), env, where)

    return _REFERENCE.sub(one, text)


def _lookup(name: str, env: Mapping[str, str], where: str) -> str:
    if not _NAME.match(name):
        raise UnsetVariable(where, repr(name), "is not a valid variable name")
    value = env.get(name)
    if value is None:
        raise UnsetVariable(where, name)
    return value

