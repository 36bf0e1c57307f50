"""Render a training config's sample cache: ``crnn train-cache --config FILE.yaml --count N [key=value ...]``.

On a CPU the renderer and the trainer share the cores; rendering once with every core into an LMDB and training on
it for several epochs (mixed with a share of fresh renders, ``data.sources``) leaves the cores to the trainer
(docs/training.md, "Training at the CPU's limit"). The cache holds the renderer's own outputs for the run's resolved
``synth`` section (the run's charset, at the model's height): the same images, augmentation included, that an
on-the-fly ``synth`` source would give, from a stream seed that neither the training stream nor the synthetic
validation set uses. ``render.json`` beside the data records what rendered it; ``crnn train`` warns when a run's
renderer differs from its cache's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from crnn.errors import ConfigError, CRNNError
from crnn.machine import cpu_cores
from crnn_training.config import TrainConfig, default_charset, resolve_renderer

RENDER_INFO = "render.json"  # what rendered a cache: the resolved synth section, the stream seed, the count
CACHE_SEED_OFFSET = 500_009  # the cache's stream seed is the run's seed plus this: no rank's training stream uses it


def cache_seed(config: TrainConfig) -> int:
    """The renderer stream a config's cache is rendered from (never the training streams' nor the validation set's)."""
    return config.seed + CACHE_SEED_OFFSET


def cache_path(config: TrainConfig) -> Path:
    """The config's first ``lmdb`` source: where its cache goes (ConfigError when it has none)."""
    for s in config.data.sources:
        if s.type == "lmdb":
            return Path(s.path)
    raise ConfigError("data.sources has no lmdb source to render a cache into")


def render_info(config: TrainConfig, seed: int, count: int) -> dict[str, Any]:
    """The record written beside a cache (and compared with a run's renderer)."""
    return {"synth": config.synth.model_dump(mode="json"), "seed": seed, "count": count}


def renderer_differences(path: str | os.PathLike[str], config: TrainConfig) -> list[str]:
    """The synth keys on which the renderer that made the cache at ``path`` differs from ``config``'s (resolved)
    renderer; empty when they agree or when the cache was not made by ``crnn train-cache``."""
    info = Path(path) / RENDER_INFO
    if not info.is_file():
        return []
    try:
        made = json.loads(info.read_text(encoding="utf-8")).get("synth", {})
    except (OSError, ValueError, AttributeError):
        return [RENDER_INFO]
    mine = config.synth.model_dump(mode="json")
    return sorted(k for k in set(made) | set(mine) if made.get(k) != mine.get(k))


def write_cache(config: TrainConfig, count: int, workers: int, seed: int) -> tuple[Path, int]:
    """Render ``count`` samples of stream ``seed`` into the config's lmdb source; (path, samples written).

    The LMDB is written beside its final place and moved there when complete: a failed or interrupted render
    leaves no half cache behind, and an existing path is never touched.
    """
    from crnn_synth_data.cli import write_dataset

    out = cache_path(config)
    if out.exists() or out.is_symlink():
        raise ConfigError(f"{out}: already exists (a cache is never overwritten; remove it first to render anew)")
    if not out.parent.is_dir():
        raise ConfigError(f"{out}: the folder {out.parent} does not exist")
    resolve_renderer(config, default_charset(config))
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        n = write_dataset(config.synth, tmp, "lmdb", count, workers, seed)
        (tmp / RENDER_INFO).write_text(json.dumps(render_info(config, seed, n), indent=1) + "\n", encoding="utf-8")
        os.rename(tmp, out)  # fails, leaving out alone, if something appeared there meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out, n


def main(argv: list[str] | None = None) -> int:
    """``crnn train-cache``: exit code 0 on success, 2 on a configuration error."""
    p = argparse.ArgumentParser(prog="crnn train-cache", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="the training config (its first lmdb source is the cache)")
    p.add_argument("--count", type=int, required=True, help="samples to render")
    p.add_argument("--workers", type=int, default=cpu_cores(), help="rendering processes (default: all cores)")
    p.add_argument("--seed", type=int, help=f"renderer stream (default: the config's seed + {CACHE_SEED_OFFSET})")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, as for crnn train")
    args = p.parse_args(argv)
    try:
        if args.count < 1:
            raise ConfigError("--count must be at least 1")
        config = TrainConfig.from_yaml(args.config, args.overrides)
        seed = cache_seed(config) if args.seed is None else args.seed
        if seed == config.val.synth_seed:
            raise ConfigError(f"--seed {seed} is the synthetic validation set's stream (val.synth_seed)")
        t0 = time.perf_counter()
        out, n = write_cache(config, args.count, max(1, args.workers), seed)
    except CRNNError as e:
        print(f"crnn train-cache: error: {e}", file=sys.stderr)
        return 2
    dt = time.perf_counter() - t0
    print(f"wrote {n} samples (stream seed {seed}) to {out} in {dt:.0f} s ({n / dt:.0f} images/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
