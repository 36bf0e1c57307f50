"""The JSON round trip shared by the library's config dataclasses: to_dict, and from_dict refusing unknown keys."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, ClassVar, TypeVar

from crnn.errors import ConfigError

C = TypeVar("C", bound="DictConfig")


class DictConfig:
    """Mixin for a config dataclass stored in checkpoints; ``kind`` names it in error messages."""

    kind: ClassVar[str] = "config"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Rebuild from :meth:`to_dict`; unknown keys are refused (a typo must not silently use a default)."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})  # type: ignore[arg-type]
        if unknown:
            raise ConfigError(f"unknown {cls.kind} config key(s): {', '.join(unknown)}")
        return cls(**data)
