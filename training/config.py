"""Training configurations: pydantic models (crnn.config.Config) read from YAML with ``key=value`` overrides.

``TrainConfig`` drives ``crnn train`` (CRNN + CTC); ``BaselineTrainConfig`` drives the segmented-character
baseline's trainer. Unknown keys, wrong types, values out of range and keys that contradict each other (a
minimum over its maximum, a best metric that no validation set produces) raise one ConfigError naming the
dotted key, when the config is loaded: before any model or data work.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BeforeValidator, Field, StrictBool, ValidationError, field_validator,
                      model_validator)

from crnn.models.attention import DecoderCell
from crnn.charset import DEFAULT_CHARS
from crnn.config import Config, FieldProblem
from crnn.metrics import TextMetrics
from crnn.models.crnn import Backbone, Cell, ModelConfig
from crnn.io.preprocess import PreprocessConfig
from crnn_synth_data import SynthConfig


def _yaml_switch(value: Any) -> Any:
    # YAML 1.1 reads a bare off/on as a boolean: `train.progress: off` must mean "off".
    return ("on" if value else "off") if isinstance(value, bool) else value


OnOff = Annotated[Literal["auto", "on", "off"], BeforeValidator(_yaml_switch)]
Amp = Annotated[Literal["auto", "bf16", "fp16", "off"], BeforeValidator(_yaml_switch)]


def _device_name(value: str) -> str:
    # Caught here, not by torch.device() after the model is built.
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise ValueError("must be auto, cpu, cuda or cuda:N")
    return value


Device = Annotated[str, AfterValidator(_device_name)]


class ModelSection(Config):
    """Architecture (see crnn.models.crnn.ModelConfig: the same fields and defaults, less num_classes)."""

    kind = "train"  # nested sections report errors under the top-level kind anyway

    backbone: Backbone = "small"
    cell: Cell = "lstm"
    hidden_size: int = Field(256, ge=1)
    num_layers: int = Field(2, ge=1)
    bidirectional: StrictBool = True
    dropout: float = Field(0.1, ge=0.0, le=1.0)
    height: Literal[32, 48] = 32  # the images are rendered and scaled to this height
    mixer_layers: int = Field(0, ge=0, le=12)
    mixer_heads: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _builds(self) -> ModelSection:
        # ModelConfig's joint checks (height 48 needs a residual backbone, mixer_heads divides the features) here,
        # at load time, reported as 'model.<key>' instead of a 'model config' error once the run has started.
        try:
            ModelConfig.model_validate({**self.model_dump(), "num_classes": 2})
        except ValidationError as e:
            error = e.errors()[0].get("ctx", {}).get("error")
            if isinstance(error, ValueError):
                raise error from None
            raise
        return self


class DecoderSection(Config):
    """What reads the encoder's frames: CTC (kind crnn), an attention decoder (kind crnn_attention), or CTC trained
    beside an attention head that guides it and is dropped for inference (GTC); docs/attention.md."""

    type: Literal["ctc", "attention"] = "ctc"
    # type ctc: weight of the attention head's cross-entropy beside the CTC loss (GTC); 0: off. best.safetensors stays a
    # plain CTC checkpoint either way (only last.pt keeps the head, to resume).
    aux_attention_weight: float = Field(0.0, ge=0)
    cell: DecoderCell = "lstm"  # the attention decoder's (or head's) recurrent cell
    hidden_size: int = Field(256, ge=1)
    attention_size: int = Field(256, ge=1)
    embedding_size: int = Field(64, ge=1)
    max_length: int = Field(25, ge=1)  # characters read at most at inference
    # Scheduled sampling: the chance that a decoding step is fed the model's own previous prediction instead of the
    # true character (0: pure teacher forcing); the exposure-bias experiment.
    free_running: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _guide_is_for_ctc(self) -> DecoderSection:
        if self.type == "attention" and self.aux_attention_weight > 0:
            raise FieldProblem("aux_attention_weight", "guides a CTC model (type ctc); an attention decoder trains on "
                               "its own loss alone", self.aux_attention_weight)
        return self

    def attention_fields(self) -> dict[str, Any]:
        """The attention decoder's architecture fields (crnn.models.attention.AttentionConfig's)."""
        return {k: getattr(self, k) for k in ("cell", "hidden_size", "attention_size", "embedding_size", "max_length")}


class SourceSection(Config):
    """One training data source: ``synth`` (rendered on the fly), ``lmdb`` or ``folder`` (labels.tsv)."""

    type: Literal["synth", "lmdb", "folder"] = "synth"
    path: str | None = None
    weight: float = Field(1.0, gt=0)
    # folder: this share of its images (fixed by a hash of each path, crnn_training.holdout) is never trained on; a
    # validation folder with the same val.holdout is read as exactly that part (docs/adaptation.md).
    holdout: float = Field(0.0, ge=0.0, lt=1.0)
    # folder or lmdb: "real" passes each sample through augmentations suited to real photo crops (perspective,
    # rotation, crop jitter, blur, noise, JPEG, contrast; crnn_training.augment); synth renders carry their own.
    augment: Annotated[Literal["off", "real"], BeforeValidator(lambda v: "off" if v is False else v)] = "off"

    @model_validator(mode="after")
    def _path_for_files(self) -> SourceSection:
        if self.type != "synth" and not self.path:
            raise FieldProblem("path", f"a source of type {self.type} needs a path", self.path)
        if self.holdout > 0 and self.type != "folder":
            raise FieldProblem("holdout", "only a folder source has a held-out part", self.holdout)
        if self.augment != "off" and self.type == "synth":
            raise FieldProblem("augment", "renders pass through the renderer's own degradations (synth.*)",
                               self.augment)
        return self


class DataSection(Config):
    """How batches are made."""

    batch_size: int = Field(64, ge=1)
    num_workers: int = Field(-1, ge=-1)  # -1: one per core, minus one for the trainer (CPU: see crnn_training.train.auto_threads)
    pool_batches: int = Field(8, ge=1)  # each worker renders this many batches of samples, sorts them by width, cuts batches
    prefetch_factor: int = Field(4, ge=1)
    min_width: int = Field(16, ge=1)  # narrower images are stretched to this width
    max_width: int = Field(512, ge=1)  # wider images are squeezed to this width (keeps batches bounded)
    # Every batch of one width: each image is stretched (never squeezed) to its batch's widest, so the recurrent
    # layers run unpacked (docs/training.md, "Training at the CPU's limit"); validation and inference are unchanged.
    equal_widths: StrictBool = False
    sources: list[SourceSection] = Field(default_factory=lambda: [SourceSection()], min_length=1)

    @model_validator(mode="after")
    def _widths(self) -> DataSection:
        bucket = PreprocessConfig().width_bucket  # resized widths are multiples of it (crnn.io.preprocess.resized_width)
        if self.max_width < bucket:
            raise FieldProblem("max_width", f"must be at least one width bucket ({bucket} pixels)", self.max_width)
        if self.min_width > self.max_width:
            raise FieldProblem("min_width", f"must not exceed max_width ({self.max_width})", self.min_width)
        return self

    def preprocess(self, height: int) -> PreprocessConfig:
        """How the run's images are prepared (stored in its checkpoints)."""
        return PreprocessConfig(height=height, min_width=self.min_width, max_width=self.max_width)


