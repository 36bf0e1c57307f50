"""Training configurations: pydantic models (crnn.config.Config) read from YAML with ``key=value`` overrides.

``TrainConfig`` drives ``crnn train`` (CRNN + CTC); ``BaselineTrainConfig`` drives the segmented-character
baseline's trainer. Unknown keys and wrong types raise one ConfigError naming the dotted key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StrictBool, field_validator, model_validator

from crnn.attention_model import DecoderCell
from crnn.charset import DEFAULT_CHARS
from crnn.config import Config
from crnn.model import Backbone, Cell
from crnn_synth_data import SynthConfig


def _yaml_switch(value: Any) -> Any:
    # YAML 1.1 reads a bare off/on as a boolean: `train.progress: off` must mean "off".
    return ("on" if value else "off") if isinstance(value, bool) else value


OnOff = Annotated[Literal["auto", "on", "off"], BeforeValidator(_yaml_switch)]
Amp = Annotated[Literal["auto", "bf16", "fp16", "off"], BeforeValidator(_yaml_switch)]


class ModelSection(Config):
    """Architecture (see crnn.model.ModelConfig: the same fields and defaults, less num_classes)."""

    kind = "train"  # nested sections report errors under the top-level kind anyway

    backbone: Backbone = "small"
    cell: Cell = "lstm"
    hidden_size: int = Field(256, ge=1)
    num_layers: int = Field(2, ge=1)
    bidirectional: StrictBool = True
    dropout: float = 0.1
    height: Literal[32, 48] = 32  # the images are rendered and scaled to this height
    mixer_layers: int = Field(0, ge=0, le=12)
    mixer_heads: int = Field(4, ge=1)


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
            raise ValueError("aux_attention_weight guides a CTC model (type ctc); an attention decoder trains on it alone")
        return self

    def attention_fields(self) -> dict[str, Any]:
        """The attention decoder's architecture fields (crnn.attention_model.AttentionConfig's)."""
        return {k: getattr(self, k) for k in ("cell", "hidden_size", "attention_size", "embedding_size", "max_length")}


class SourceSection(Config):
    """One training data source: ``synth`` (rendered on the fly), ``lmdb`` or ``folder`` (labels.tsv)."""

    type: Literal["synth", "lmdb", "folder"] = "synth"
    path: str | None = None
    weight: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _path_for_files(self) -> SourceSection:
        if self.type != "synth" and not self.path:
            raise ValueError(f"a source of type {self.type} needs a path")
        return self


class DataSection(Config):
    """How batches are made."""

    batch_size: int = Field(64, ge=1)
    num_workers: int = -1  # -1: one per core, minus one for the trainer (CPU: see crnn_training.train.auto_threads)
    pool_batches: int = Field(8, ge=1)  # each worker renders this many batches of samples, sorts them by width, cuts batches
    prefetch_factor: int = Field(4, ge=1)
    min_width: int = 16
    max_width: int = 512  # wider images are squeezed to this width (keeps batches bounded)
    sources: list[SourceSection] = Field(default_factory=lambda: [SourceSection()], min_length=1)


class OptimSection(Config):
    """Optimiser and learning-rate schedule."""

    name: Literal["adamw", "adadelta"] = "adamw"  # adadelta: the paper's choice (lr=1.0, rho=0.9)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    rho: float = 0.9
    eps: float = 1e-8
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"  # all with linear warm-up
    warmup_steps: int = 500
    min_lr_ratio: float = 0.02
    grad_clip: float = 5.0  # 0: no clipping (the norm is logged either way)


class TrainSection(Config):
    """Length of the run, precision and speed options, logging."""

    max_steps: int = Field(100_000, ge=1)
    max_minutes: float = 0.0  # wall-clock budget including start-up and the final evaluation; 0: none
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads in the trainer; 0: auto (cores minus data workers)
    amp: Amp = "auto"  # auto: bf16 on CUDA, off on CPU
    channels_last: StrictBool = False
    compile: StrictBool = False
    log_every: int = Field(50, ge=1)
    eval_every: int = Field(1000, ge=1)
    save_every: int = Field(500, ge=1)  # resume state (last.pt) every N steps: a kill loses at most N steps
    early_stop: int = 0  # stop after this many evaluations without improvement; 0: never
    progress: OnOff = "auto"  # auto: a bar when stderr is a terminal
    tensorboard: StrictBool = True
    halt_at_step: int = 0  # testing aid: exit abruptly (like a kill) right after this step; 0: off


class ValSection(Config):
    """Validation sets, how they are read, and the metric that picks the best checkpoint."""

    synth_size: int = 2000
    synth_seed: int = 1_000_003  # a seed the training stream never uses
    folders: list[str] = []
    max_per_folder: int = 0  # 0: all images of each folder
    batch_size: int = Field(256, ge=1)
    # The Recognizer's precision. auto: bf16 when training autocasts bf16 on CUDA, else what `crnn ocr`
    # runs on this device (crnn.precision.resolve_precision).
    precision: Literal["auto", "fp32", "mixed", "bf16"] = "auto"
    best_metric: str = "synth/word_accuracy_case"  # <set>/<metric>; cer is minimised, others maximised

    @field_validator("best_metric")
    @classmethod
    def _set_and_metric(cls, value: str) -> str:
        if "/" not in value:
            raise ValueError("must look like 'synth/word_accuracy_case'")
        return value


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


class BaselineTrainConfig(Config):
    """The segmented-character baseline's run (``python -m crnn_training.train_baseline``); keys are its CLI options."""

    kind = "baseline train"

    out: str = "runs/baseline"  # best.safetensors and log.jsonl
    minutes: float = Field(10.0, ge=0)  # wall-clock budget, start-up and evaluations included; 0: none
    max_steps: int = Field(0, ge=0)  # the lr schedule follows steps when set; 0: the time budget alone
    batch_size: int = Field(32, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 5.0
    jitter: float = 2.0  # box jitter, in pixels of the 32-px-high input
    seed: int = 0  # the synthetic stream: sample i of seed s is the CRNN trainer's sample i of seed s
    val_size: int = 500
    val_seed: int = 1_000_003  # a seed the training stream never uses (as TrainConfig's val.synth_seed)
    eval_every: float = 120.0  # seconds between evaluations
    eval_every_steps: int = 0  # also evaluate every N steps; 0: by time only
    workers: int = 1  # DataLoader workers rendering words
    threads: int = 1  # torch intra-op threads of the trainer
    device: str = "auto"  # auto (CUDA if present) | cpu | cuda | cuda:N
    cell: Literal["lstm", "gru"] = "lstm"
    hidden: int = Field(128, ge=1)
    binarize: Literal["otsu", "sauvola", "both"] = "otsu"  # the segmenter's (crnn.baseline.segment.SegmentConfig)
    split_ratio: float = 1.25
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
