"""Frozen configs that import no pydantic: for the configs the inference path reads (PreprocessConfig).

``import pydantic`` and the building of a model class cost ~0.1 s of a ~0.6 s `crnn ocr` start-up. A
:class:`FrozenConfig` has :class:`crnn.config.Config`'s interface (keyword construction, ``kind``, ``to_dict``,
``from_dict``, ``from_yaml``, ``with_overrides``, ``replace``; frozen, hashable, comparable, picklable) and its
behaviour: values that are plainly valid (the field's exact type, within its bounds, no unknown key) are taken
as they are, which is what pydantic would do with them; anything else goes through the equivalent pydantic
``Config`` subclass, built from the same fields on first need, so that coercions (``"32"`` -> 32) and the
ConfigError messages are pydantic's, word for word.
"""

from __future__ import annotations

import operator
import os
import threading
from collections.abc import Iterator
from typing import Any, ClassVar, TypeVar

from crnn.errors import ConfigError

F = TypeVar("F", bound="FrozenConfig")

# The field types a FrozenConfig may declare (annotations are strings under `from __future__ import annotations`).
_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}
# pydantic's bound constraints, as the comparisons a plainly valid value passes.
_BOUNDS = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}


class Setting:
    """One field of a FrozenConfig: its default, bounds (``ge``, ``gt``, ``le``, ``lt``, as pydantic's ``Field``)
    and ``exclude`` (left out of :meth:`FrozenConfig.to_dict`, as pydantic's ``Field(exclude=True)``)."""

    def __init__(self, default: Any, *, exclude: bool = False, **bounds: Any) -> None:
        unknown = set(bounds) - set(_BOUNDS)
        if unknown:
            raise TypeError(f"Setting: unknown bound(s) {sorted(unknown)}; known: {sorted(_BOUNDS)}")
        self.default, self.exclude, self.bounds = default, exclude, bounds
        self.name, self.type = "", object  # set by FrozenConfig.__init_subclass__


class FrozenConfig:
    """Base of the pydantic-free frozen configs: declare ``name: int = Setting(default, ge=1)`` and a ``kind``."""

    kind: ClassVar[str] = "config"  # names the config in error messages ("unknown preprocess config key ...")
    _settings: ClassVar[dict[str, Setting]] = {}
    _model: ClassVar[Any] = None  # the equivalent pydantic Config subclass, once built
    _model_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        settings = dict(cls._settings)
        for name, value in list(vars(cls).items()):
            if isinstance(value, Setting):
                annotation = vars(cls).get("__annotations__", {}).get(name)
                kind = _TYPES.get(annotation) if isinstance(annotation, str) else annotation
                if kind not in _TYPES.values():
                    raise TypeError(f"{cls.__name__}.{name}: a FrozenConfig field is int, float, bool or str, "
                                    f"not {annotation!r}")
                value.name, value.type = name, kind
                settings[name] = value
                delattr(cls, name)  # instances hold the values; the class, as a pydantic model, holds none
        cls._settings, cls._model = settings, None

    def __init__(self, **values: Any) -> None:
        for name, value in self._validated(values).items():
            object.__setattr__(self, name, value)

    @classmethod
    def _plain(cls, data: dict[Any, Any]) -> dict[str, Any] | None:
        """Every field's value when ``data`` is plainly valid (what pydantic would keep as is), else None."""
        settings = cls._settings
        if not all(isinstance(k, str) and k in settings for k in data):
            return None
        out = {}
        for name, s in settings.items():
            if name not in data:
                out[name] = s.default
                continue
            v = data[name]
            if type(v) is not s.type or not all(_BOUNDS[b](v, bound) for b, bound in s.bounds.items()):
                return None
            out[name] = v
        return out

    @classmethod
    def _validated(cls, data: dict[Any, Any]) -> dict[str, Any]:
        """Every field's value from ``data`` (validated; ConfigError naming the key otherwise)."""
        plain = cls._plain(data)
        if plain is not None:
            return plain
        return dict(cls.pydantic_model().from_dict(data))  # coerced by pydantic, or its ConfigError

    @classmethod
    def pydantic_model(cls) -> Any:
        """The equivalent pydantic :class:`crnn.config.Config` subclass (same fields, bounds and ``kind``), built
        on first use: it validates (and coerces) what is not plainly valid, with pydantic's messages."""
        with cls._model_lock:
            if cls.__dict__.get("_model") is None:
                from pydantic import ConfigDict, Field

                from crnn.config import Config

                namespace: dict[str, Any] = {
                    "__module__": cls.__module__, "__qualname__": cls.__qualname__, "kind": cls.kind,
                    "model_config": ConfigDict(frozen=True),
                    "__annotations__": {name: s.type for name, s in cls._settings.items()},
                }
                for name, s in cls._settings.items():
                    namespace[name] = Field(s.default, **({"exclude": True} if s.exclude else {}), **s.bounds)
                cls._model = type(Config)(cls.__name__, (Config,), namespace)
            return cls._model

    def __setattr__(self, name: str, value: Any) -> None:
        # pydantic's frozen-instance error, in Config's one-line message
        raise ConfigError(f"{self.kind} config key '{name}': Instance is frozen (got {value!r})")

    def __delattr__(self, name: str) -> None:
        raise ConfigError(f"{self.kind} config: cannot delete {name!r}, the config is frozen")

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        """(name, value) of every field, in declaration order (as a pydantic model iterates)."""
        return ((name, getattr(self, name)) for name in self._settings)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return tuple(self) == tuple(other)  # type: ignore[arg-type]

    def __hash__(self) -> int:
        return hash((type(self), tuple(self)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self)})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field not excluded, in declaration order (as Config.to_dict)."""
        return {name: getattr(self, name) for name, s in self._settings.items() if not s.exclude}

    @classmethod
    def from_dict(cls: type[F], data: dict[str, Any] | None) -> F:
        """Rebuild from :meth:`to_dict` (or a YAML mapping); unknown keys and wrong types raise ConfigError."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"a {cls.kind} config must be a mapping of keys to values, got {type(data).__name__}")
        return _rebuild(cls, cls._validated(data))

    @classmethod
    def from_yaml(cls: type[F], path: str | os.PathLike | None, overrides: list[str] | None = None) -> F:
        """Load a YAML file (None: the defaults) with ``key=value`` overrides applied (as Config.from_yaml)."""
        from crnn.config import apply_overrides, load_yaml

        data = load_yaml(path) if path is not None else {}
        return cls.from_dict(apply_overrides(data, overrides or [], cls.parse_override))

    def with_overrides(self: F, overrides: list[str]) -> F:
        """A copy with ``key=value`` overrides applied (validated like a file)."""
        from crnn.config import apply_overrides

        return type(self).from_dict(apply_overrides(self.to_dict(), overrides, self.parse_override))

    def replace(self: F, **changes: Any) -> F:
        """A validated copy with ``changes`` applied."""
        return type(self)(**{**dict(self), **changes})

    @classmethod
    def parse_override(cls, key: str, text: str) -> Any:
        """The value of ``key=text``: YAML (as Config.parse_override)."""
        from crnn.config import parse_value

        return parse_value(text)


def _rebuild(cls: type[F], values: dict[str, Any]) -> F:
    """An instance of ``cls`` holding ``values`` (already validated)."""
    obj = cls.__new__(cls)
    for name, value in values.items():
        object.__setattr__(obj, name, value)
    return obj
