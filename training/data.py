"""Training and validation data: weighted source mixes, width-bucketed batches made in DataLoader workers.

Every batch is a deterministic function of (seed, rank, pool index), so a resumed run sees exactly the
batches an uninterrupted run would have seen (see :class:`BatchStream`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from crnn.charset import Charset
from crnn.errors import ConfigError, CRNNError
from crnn.io.labeled_folder import LABELS_FILE, MAX_NAMED_PROBLEMS, LabeledFolder
from crnn.models.crnn import CRNN
from crnn.io.preprocess import PreprocessConfig, collate, normalize, resize_normalized
from crnn_training.augment import RealCropAugmenter
from crnn_training.holdout import select_part

def ctc_frames_needed(ids: list[int]) -> int:
    """Frames CTC needs for a label: one per character plus a blank between repeated neighbours."""
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:]) if a == b)


# ---------------------------------------------------------------------------------------------
# Labeled folders (crnn.io.labeled_folder) and LMDB datasets
# ---------------------------------------------------------------------------------------------


def report_problems(name: str, problems: Sequence[object], out: Any = None) -> None:
    """Print the count of refused samples and name the first few."""
    if not problems:
        return
    out = out or sys.stderr
    print(f"[data] {name}: skipped {len(problems)} sample(s):", file=out)
    for p in problems[:MAX_NAMED_PROBLEMS]:
        print(f"[data]   {p}", file=out)


def load_labeled_arrays(
    root: str | os.PathLike, charset: Charset, preprocess: PreprocessConfig, limit: int = 0, holdout: float = 0.0
) -> tuple[list[np.ndarray], list[str], list[str], list[str]]:
    """Prepared arrays, texts and paths of a labeled folder (``holdout`` > 0: of its held-out part only,
    crnn_training.holdout), plus the problems of the samples skipped."""
    folder = LabeledFolder.read(root, charset)
    problems = [str(p) for p in folder.problems]
    arrays, texts, paths = [], [], []
    items = select_part(folder.items, holdout, "val") if holdout > 0 else folder.items
    folder.items = items[:limit] if limit > 0 else items  # what load(i) indexes
    for i, (rel, _) in enumerate(folder.items):
        try:
            gray, text = folder.load(i)
            arrays.append(normalize(gray, preprocess, rel))
        except CRNNError as e:
            problems.append(str(e))
            continue
        texts.append(text)
        paths.append(str(folder.root / rel))
    return arrays, texts, paths, problems


class _MapSource:
    """Random access to a labeled folder or an LMDB dataset (synth_data.LmdbDataset reopens itself after a fork)."""

    def __init__(self, kind: str, path: str, charset: Charset, holdout: float = 0.0, augment: str = "off") -> None:
        self.kind, self.path = kind, path
        self._ds: Any
        # Real-crop augmentations (crnn_training.augment), seeded per sample by the stream.
        self.augment = RealCropAugmenter() if augment == "real" else None
        if kind == "folder":
            self._ds = LabeledFolder.read(path, charset)
            report_problems(path, self._ds.problems)
            self._ds.items = select_part(self._ds.items, holdout, "train")  # never the held-out part
        else:
            from crnn_synth_data import LmdbDataset  # lmdb is only imported when an LMDB source is used

            try:
                self._ds = LmdbDataset(path, charset)
            except (OSError, ValueError, ImportError) as e:
                raise ConfigError(f"data source {path}: {e}") from None
        self.size = len(self._ds)
        if self.size == 0:
            raise ConfigError(f"data source {path} holds no usable samples")

    def get(self, i: int) -> tuple[np.ndarray, str]:
        """Gray image and text of sample ``i`` (a folder raises InvalidImageError for a bad image)."""
        return self._ds.load(i) if self.kind == "folder" else self._ds[i]

    def close(self) -> None:
        """Release an LMDB dataset's environment (a later run in this process opens it again)."""
        if self.kind == "lmdb":
            self._ds.close()


class _SynthSource:
    """Random access to the on-the-fly renderer by global sample index (the renderer is built lazily per process)."""

    path = "synth"

    def __init__(self, synth: Any, seed: int) -> None:
        self.config = synth  # a crnn_synth_data.SynthConfig, validated with the training config
        self.seed = seed
        self.size = 0
        self._renderer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # Workers build their own renderer: fonts and caches are not worth pickling.
        return {**self.__dict__, "_renderer": None}

    def warm(self) -> None:
        """Build the renderer here once, so a fresh machine scans its fonts (and fills the cache) only once."""
        if self._renderer is None:
            from crnn_synth_data import WordRenderer

            self._renderer = WordRenderer(self.config)

    def get(self, i: int) -> tuple[np.ndarray, str]:
        """Gray image and text of sample ``i`` of this stream (the same in every process and every run)."""
        self.warm()
        sample = self._renderer.render(self.seed, i)
        return sample.image, sample.text


