"""docker-compose.yaml read the way Compose reads it: YAML anchors and merges, then ``${VARIABLE}`` interpolation.

deploy/native.py builds its processes from this, and tests/unit/test_compose.py checks the file with it, so the
compose stack and the native topology come from one description.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt}, $NAME; $$ is a dollar.
_VARIABLE = re.compile(r"\$(?:(\$)|\{(\w+)(?:(:?[-?+])((?:[^{}]|\{[^{}]*\})*))?\}|(\w+))")


class ComposeError(ValueError):
    """A compose file that Compose itself would refuse (a required variable unset, a bad reference)."""


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """One string interpolated with Compose's rules (the subset of the Compose specification this file uses)."""
    def replace(match: re.Match[str]) -> str:
        dollar, braced, op, arg, bare = match.groups()
        if dollar:
            return "$"
        name = braced or bare
        current = variables.get(name)
        if not op:
            return current or ""
        empty_counts = op.startswith(":")
        unset = current is None or (empty_counts and current == "")
        if op.endswith("-"):
            return interpolate(arg, variables) if unset else current
        if op.endswith("?"):
            if unset:
                raise ComposeError(f"required variable {name} is missing: {arg}")
            return current
        return "" if unset else interpolate(arg, variables)  # :+ / +

    return _VARIABLE.sub(replace, value)


def _interpolate_tree(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolate_tree(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, variables) for key, value in node.items()}
    return node


def load_raw(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The file after YAML anchors and merge keys, before interpolation."""
    return yaml.safe_load(path.read_text())


def load(variables: Mapping[str, str], path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The file as Compose sees it with these variables (an ``.env``)."""
    return _interpolate_tree(load_raw(path), variables)


def variables_referenced(path: Path = COMPOSE_FILE) -> set[str]:
    """Every variable the file reads (``$$NAME`` is a literal for the container's shell, not a variable)."""
    names = set()
    for match in _VARIABLE.finditer(path.read_text()):
        dollar, braced, _op, arg, bare = match.groups()
        if not dollar:
            names.add(braced or bare)
            names |= {m.group(2) or m.group(5) for m in _VARIABLE.finditer(arg or "") if not m.group(1)}
    return names


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv file (comments and blank lines skipped), as Compose reads ``.env``."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"\w+", key.strip()):
            raise ComposeError(f"{path}:{number}: not KEY=VALUE: {line!r}")
        values[key.strip()] = value.strip()
    return values


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a dict (Compose accepts a mapping or a list of KEY=VALUE)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command(service: Mapping[str, Any]) -> list[str]:
    """A service's command as argv (a string is split like a shell would)."""
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def image_copies(path: Path = DOCKERFILE) -> dict[str, Path]:
    """Paths inside the image that are copies of repository paths (the Dockerfile's COPY lines), image -> repo."""
    copies = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts or parts[0] != "COPY":
            continue
        args = [p for p in parts[1:] if not p.startswith("--")]
        *sources, dest = args
        for source in sources:
            target = dest.rstrip("/") + "/" + Path(source).name if dest.endswith("/") else dest
            copies[target] = REPO / source
    return copies
