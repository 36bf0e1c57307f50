"""The one config system: pydantic v2 models that refuse unknown keys and wrong types with one clear message.

Every configuration of the project (model, preprocessing, baseline, segmenter, renderer, training, server)
is a :class:`Config`. YAML is the user-facing format (:func:`load_yaml`), ``key=value`` strings override it
(:func:`apply_overrides`), and checkpoints store :meth:`Config.to_dict` as JSON.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from crnn.errors import ConfigError

C = TypeVar("C", bound="Config")

MAX_CONFIG_BYTES = 16 << 20  # a config is a few kB; a bigger file is something else (a checkpoint, an image)


class FieldProblem(ValueError):
    """Raised by a validator that checks several keys together, to report one of them by name.

    ``key`` is dotted and relative to the config whose validator raises it (``data.min_width`` from the
    training config, ``min_width`` from the data section); the message reads
    ``<kind> config key '<prefix.key>': <message> (got <value>)``.
    """

    def __init__(self, key: str, message: str, value: Any) -> None:
        super().__init__(message)
        self.key, self.value = key, value


def _where(loc: tuple[Any, ...], prefix: str) -> str:
    # ('data', 'sources', 0, 'weight') -> "data.sources[0].weight"
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f"{'.' if out else ''}{part}"
    return out or "(top level)"


def describe_validation_error(e: ValidationError, kind: str = "config", prefix: str = "") -> str:
    """One line naming the first bad key of ``e`` (and how many more there are)."""
    errors = e.errors(include_url=False)
    first = errors[0]
    # A union or a tagged type adds its member's name to loc (e.g. 'int' or 'function-after[...]'); drop those.
    loc = tuple(p for p in first["loc"] if isinstance(p, int) or ("[" not in p and p not in _TYPE_NAMES))
    # A validator's own ValueError reads as its text, without pydantic's "Value error, " in front.
    ctx = first.get("ctx", {})
    text = str(ctx["error"]) if first["type"] == "value_error" and "error" in ctx else first["msg"]
    got = first["input"]
    if isinstance(ctx.get("error"), FieldProblem):  # a joint check that names the key at fault
        loc, got = loc + tuple(ctx["error"].key.split(".")), ctx["error"].value
    key = _where(loc, prefix)
    if first["type"] == "extra_forbidden":
        msg = f"unknown {kind} config key '{key}'"
    elif first["type"] == "missing":
        msg = f"{kind} config key '{key}' is required"
    elif not loc and not prefix:
        msg = f"{kind} config: {text}"  # a check of several keys together (a model validator)
    else:
        msg = f"{kind} config key '{key}': {text} (got {got!r})"
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return msg


_TYPE_NAMES = {"int", "float", "str", "bool", "list", "dict", "tuple", "none", "literal", "is-instance"}


class _RaisesConfigError(type(BaseModel)):  # type: ignore[misc]
    # Constructing a config (``ModelConfig(cell="x")``) raises ConfigError, not pydantic's ValidationError. This
    # sits on the metaclass, not in __init__: pydantic would call an __init__ for nested configs too and wrap
    # its error, where a nested bad key must be reported with its full path ("data.sources[0].weight").
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as e:
            raise ConfigError(describe_validation_error(e, cls.kind)) from None


class Config(BaseModel, metaclass=_RaisesConfigError):
    """Base of every config: unknown keys are errors; a bad value raises ConfigError naming its key."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)

    kind: ClassVar[str] = "config"  # names the config in error messages ("unknown model config key ...")

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as e:
            raise ConfigError(describe_validation_error(e, self.kind)) from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field, in declaration order (tuples as lists, nested configs as dicts)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any] | None) -> C:
        """Rebuild from :meth:`to_dict` (or a YAML mapping); unknown keys and wrong types raise ConfigError."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"a {cls.kind} config must be a mapping of keys to values, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(describe_validation_error(e, cls.kind)) from None

    @classmethod
    def from_yaml(cls: type[C], path: str | os.PathLike | None, overrides: list[str] | None = None) -> C:
        """Load a YAML file (None: the defaults) with ``key=value`` overrides applied (see :func:`apply_overrides`)."""
        data = load_yaml(path) if path is not None else {}
        return cls.from_dict(apply_overrides(data, overrides or [], cls.parse_override))

    def with_overrides(self: C, overrides: list[str]) -> C:
        """A copy with ``key=value`` overrides applied (validated like a file)."""
        return type(self).from_dict(apply_overrides(self.to_dict(), overrides, self.parse_override))

    def replace(self: C, **changes: Any) -> C:
        """A validated copy with ``changes`` applied (``model_copy(update=...)`` would not validate them)."""
        return type(self)(**{**dict(self), **changes})

    @classmethod
    def parse_override(cls, key: str, text: str) -> Any:
        """The value of ``key=text`` (``key`` dotted in full): YAML by default; subclasses may refine it."""
        return parse_value(text)


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a YAML file; ConfigError (one line naming the file) for a missing, unreadable, binary or
    non-UTF-8 file, bad YAML or a non-mapping."""
    import yaml  # only configs read from files need it

    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not a config file")
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the config file ({e.strerror or e})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: over {MAX_CONFIG_BYTES >> 20} MiB, not a YAML config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not a UTF-8 text file (byte 0x{raw[e.start]:02x} at offset {e.start}), "
                          "so not a YAML config") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML{where}: {e.problem or e.context}") from None
    except yaml.reader.ReaderError as e:  # a control character: a binary file that happens to be valid UTF-8
        char = e.character if isinstance(e.character, int) else ord(e.character)
        raise ConfigError(f"{p}: not a YAML text file (control character U+{char:04X} at character "
                          f"{e.position})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {' '.join(str(e).split())}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{p}: a config must be a mapping of sections, got {type(loaded).__name__}")
    return loaded or {}


def save_yaml(config: Config, path: str | os.PathLike) -> None:
    """Write a config as YAML (every value, resolved)."""
    import yaml

    text = yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
    Path(path).write_text(text, encoding="utf-8")


def parse_value(text: str) -> Any:
    """A command-line value parsed as YAML (numbers, booleans, null, [lists], {maps}); else the raw string."""
    import yaml

    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_overrides(
    data: dict[str, Any], overrides: list[str], parse: Callable[[str, str], Any] | None = None
) -> dict[str, Any]:
    """``data`` with ``key=value`` strings applied; dotted keys reach into sections (``model.backbone=full``).

    ``parse(key, text)`` turns a value's text into a value, ``key`` dotted in full (default: :func:`parse_value`, YAML).
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {item!r}")
        parts = key.split(".")
        node = data
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"config key '{key}': '{p}' is not a section")
            node = child
        node[parts[-1]] = parse(key, text) if parse is not None else parse_value(text)
    return data
