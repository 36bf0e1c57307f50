"""Word-image datasets on disk: LMDB (image-%09d / label-%09d / num-samples) and folders with labels.tsv."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from crnn.charset import DEFAULT_CHARS, Charset
from crnn.errors import ConfigError
from crnn.io.labeled_folder import LABELS_FILE, MAX_NAMED_PROBLEMS, LabeledFolder

log = logging.getLogger(__name__)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an (H, W) or (H, W, 3) RGB uint8 image."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape} as PNG")
    return buf.tobytes()


def decode_gray(data: bytes | Path) -> np.ndarray:
    """A grayscale (H, W) uint8 image from encoded bytes or a path; raises ValueError when unreadable."""
    try:
        from crnn.io.preprocess import load_image
    except ImportError:
        load_image = None
    if load_image is not None:
        return load_image(data if isinstance(data, bytes) else Path(data))
    if not isinstance(data, bytes):
        data = Path(data).read_bytes()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None or img.size == 0:
        raise ValueError("not a decodable image")
    return img


class LmdbWriter:
    """Appends (encoded image, label) pairs to an LMDB in the field's layout; indices start at 1."""

    def __init__(self, path: str | Path, map_size: int = 1 << 30, commit_every: int = 1000) -> None:
        import lmdb

        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(self.path), map_size=map_size, subdir=True, lock=True)
        self.commit_every = commit_every
        self.count = 0
        self._pending: list[tuple[bytes, bytes]] = []

    def add(self, image: bytes | np.ndarray, text: str) -> None:
        """Queue one sample (PNG-encoded if given as an array)."""
        data = image if isinstance(image, bytes) else encode_png(image)
        self.count += 1
        self._pending.append((b"image-%09d" % self.count, data))
        self._pending.append((b"label-%09d" % self.count, text.encode("utf-8")))
        if len(self._pending) >= 2 * self.commit_every:
            self._flush()

    def _flush(self, final: bool = False) -> None:
        import lmdb

        items = list(self._pending)
        if final:
            items.append((b"num-samples", str(self.count).encode()))
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for k, v in items:
                        txn.put(k, v)
                break
            except lmdb.MapFullError:
                # Grow the map instead of guessing the final size up front.
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
        self._pending.clear()

    def close(self) -> None:
        """Write the pending samples and ``num-samples``; the database is then complete."""
        self._flush(final=True)
        self.env.sync()
        self.env.close()

    def __enter__(self) -> LmdbWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FolderWriter:
    """Writes PNGs in sub-folders of 1,000 and a ``labels.tsv`` of ``relative_path<TAB>text`` lines."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self._labels = open(self.root / LABELS_FILE, "w", encoding="utf-8", newline="\n")

    def add(self, image: bytes | np.ndarray, text: str) -> None:
        """Write one sample's image file and label line."""
        if "\t" in text or "\n" in text or "\r" in text:
            raise ValueError(f"a label may not hold tabs or line breaks: {text!r}")
        data = image if isinstance(image, bytes) else encode_png(image)
        rel = f"images/{self.count // 1000:06d}/{self.count:09d}.png"
        self.count += 1
        path = self.root / rel
        if self.count % 1000 == 1:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self._labels.write(f"{rel}\t{text}\n")

    def close(self) -> None:
        """Flush ``labels.tsv``."""
        self._labels.close()

    def __enter__(self) -> FolderWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SkippingDataset(Dataset):
    """Shared reader logic: label checks up front, unreadable images replaced by the next good one."""

    def __init__(self, charset: str | Charset | None) -> None:
        if isinstance(charset, str):
            charset = Charset(charset)
        self.charset = charset
        self.skipped = 0
        self._bad_names: list[str] = []

    def _label_ok(self, name: str, text: str) -> bool:
        if not text:
            return self._bad(name, "empty label")
        if self.charset is not None and not self.charset.supports(text):
            return self._bad(name, f"characters outside the charset {''.join(self.charset.unsupported(text))!r}")
        return True

    def _bad(self, name: str, why: str) -> bool:
        self.skipped += 1
        if len(self._bad_names) < MAX_NAMED_PROBLEMS:
            self._bad_names.append(f"{name} ({why})")
        return False

    def _report(self, where: str) -> None:
        if self.skipped:
            more = f" and {self.skipped - len(self._bad_names)} more" if self.skipped > len(self._bad_names) else ""
            log.warning("%s: skipped %d bad samples: %s%s", where, self.skipped, "; ".join(self._bad_names), more)

    def _load(self, i: int) -> tuple[np.ndarray, str]:
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[np.ndarray, str]:
        """(image (H, W) uint8 gray, text); an unreadable image is skipped for the next readable sample."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(i)
        for k in range(n):
            j = (i + k) % n
            try:
                return self._load(j)
            except Exception as e:  # corrupt data must not stop a training run
                self._bad(self._name(j), f"{type(e).__name__}: {e}")
                if self.skipped <= MAX_NAMED_PROBLEMS:
                    log.warning("skipping unreadable sample %s: %s", self._name(j), e)
        raise RuntimeError("no readable image in the dataset")

    def _name(self, i: int) -> str:
        return str(i)


class FolderDataset(_SkippingDataset):
    """Reads a folder with ``labels.tsv`` (``relative_path<TAB>text``) and the images it names."""

    def __init__(self, root: str | Path, charset: str | Charset | None = DEFAULT_CHARS) -> None:
        super().__init__(charset)
        self.root = Path(root)
        try:
            # Missing images are refused up front here: __getitem__ would otherwise skip them at every epoch.
            folder = LabeledFolder.read(self.root, self.charset, check_files=True)
        except ConfigError:
            raise FileNotFoundError(
                f"{self.root / LABELS_FILE} not found (expected relative_path<TAB>text lines)") from None
        for p in folder.problems:
            self._bad(f"{p.labels.name}:{p.line} {p.rel}", p.reason)
        self.items: list[tuple[str, str]] = folder.items
        self._report(str(self.root))

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, i: int) -> tuple[np.ndarray, str]:
        rel, text = self.items[i]
        return decode_gray(self.root / rel), text

    def _name(self, i: int) -> str:
        return self.items[i][0]


class LmdbDataset(_SkippingDataset):
    """Reads an LMDB with ``num-samples``, ``image-%09d`` and ``label-%09d`` keys (indices from 1)."""

    def __init__(self, path: str | Path, charset: str | Charset | None = DEFAULT_CHARS) -> None:
        super().__init__(charset)
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} not found")
        env = self._open()
        with env.begin() as txn:
            raw = txn.get(b"num-samples")
            if raw is None:
                raise ValueError(f"{self.path} has no num-samples key: not a text-recognition LMDB")
            total = int(raw)
            self.keys: list[int] = []
            self.labels: list[str] = []
            for k in range(1, total + 1):
                label = txn.get(b"label-%09d" % k)
                name = f"#{k}"
                if label is None:
                    self._bad(name, "missing label")
                    continue
                try:
                    text = label.decode("utf-8")
                except UnicodeDecodeError:
                    self._bad(name, "label is not utf-8")
                    continue
                if self._label_ok(name, text):
                    self.keys.append(k)
                    self.labels.append(text)
        env.close()
        self._env = None
        self._pid = -1
        self._report(str(self.path))

    def _open(self):
        import lmdb

        return lmdb.open(str(self.path), readonly=True, lock=False, readahead=False, meminit=False,
                         subdir=self.path.is_dir())

    def __len__(self) -> int:
        return len(self.keys)

    def _load(self, i: int) -> tuple[np.ndarray, str]:
        if self._env is None or self._pid != os.getpid():
            # An LMDB environment must not cross fork(): each DataLoader worker opens its own.
            self._env = self._open()
            self._pid = os.getpid()
        with self._env.begin() as txn:
            data = txn.get(b"image-%09d" % self.keys[i])
        if data is None:
            raise ValueError("missing image")
        return decode_gray(bytes(data)), self.labels[i]

    def close(self) -> None:
        """Close this process's environment (LMDB refuses to open one path twice in a process)."""
        if self._env is not None and self._pid == os.getpid():
            self._env.close()
        self._env = None

    def _name(self, i: int) -> str:
        return f"#{self.keys[i]}"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_env"] = None
        return state
