"""SyntheticWordDataset: an endless stream of rendered samples, split across DataLoader workers and ranks.

Partitioning. The global stream of ``seed`` is sample 0, 1, 2, ... (each rendered by
``render_sample(config, seed, start + i)``). It is cut into blocks of ``block_size`` consecutive
samples. Block ``b`` goes to rank ``b % world_size``; a rank's blocks ``j = 0, 1, 2, ...`` are dealt
round-robin to its K DataLoader workers (worker ``j % K``). Worker k of rank r therefore renders

    index = start + ((m * K + k) * world_size + r) * block_size + o,   m = 0, 1, ...;  o < block_size

Because a DataLoader takes batches from its workers round-robin, passing ``block_size`` equal to the
DataLoader's ``batch_size`` makes every rank see the same batches in the same order whatever K is
(with ``block_size=1`` the same holds for ``batch_size=1``). No index is rendered twice across workers
or ranks. To resume after ``n`` global samples were consumed (``n = steps * batch_size * world_size``),
pass ``start=n`` or call :meth:`set_start`.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import IterableDataset, get_worker_info

from crnn_synth_data.config import SynthConfig
from crnn_synth_data.render import Sample, WordRenderer


class SyntheticWordDataset(IterableDataset):
    """Yields :class:`Sample` objects rendered on the fly, forever or ``length`` per rank."""

    def __init__(
        self,
        config: SynthConfig | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        length: int | None = None,
        start: int = 0,
        block_size: int = 1,
    ) -> None:
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        if block_size < 1 or start < 0 or (length is not None and length < 0):
            raise ValueError("block_size must be >= 1, start and length >= 0")
        self.config = config or SynthConfig()
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.length = length
        self.start = start
        self.block_size = block_size
        # Built now, in the main process: a missing font or package fails here with a clear error,
        # and fork()ed DataLoader workers inherit the fonts, lexicon and glyph caches.
        self._renderer: WordRenderer | None = WordRenderer(self.config)

    def set_start(self, index: int) -> None:
        """Continue the global stream at ``index`` (samples consumed so far, all ranks together)."""
        if index < 0:
            raise ValueError("start index must be >= 0")
        self.start = index

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("an endless SyntheticWordDataset has no length")
        return self.length

    def global_index(self, i: int) -> int:
        """The global stream index of this rank's ``i``-th sample."""
        block, offset = divmod(i, self.block_size)
        return self.start + (block * self.world_size + self.rank) * self.block_size + offset

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        k, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self._renderer is None:  # unpickled in a spawned worker: build its own
            self._renderer = WordRenderer(self.config)
        # No cv2.setNumThreads() here: after fork() it can deadlock on the parent's thread pool
        # (DataLoader workers already run torch with one thread).
        m = 0
        while True:
            first = (m * workers + k) * self.block_size  # this rank's local sample number
            for i in range(first, first + self.block_size):
                if self.length is not None and i >= self.length:
                    return
                yield self._renderer.render(self.seed, self.global_index(i))
            m += 1

    def __getstate__(self) -> dict:
        # Do not pickle the renderer (fonts, caches) into spawned workers: they build their own.
        state = self.__dict__.copy()
        state["_renderer"] = None
        return state