class OptimSection(Config):
    """Optimiser and learning-rate schedule."""

    name: Literal["adamw", "adadelta"] = "adamw"  # adadelta: the paper's choice (lr=1.0, rho=0.9)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    rho: float = Field(0.9, ge=0, le=1)
    eps: float = Field(1e-8, gt=0)
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"  # all with linear warm-up
    warmup_steps: int = Field(500, ge=0)
    min_lr_ratio: float = Field(0.02, ge=0, le=1)  # the schedule's end, as a share of lr
    grad_clip: float = Field(5.0, ge=0)  # 0: no clipping (the norm is logged either way)


class TrainSection(Config):
    """Length of the run, precision and speed options, logging."""

    max_steps: int = Field(100_000, ge=1)
    max_minutes: float = Field(0.0, ge=0)  # wall-clock budget including start-up and the final evaluation; 0: none
    device: Device = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = Field(0, ge=0)  # torch intra-op threads in the trainer; 0: auto (crnn_training.train.auto_threads)
    amp: Amp = "auto"  # auto: bf16 on CUDA and on CPUs with native bf16 (AVX-512 BF16/AMX), else off
    channels_last: StrictBool = False
    compile: StrictBool = False
    log_every: int = Field(50, ge=1)
    eval_every: int = Field(1000, ge=1)
    save_every: int = Field(500, ge=1)  # resume state (last.pt) every N steps: a kill loses at most N steps
    early_stop: int = Field(0, ge=0)  # stop after this many evaluations without improvement; 0: never
    progress: OnOff = "auto"  # auto: a bar when stderr is a terminal
    tensorboard: StrictBool = True
    halt_at_step: int = Field(0, ge=0)  # testing aid: exit abruptly (like a kill) right after this step; 0: off


