"""The metadata of an exported .onnx model (where `crnn export` puts the crnn-ocr header), read without onnx,
onnxruntime or torch.

`crnn ocr` reads a model's preprocessing before it starts its image decoders; for an .onnx file that is the
model's ``metadata_props`` (ModelProto field 14), which a scan of the protobuf's top-level fields finds
without parsing the graph, in milliseconds.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from crnn.errors import CheckpointError

ONNX_SUFFIX = ".onnx"
_METADATA_PROPS = 14  # ModelProto.metadata_props: repeated StringStringEntryProto {key = 1, value = 2}


def is_onnx_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an ONNX model (by its suffix)."""
    return Path(path).suffix.lower() == ONNX_SUFFIX


def _varint(buf: mmap.mmap | bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: mmap.mmap | bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field in buf[start:end]; other fields skipped."""
    out = []
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise ValueError("field runs past the end")
            out.append((number, pos, pos + size))
            pos += size
        else:
            raise ValueError(f"wire type {wire}")
    if pos != end:
        raise ValueError("truncated message")
    return out


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata_props of an .onnx file as a dict; CheckpointError when it is no readable ONNX model."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            props: dict[str, str] = {}
            for number, start, end in _fields(buf, 0, len(buf)):
                if number == _METADATA_PROPS:
                    entry = {n: buf[s:e].decode("utf-8") for n, s, e in _fields(buf, start, end)}
                    props[entry.get(1, "")] = entry.get(2, "")
            return props
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not a readable ONNX model ({e})") from None
