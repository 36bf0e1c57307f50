"""Training configuration: YAML files validated into dataclasses, with ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crnn.charset import DEFAULT_CHARS
from crnn.errors import ConfigError
from crnn.model import ModelConfig


# The architecture section: crnn.model.ModelConfig's fields and defaults, less num_classes (from the charset)
# and the input height (fixed by the backbone), so the two never drift apart.
ModelSection = dataclasses.make_dataclass(
    "ModelSection",
    [(n, str if typing.get_origin(f.annotation) is typing.Literal else f.annotation, field(default=f.default))
     for n, f in ModelConfig.model_fields.items() if n not in ("num_classes", "height")],
)
ModelSection.__module__ = __name__  # type hints (strings) resolve in this module
ModelSection.__doc__ = "Architecture (see crnn.model.ModelConfig); num_classes comes from the charset."


@dataclass
class SourceSection:
    """One training data source: ``synth`` (rendered on the fly), ``lmdb`` or ``folder`` (labels.tsv)."""

    type: str = "synth"
    path: str | None = None
    weight: float = 1.0


@dataclass
class DataSection:
    """How batches are made."""

    batch_size: int = 64
    num_workers: int = -1  # -1: one per core, minus one for the trainer (CPU: see crnn_training.train.auto_threads)
    pool_batches: int = 8  # each worker renders this many batches of samples, sorts them by width, cuts batches
    prefetch_factor: int = 4
    min_width: int = 16
    max_width: int = 512  # wider images are squeezed to this width (keeps batches bounded)
    sources: list[SourceSection] = field(default_factory=lambda: [SourceSection()])


@dataclass
class OptimSection:
    """Optimiser and learning-rate schedule."""

    name: str = "adamw"  # adamw | adadelta (the paper's choice: lr=1.0, rho=0.9)
    lr: float = 1e-3
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    rho: float = 0.9
    eps: float = 1e-8
    schedule: str = "cosine"  # cosine | onecycle | constant (all with linear warm-up)
    warmup_steps: int = 500
    min_lr_ratio: float = 0.02
    grad_clip: float = 5.0  # 0: no clipping (the norm is logged either way)


@dataclass
class TrainSection:
    """Length of the run, precision and speed options, logging."""

    max_steps: int = 100_000
    max_minutes: float = 0.0  # wall-clock budget including start-up and the final evaluation; 0: none
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads in the trainer; 0: auto (cores minus data workers)
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | fp16 | off
    channels_last: bool = False
    compile: bool = False
    log_every: int = 50
    eval_every: int = 1000
    save_every: int = 500  # resume state (last.pt) every N steps: a kill loses at most N steps
    early_stop: int = 0  # stop after this many evaluations without improvement; 0: never
    progress: str = "auto"  # auto (bar when stderr is a terminal) | on | off
    tensorboard: bool = True
    halt_at_step: int = 0  # testing aid: exit abruptly (like a kill) right after this step; 0: off


@dataclass
class ValSection:
    """Validation sets and the metric that picks the best checkpoint."""

    synth_size: int = 2000
    synth_seed: int = 1_000_003  # a seed the training stream never uses
    folders: list[str] = field(default_factory=list)
    max_per_folder: int = 0  # 0: all images of each folder
    batch_size: int = 256
    best_metric: str = "synth/word_accuracy_case"  # <set>/<metric>; cer is minimised, others maximised


@dataclass
class TrainConfig:
    """Everything a training run needs; saved resolved into the run folder and every checkpoint."""

    out_dir: str = "runs/default"
    seed: int = 0
    charset: str | None = None  # None: the default printable ASCII set (or the --init-from checkpoint's)
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    val: ValSection = field(default_factory=ValSection)
    synth: dict[str, Any] = field(default_factory=dict)  # passed to synth_data.SynthConfig.from_dict

    def to_dict(self) -> dict[str, Any]:
        """A YAML-able dict of every value."""
        return dataclasses.asdict(self)


CHOICES: dict[str, tuple[str, ...]] = {
    "model.backbone": ("small", "full"),
    "model.cell": ("lstm", "gru", "rnn", "none"),
    "optim.name": ("adamw", "adadelta"),
    "optim.schedule": ("cosine", "onecycle", "constant"),
    "train.amp": ("auto", "bf16", "fp16", "off"),
    "train.progress": ("auto", "on", "off"),
    "data.sources.type": ("synth", "lmdb", "folder"),
}


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check(key: str, value: Any, hint: Any) -> Any:
    """``value`` validated against the type ``hint``; raises ConfigError naming ``key``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check(key, value, inner[0])
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping of {hint.__name__} fields, got {value!r}")
        return _build(hint, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        return [_check(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    choices = CHOICES.get(re.sub(r"\[\d+\]", "", key))
    if hint is str and isinstance(value, bool) and choices and "off" in choices:
        value = "on" if value else "off"  # YAML 1.1 reads a bare off/on as a boolean
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(hint, isinstance(value, hint))
    if not ok:
        raise ConfigError(f"config key '{key}' must be of type {_type_name(hint)}, got {value!r}")
    value = float(value) if hint is float else value
    if choices and value not in choices:
        raise ConfigError(f"config key '{key}' must be one of {', '.join(choices)}; got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """An instance of dataclass ``cls`` from ``data``, refusing unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            where = f" in section '{prefix}'" if prefix else ""
            raise ConfigError(f"unknown config key '{prefix + '.' if prefix else ''}{key}'{where}; known: {', '.join(names)}")
    kwargs = {k: _check(f"{prefix}.{k}" if prefix else k, v, hints[k]) for k, v in data.items()}
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    """A command-line value parsed as YAML (numbers, booleans, null, [lists], {maps}); else the raw string."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``data`` with ``key=value`` strings applied; dotted keys reach into sections (``model.backbone=full``)."""
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
        node[parts[-1]] = _parse_value(text)
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """A validated TrainConfig from a YAML file (None: defaults) plus ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({e})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: a config must be a mapping of sections, got {type(loaded).__name__}")
        data = loaded or {}
    data = apply_overrides(data, overrides or [])
    config = _build(TrainConfig, data)
    validate(config)
    return config


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """A validated TrainConfig from a dict (e.g. the one saved in a run folder)."""
    config = _build(TrainConfig, data)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Cross-field checks that types alone cannot express."""
    d, t, o = config.data, config.train, config.optim
    if d.batch_size < 1 or d.pool_batches < 1 or d.prefetch_factor < 1:
        raise ConfigError("data.batch_size, data.pool_batches and data.prefetch_factor must be >= 1")
    if not d.sources:
        raise ConfigError("data.sources must list at least one source")
    for i, s in enumerate(d.sources):
        if s.weight <= 0:
            raise ConfigError(f"data.sources[{i}].weight must be > 0")
        if s.type != "synth" and not s.path:
            raise ConfigError(f"data.sources[{i}] of type {s.type} needs a path")
    if t.max_steps < 1 or t.log_every < 1 or t.eval_every < 1 or t.save_every < 1:
        raise ConfigError("train.max_steps, log_every, eval_every and save_every must be >= 1")
    if o.lr <= 0:
        raise ConfigError("optim.lr must be > 0")
    metric = config.val.best_metric
    if "/" not in metric:
        raise ConfigError(f"val.best_metric must look like 'synth/word_accuracy_case', got {metric!r}")
    if config.charset is not None and not config.charset:
        raise ConfigError("charset must not be empty")


def save_yaml(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")


def default_charset(config: TrainConfig) -> str:
    """The charset string a run uses when the config names none."""
    return config.charset if config.charset is not None else DEFAULT_CHARS