def check_data_paths(config: Any) -> None:
    """ConfigError, naming the config key, for a validation folder or data source path that is not there: checked
    when the config is loaded, not after the model is built (a labeled folder must hold labels.tsv)."""
    places = [(f"val.folders[{i}]", "folder", folder) for i, folder in enumerate(config.val.folders)]
    places += [(f"data.sources[{i}].path", s.type, s.path) for i, s in enumerate(config.data.sources) if s.type != "synth"]
    for key, kind, path in places:
        p = Path(path)
        if kind == "folder" and not (p / LABELS_FILE).is_file():
            found = "not a labeled folder (no labels.tsv)" if p.is_dir() else "no such folder"
            raise ConfigError(f"{key} {path}: {found}")
        if kind == "lmdb" and not p.exists():
            raise ConfigError(f"{key} {path}: no such LMDB dataset")


def build_sources(config: Any, charset: Charset, seed: int) -> list[Any]:
    """One random-access source per ``data.sources`` entry (``seed``: this rank's synthetic stream)."""
    sources: list[Any] = []
    for s in config.data.sources:
        if s.type == "synth":
            sources.append(_SynthSource(config.synth, seed))
        else:
            sources.append(_MapSource(s.type, s.path, charset, s.holdout, s.augment))
    return sources


# ---------------------------------------------------------------------------------------------
# Width-bucketed training batches
# ---------------------------------------------------------------------------------------------


def single_threaded_cv2() -> None:
    """Make OpenCV single-threaded; call in the parent before any worker starts.

    Calling cv2.setNumThreads in a forked worker whose parent already ran a threaded cv2 call deadlocks
    (the child tears down a thread pool it inherited without its threads), so it is done once, up front.
    """
    import cv2

    cv2.setNumThreads(1)


def worker_init(_worker_id: int) -> None:
    """Each data worker uses one thread: the cores are shared with the trainer and other workers."""
    torch.set_num_threads(1)


_STREAMS: weakref.WeakSet[BatchStream] = weakref.WeakSet()


def stop_all_streams() -> None:
    """Tell every stream of this process to stop rendering (also after an error or Ctrl-C)."""
    for stream in list(_STREAMS):
        stream.stop.set()


class BatchStream(IterableDataset):
    """An endless stream of ready batches, made in DataLoader workers.

    Samples come in pools of ``pool_batches * batch_size``: a pool is sorted by width and cut into
    ``pool_batches`` batches (little padding), which are shuffled; with ``equal_widths`` each image of a batch is
    stretched from its source to the batch's widest (never squeezed), so every sample fills the batch and the
    recurrent layers run unpacked (the batches' samples are the same either way). Pool ``p`` is built by worker
    ``p % W`` and is a pure function of (seed, rank, p). The DataLoader takes one batch from each worker
    in turn, so batch ``k`` of the run is fixed by k and W; on resume at step ``s`` worker ids are rotated
    by ``s`` and each skips what it had already delivered, continuing the same sequence exactly.
    """

    def __init__(
        self,
        sources: list[Any],
        weights: list[float],
        charset: Charset,
        preprocess: PreprocessConfig,
        batch_size: int,
        pool_batches: int,
        seed: int,
        rank: int = 0,
        start_step: int = 0,
        equal_widths: bool = False,
    ) -> None:
        super().__init__()
        # Set by the trainer when it is done: workers then drop the pool they are rendering, so that the
        # DataLoader's shutdown (which waits up to 5 s per busy worker) is immediate.
        self.stop = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn").Event()
        _STREAMS.add(self)
        self.sources, self.charset, self.preprocess = sources, charset, preprocess
        w = np.asarray(weights, dtype=np.float64)
        self.weights = w / w.sum()
        self.batch_size, self.pool_batches = batch_size, pool_batches
        self.seed, self.rank, self.start_step = seed, rank, start_step
        self.equal_widths = equal_widths
        self._named = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        n_workers, wid = (info.num_workers, info.id) if info else (1, 0)
        per_round = n_workers * self.pool_batches
        role = (wid + self.start_step) % n_workers
        offset = self.start_step % per_round
        pool = (self.start_step // per_round) * n_workers + role
        skip = (offset - role + n_workers - 1) // n_workers if offset > role else 0
        while not self.stop.is_set():
            for batch in self.make_pool(pool)[skip:]:
                yield batch
            skip, pool = 0, pool + n_workers

    def make_pool(self, pool: int) -> list[dict[str, Any]]:
        """The ``pool_batches`` batches of pool ``pool`` (always that many; bad samples only shrink a batch)."""
        n = self.batch_size * self.pool_batches
        rng = np.random.default_rng([self.seed, self.rank, pool])
        choice = rng.choice(len(self.sources), size=n, p=self.weights) if len(self.sources) > 1 else np.zeros(n, int)
        picks = rng.integers(0, 2**62, size=n)
        # (prepared array, ids, text, the gray it came from: kept only to stretch it to its batch's width)
        samples: list[tuple[np.ndarray, list[int], str, np.ndarray | None]] = []
        bad: list[str] = []
        too_long = 0
        for j in range(n):
            if self.stop.is_set():
                return []
            src = self.sources[choice[j]]
            index = pool * n + j if isinstance(src, _SynthSource) else int(picks[j] % src.size)
            try:
                gray, text = src.get(index)
                if gray.ndim == 3:
                    gray = gray.mean(axis=2).astype(np.uint8)
                if getattr(src, "augment", None) is not None:
                    gray = src.augment(gray, int(picks[j]))  # the sample's own seed: the pool stays reproducible
                arr = normalize(gray, self.preprocess, f"sample {index}")
                ids = self.charset.encode(text)
            except Exception as e:  # noqa: BLE001 -- one bad sample (or renderer bug) must not end a run
                bad.append(f"{getattr(src, 'path', 'synth') or 'synth'}[{index}]: {e}")
                continue
            # CTC cannot align a label that needs more frames than the image has: skip it (counted).
            if not ids or ctc_frames_needed(ids) > CRNN.frames_for_width(arr.shape[1]):
                too_long += 1
                continue
            samples.append((arr, ids, text, gray if self.equal_widths else None))
        if bad and self._named < MAX_NAMED_PROBLEMS:  # name the first few per process, count the rest
            report_problems(f"pool {pool}", bad[: MAX_NAMED_PROBLEMS - self._named])
            self._named += len(bad)
        samples.sort(key=lambda s: s[0].shape[1])
        size = -(-len(samples) // self.pool_batches) if samples else 0
        chunks = [samples[i * size : (i + 1) * size] for i in range(self.pool_batches)]
        order = rng.permutation(self.pool_batches)
        # Spread the pool's skip counts over its batches so the trainer's totals stay right.
        return [self._batch(chunks[i], len(bad) if k == 0 else 0, too_long if k == 0 else 0) for k, i in enumerate(order)]

    def _batch(self, chunk: list[tuple[np.ndarray, list[int], str, np.ndarray | None]], bad: int,
               too_long: int) -> dict[str, Any]:
        if chunk:
            arrays = [s[0] for s in chunk]
            if self.equal_widths:
                # Resized once from the source (not the prepared array again): the same interpolation as any image
                # of that aspect. Stretching only adds CTC frames, so the frame check made on the own width holds.
                width = max(a.shape[1] for a in arrays)
                arrays = [a if a.shape[1] == width else resize_normalized(s[3], width, self.preprocess)
                          for a, s in zip(arrays, chunk)]
            images, widths = collate(arrays, self.preprocess)
        else:
            images, widths = torch.zeros(0, 1, self.preprocess.height, 32), torch.zeros(0, dtype=torch.long)
        return {
            "images": images,
            "widths": widths,
            "targets": torch.tensor([i for s in chunk for i in s[1]], dtype=torch.long),
            "target_lengths": torch.tensor([len(s[1]) for s in chunk], dtype=torch.long),
            "texts": [s[2] for s in chunk],
            "bad": bad,
            "too_long": too_long,
        }


def make_loader(stream: BatchStream, num_workers: int, prefetch_factor: int, pin_memory: bool, seed: int) -> DataLoader:
    """A DataLoader that passes the stream's ready batches through (batch_size=None)."""
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=prefetch_factor, worker_init_fn=worker_init)
    # An own generator: creating the loader must not draw from the global RNG (resume exactness).
    return DataLoader(
        stream, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed), **kwargs,
    )


