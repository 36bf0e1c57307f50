"""Reading order of text regions in a photo: rows from top to bottom, left to right within a row."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def reading_order(polygons: Sequence[np.ndarray]) -> list[int]:
    """Indices of ``polygons`` (each (N, 2)) in reading order.

    A region joins a row when its vertical centre lies within the vertical extent of the row's first region
    (regions taken by their top edge); rows go top to bottom and each row left to right. Text set on a slant
    across the photo may be ordered row by row where a reader would follow the slant; the order never changes
    which words are found, only how they are listed."""
    if not polygons:
        return []
    boxes = [(float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 1].max())) for p in polygons]
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0]))
    rows: list[list[int]] = []
    for i in order:
        centre = (boxes[i][1] + boxes[i][2]) / 2
        if rows and boxes[rows[-1][0]][1] <= centre <= boxes[rows[-1][0]][2]:
            rows[-1].append(i)
        else:
            rows.append([i])
    return [i for row in rows for i in sorted(row, key=lambda k: boxes[k][0])]
