"""Read a model YAML and turn every failure into one ``ModelConfigError`` naming file, key and problem.

A CSM ops person editing the YAML should be able to fix it from the message alone, so pydantic's
locations are translated into the dotted key path of the YAML (union tags dropped) and, when the text
is available, the line of that key.

``computable_signals`` (the ids the pipeline computes, passed in by the pipeline: the config layer does
not import it) makes a signal no code computes a load error instead of a column of NaN.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from healthscore.config.schema import (
    COMPUTABLE_SIGNALS_CONTEXT,
    ModelConfig,
    allowed_top_level_keys,
    describe_input,
)

DEFAULT_MODEL_RESOURCE = "default_model.yaml"
MAX_REPORTED_PROBLEMS = 25
# Keys an older release wrote into stored models (model_versions.config_yaml) that the schema no longer
# has; dropped from stored models only, so a model file that still sets them is told they are unknown.
RETIRED_KEYS: tuple[tuple[str, ...], ...] = (
    ("scoring", "model_probability", "model_name"),
    ("scoring", "model_probability", "calibration"),
)


@dataclass(frozen=True)
class ConfigProblem:
    key: str
    message: str
    line: int | None = None

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line is not None else source
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ModelConfigError(ValueError):
    """The one exception an invalid model config raises; ``problems`` keeps the structured detail."""

    def __init__(self, source: str, problems: Sequence[ConfigProblem]) -> None:
        self.source = str(source)
        self.problems = tuple(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        lines = [p.render(self.source) for p in self.problems[:MAX_REPORTED_PROBLEMS]]
        if len(self.problems) > MAX_REPORTED_PROBLEMS:
            lines.append(f"... and {len(self.problems) - MAX_REPORTED_PROBLEMS} more problems")
        if len(self.problems) == 1:
            return lines[0]
        return f"{self.source}: {len(self.problems)} problems in model config\n" + "\n".join(
            "  " + line for line in lines
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Default exception pickling replays args=(message,), which this __init__ can't take.
        return (self.__class__, (self.source, self.problems))


# ----------------------------------------------------------------------------------------------- YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML would silently keep the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable key: let SafeLoader raise its own error
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first defined on line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = ": ".join(part for part in (exc.context, exc.problem) if part)
        column = f" (column {mark.column + 1})" if mark is not None else ""
        line = mark.line + 1 if mark is not None else None
        raise ModelConfigError(
            source, [ConfigProblem("", f"YAML syntax error: {detail}{column}", line)]
        ) from None
    except yaml.YAMLError as exc:
        raise ModelConfigError(source, [ConfigProblem("", f"YAML syntax error: {exc}")]) from None
    finally:
        loader.dispose()
    return data, node


def _child(node: yaml.Node | None, part: str | int) -> tuple[yaml.Node | None, int | None]:
    """(value node, line of the key/item) of ``part`` under ``node``."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                return value_node, key_node.start_mark.line + 1
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item = node.value[part]
        return item, item.start_mark.line + 1
    return None, None


def _locate(loc: Sequence[str | int], data: Any, root: yaml.Node | None) -> tuple[str, int | None]:
    """Dotted YAML key path of a pydantic location, plus the line of the deepest key found."""
    parts: list[str] = []
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    current: Any = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if part == "[key]":
            continue
        present = (isinstance(current, Mapping) and part in current) or (
            isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        )
        if not present and not last and isinstance(current, Mapping) and current.get("type") == part:
            continue  # discriminated-union tag that pydantic inserts; not a key in the file
        parts.append(f"[{part}]" if isinstance(part, int) else (("." if parts else "") + str(part)))
        if present:
            current = current[part]
            node, found_line = _child(node, part)
            line = found_line or line
        else:
            current, node = None, None
    return "".join(parts), line


def _problem_text(err: Mapping[str, Any], loc: Sequence[str | int]) -> str:
    kind = err["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        if len(loc) == 1:
            return f"unknown top-level key; allowed: {', '.join(allowed_top_level_keys())}"
        return "unknown key (not part of the model schema)"
    if kind == "healthscore_config":
        return str(err["msg"])
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind.startswith("value_error") or isinstance(err.get("input"), Mapping | list):
        return message
    return f"{message} (got {describe_input(err.get('input'))})"


def _problems_from_validation(exc: ValidationError, data: Any, root: yaml.Node | None) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "union_tag_invalid":
            loc = (*loc, "type")
        key, line = _locate(loc, data, root)
        problems.append(ConfigProblem(key, _problem_text(err, loc), line))
    return problems


def _validate(data: Any, source: str, root: yaml.Node | None,
              computable_signals: Collection[str] | None = None) -> ModelConfig:
    if data is None:
        raise ModelConfigError(source, [ConfigProblem("", "the file is empty")])
    if not isinstance(data, Mapping):
        raise ModelConfigError(
            source,
            [ConfigProblem("", f"the top level must be a mapping of keys, got {describe_input(data)}", 1)],
        )
    context = None if computable_signals is None else {COMPUTABLE_SIGNALS_CONTEXT: frozenset(computable_signals)}
    try:
        return ModelConfig.model_validate(data, context=context)
    except ValidationError as exc:
        raise ModelConfigError(source, _problems_from_validation(exc, data, root)) from None


# --------------------------------------------------------------------------------------------- public


def validate_model_config_text(text: str, source_name: str = "<text>", *,
                               computable_signals: Collection[str] | None = None) -> ModelConfig:
    """Validate YAML text (e.g. a file the CLI was pointed at); errors name ``source_name``."""
    data, root = _parse_yaml(text, source_name)
    return _validate(data, source_name, root, computable_signals)


def model_config_from_dict(data: Mapping[str, Any], source_name: str = "<dict>", *,
                           computable_signals: Collection[str] | None = None,
                           stored: bool = False) -> ModelConfig:
    """Validate an already-parsed mapping (recalibration builds challengers this way).

    ``stored=True``: a model read back from the registry, which may carry ``RETIRED_KEYS``.
    """
    if stored:
        data = _without_retired_keys(data)
    return _validate(data, source_name, None, computable_signals)


def _without_retired_keys(data: Mapping[str, Any]) -> Mapping[str, Any]:
    def drop(node: Any, path: tuple[str, ...]) -> Any:
        if not isinstance(node, Mapping):
            return node
        return {k: drop(v, (*path, k)) for k, v in node.items() if (*path, k) not in RETIRED_KEYS}

    return drop(data, ())


def default_model_text() -> str:
    """The packaged default model, read through importlib.resources so it works from a wheel."""
    return resources.files("healthscore.config").joinpath(DEFAULT_MODEL_RESOURCE).read_text(encoding="utf-8")


def load_model_config(path: Path | str | None = None, *,
                      computable_signals: Collection[str] | None = None) -> ModelConfig:
    """Load and validate a model YAML; ``None`` loads the packaged default."""
    if path is None:
        resource = resources.files("healthscore.config").joinpath(DEFAULT_MODEL_RESOURCE)
        return validate_model_config_text(default_model_text(), str(resource), computable_signals=computable_signals)
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelConfigError(source, [ConfigProblem("", "file not found")]) from None
    except IsADirectoryError:
        raise ModelConfigError(source, [ConfigProblem("", "is a directory, not a YAML file")]) from None
    except UnicodeDecodeError as exc:
        raise ModelConfigError(source, [ConfigProblem("", f"not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise ModelConfigError(
            source, [ConfigProblem("", f"cannot read file: {exc.strerror or exc}")]
        ) from None
    return validate_model_config_text(text, source, computable_signals=computable_signals)