class ValSection(Config):
    """Validation sets, how they are read, and the metric that picks the best checkpoint."""

    synth_size: int = Field(2000, ge=0)  # 0: no synthetic validation set (then val.folders must name one)
    synth_seed: int = 1_000_003  # a seed the training stream never uses
    folders: list[Annotated[str, Field(min_length=1)]] = []
    max_per_folder: int = Field(0, ge=0)  # 0: all images of each folder
    # > 0: each folder is read as its held-out part only (the images a folder source with the same holdout never
    # trains on; crnn_training.holdout), so a run can train and validate on one labeled folder.
    holdout: float = Field(0.0, ge=0.0, lt=1.0)
    batch_size: int = Field(256, ge=1)
    # The Recognizer's precision. auto: bf16 when training autocasts bf16 on CUDA, else what `crnn ocr`
    # runs on this device (crnn.reading.precision.resolve_precision).
    precision: Literal["auto", "fp32", "mixed", "bf16"] = "auto"
    best_metric: str = "synth/word_accuracy_case"  # <set>/<metric>; cer is minimised, others maximised

    @field_validator("best_metric")
    @classmethod
    def _set_and_metric(cls, value: str) -> str:
        if "/" not in value:
            raise ValueError("must look like 'synth/word_accuracy_case'")
        return value

    def set_names(self) -> list[str]:
        """The validation sets' names, in evaluation order: 'synth', then each folder's (:func:`folder_set_name`),
        then 'mean' (each metric averaged over the folders, unweighted) when there are two folders or more."""
        folders = [folder_set_name(f) for f in self.folders]
        return (["synth"] if self.synth_size > 0 else []) + folders + ([MEAN_SET] if len(folders) > 1 else [])

    @model_validator(mode="after")
    def _sets_and_best_metric(self) -> ValSection:
        # Checked when the config loads, not at the first evaluation (train.eval_every steps later).
        names = self.set_names()
        if not names:
            raise FieldProblem("synth_size", "no validation set: give val.synth_size > 0 or val.folders",
                               self.synth_size)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise FieldProblem("folders", f"two validation sets named {twice[0]!r} (a folder's set is named after its "
                               "last part; 'synth' is the synthetic set)", self.folders)
        set_name, _, metric = self.best_metric.rpartition("/")
        if set_name not in names:
            raise FieldProblem("best_metric", f"no validation set {set_name!r}; the run's sets are "
                               f"{', '.join(map(repr, names))}", self.best_metric)
        if metric not in METRICS:
            raise FieldProblem("best_metric", f"no metric {metric!r}; the metrics are {', '.join(METRICS)}",
                               self.best_metric)
        return self


# The pseudo-set of each metric averaged over the validation folders (each folder counts once, whatever its size):
# best_metric 'mean/word_accuracy_protocol' keeps a choice made on one kind of image from quietly costing another.
MEAN_SET = "mean"


def folder_set_name(folder: str) -> str:
    """The name of a validation folder's set, in metric names ('<set>/<metric>'): its last part."""
    return Path(folder).name or folder


# What each validation set reports and val.best_metric may pick (crnn.metrics.compute_metrics; less the count).
METRICS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TextMetrics) if f.name != "count")