# ---------------------------------------------------------------------------------------------
# The held-out synthetic validation set
# ---------------------------------------------------------------------------------------------


class _SynthRange(IterableDataset):
    """Samples ``[0, size)`` of a renderer, split across workers, as (index, prepared array, text) chunks."""

    def __init__(self, source: _SynthSource, size: int, preprocess: PreprocessConfig, charset: Charset) -> None:
        super().__init__()
        self.source, self.size, self.preprocess, self.charset = source, size, preprocess, charset

    def __iter__(self) -> Iterator[list[tuple[int, np.ndarray, str]]]:
        info = get_worker_info()
        n_workers, wid = (info.num_workers, info.id) if info else (1, 0)
        chunk: list[tuple[int, np.ndarray, str]] = []
        for i in range(wid, self.size, n_workers):
            try:
                gray, text = self.source.get(i)
                if gray.ndim == 3:
                    gray = gray.mean(axis=2).astype(np.uint8)
                if not self.charset.supports(text) or not text:
                    continue
                chunk.append((i, normalize(gray, self.preprocess, f"val {i}"), text))
            except (CRNNError, ValueError):
                continue
            if len(chunk) == 64:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def _identity(x: Any) -> Any:
    return x


def render_synth_val(
    config: Any, charset: Charset, preprocess: PreprocessConfig, num_workers: int
) -> tuple[list[np.ndarray], list[str]]:
    """The fixed synthetic validation set (its own seed), rendered by ``num_workers`` workers at once."""
    source = _SynthSource(config.synth, config.val.synth_seed)
    source.warm()
    ds = _SynthRange(source, config.val.synth_size, preprocess, charset)
    workers = min(num_workers, max(config.val.synth_size // 64, 0))
    loader = DataLoader(
        ds, batch_size=None, num_workers=workers, collate_fn=_identity,
        worker_init_fn=worker_init if workers else None, generator=torch.Generator().manual_seed(0),
    )
    items = sorted((s for chunk in loader for s in chunk), key=lambda s: s[0])
    return [s[1] for s in items], [s[2] for s in items]
