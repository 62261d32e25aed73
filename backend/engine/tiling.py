"""Tiles with overlap, and the core of each tile that is kept when stitching.

Cores partition the area exactly: every pixel belongs to the core of one tile, cut in the middle of
each overlap. Interior cut edges are thus at least overlap/2 away from the tile edge the model saw,
while scene edges stay scene edges — for a translation-consistent model the stitched result equals
the single-window result.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """A 1-D interval [start, stop) in pixels of the area."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Tile:
    """One model input: the window read (`cols` × `rows`) and the core kept from it."""

    index: int
    cols: Span
    rows: Span
    core_cols: Span
    core_rows: Span

    @property
    def core_slices(self) -> tuple[slice, slice]:
        """(rows, cols) of the core inside the window read, to index the window's arrays."""
        return (
            slice(self.core_rows.start - self.rows.start, self.core_rows.stop - self.rows.start),
            slice(self.core_cols.start - self.cols.start, self.core_cols.stop - self.cols.start),
        )


def _axis_tiles(length: int, tile: int, overlap: int) -> list[tuple[Span, Span]]:
    """(window, core) spans along one axis; the last window is shifted back to end at the edge."""
    if length <= tile:
        return [(Span(0, length), Span(0, length))]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride)) + [length - tile]
    windows = [Span(s, s + tile) for s in starts]
    cuts = [0] + [(windows[i + 1].start + windows[i].stop) // 2 for i in range(len(windows) - 1)] + [length]
    return [(w, Span(cuts[i], cuts[i + 1])) for i, w in enumerate(windows)]


def plan_tiles(width: int, height: int, tile: int, overlap: int) -> list[Tile]:
    """Row-major tiles covering a width × height area."""
    if tile < 1:
        raise ValueError("tile size must be positive")
    if not 0 <= overlap < tile:
        raise ValueError("overlap must be at least 0 and smaller than the tile size")
    tiles = []
    for rows, core_rows in _axis_tiles(height, tile, overlap):
        for cols, core_cols in _axis_tiles(width, tile, overlap):
            tiles.append(Tile(len(tiles), cols, rows, core_cols, core_rows))
    return tiles