class TrainConfig(Config):
    """Everything a CRNN training run needs; saved resolved into the run folder and every checkpoint."""

    kind = "train"

    out_dir: str = "runs/default"
    seed: int = 0
    charset: str | None = Field(None, min_length=1)  # None: the default printable ASCII set (or the --init-from checkpoint's)
    model: ModelSection = ModelSection()
    decoder: DecoderSection = DecoderSection()
    data: DataSection = DataSection()
    optim: OptimSection = OptimSection()
    train: TrainSection = TrainSection()
    val: ValSection = ValSection()
    synth: SynthConfig = SynthConfig()  # the renderer of `synth` sources and of the synthetic validation set

    @model_validator(mode="after")
    def _never_trains_on_its_validation_images(self) -> TrainConfig:
        # A validation folder that is also a training source, split on one side, must be split the same way on the
        # other: a mismatch would train on images it validates on. (Neither split: the run trains on its validation
        # images, as before holdouts existed; crnn train warns.)
        val = {_same_folder(f) for f in self.val.folders}
        for i, s in enumerate(self.data.sources):
            if s.type != "folder" or _same_folder(s.path or "") not in val:
                continue
            if s.holdout != self.val.holdout:
                raise FieldProblem(f"data.sources[{i}].holdout", f"{s.path} is also a validation folder: give the "
                                   f"source and val.holdout the same value (val.holdout is {self.val.holdout}), so "
                                   "that it never trains on the images it is validated on", s.holdout)
        return self

    def sources_validated_on(self) -> list[str]:
        """Folder sources that are validation folders too, with no held-out part: trained on what validates them."""
        val = {_same_folder(f) for f in self.val.folders}
        return [s.path for s in self.data.sources
                if s.type == "folder" and s.holdout == 0 and _same_folder(s.path or "") in val]


def _same_folder(path: str) -> str:
    return str(Path(path).expanduser().resolve())


class BaselineTrainConfig(Config):
    """The segmented-character baseline's run (``python -m crnn_training.train_baseline``); keys are its CLI options."""

    kind = "baseline train"

    out: str = "runs/baseline"  # best.safetensors and log.jsonl
    minutes: float = Field(10.0, ge=0)  # wall-clock budget, start-up and evaluations included; 0: none
    max_steps: int = Field(0, ge=0)  # the lr schedule follows steps when set; 0: the time budget alone
    batch_size: int = Field(32, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(100, ge=0)
    grad_clip: float = Field(5.0, ge=0)
    jitter: float = Field(2.0, ge=0)  # box jitter, in pixels of the 32-px-high input
    seed: int = 0  # the synthetic stream: sample i of seed s is the CRNN trainer's sample i of seed s
    val_size: int = Field(500, ge=1)
    val_seed: int = 1_000_003  # a seed the training stream never uses (as TrainConfig's val.synth_seed)
    eval_every: float = Field(120.0, gt=0)  # seconds between evaluations
    eval_every_steps: int = Field(0, ge=0)  # also evaluate every N steps; 0: by time only
    workers: int = Field(1, ge=0)  # DataLoader workers rendering words (0: in the trainer's process)
    threads: int = Field(1, ge=1)  # torch intra-op threads of the trainer
    device: Device = "auto"  # auto (CUDA if present) | cpu | cuda | cuda:N
    cell: Literal["lstm", "gru"] = "lstm"
    hidden: int = Field(128, ge=1)
    binarize: Literal["otsu", "sauvola", "both"] = "otsu"  # the segmenter's (crnn.models.baseline.segment.SegmentConfig)
    split_ratio: float = Field(1.25, gt=0)
    synth: SynthConfig = SynthConfig()  # its charset is always the default one (the baseline's classes)

    @model_validator(mode="after")
    def _has_a_budget(self) -> BaselineTrainConfig:
        if self.minutes <= 0 and self.max_steps <= 0:
            raise ValueError("give a budget: minutes > 0 or max_steps > 0")
        return self


def charset_given(synth: SynthConfig) -> bool:
    """Whether the synth section names its own charset (else the renderer writes the run's)."""
    return "charset" in synth.model_fields_set


def default_charset(config: TrainConfig) -> str:
    """The charset string a run uses when the config names none."""
    return config.charset if config.charset is not None else DEFAULT_CHARS


def resolve_renderer(config: TrainConfig, chars: str) -> None:
    """Make ``config.synth`` render what the model reads: the run's ``chars`` (unless the synth section names its own
    charset), at the model's height (unless it names its own height) rather than scaled up to it."""
    if not charset_given(config.synth):
        config.synth.charset = chars
    if "height" not in config.synth.model_fields_set:
        config.synth.height = config.model.height
