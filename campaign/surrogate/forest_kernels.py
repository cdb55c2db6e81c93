"""numba kernels of :class:`campaign.surrogate.compiled.BinnedForest`.

Imported on first use, so that a missing numba only disables the numba
backend. numba caches the compiled machine code on disk (``cache=True``).

The kernel walks the trees for a block of ``BLOCK_ROWS`` rows at a time.
The bins of a block are stored feature by feature, ``block[f * BLOCK_ROWS + r]``,
so one base address serves all rows of the block and each row adds a
constant offset. A split packs ``(edge << FEATURE_BITS) | (feature * BLOCK_ROWS)``,
and the bins are stored shifted left by ``FEATURE_BITS``, so "bin > edge" is one
unsigned comparison of the stored bin with the whole packed split.
Nodes are numbered from 1 (children ``2i`` and ``2i + 1``), so a step down
the tree is ``i = 2i + (went right)``. All indices are unsigned, which
spares numba's check for negative indices.
"""

from __future__ import annotations

import numba
import numpy as np

from campaign.surrogate.compiled import BLOCK_ROWS, FEATURE_BITS

__all__ = ["forest_margins"]

_OPTIONS = {"nogil": True, "cache": True, "boundscheck": False}
_FEATURE_MASK = np.uint32(2 ** FEATURE_BITS - 1)
_SHIFT = np.uint32(FEATURE_BITS)


@numba.njit(**_OPTIONS)
def _fill_block(block, x, first_row, edges, edge_offsets):
    """Write the shifted bins of rows ``first_row:first_row + 8`` of ``x`` into ``block``.

    The bin of a value is the count of its feature's edges ``<=`` it. Rows
    past the end of ``x`` get bin 0, and their results are never written out.
    """
    n_rows, n_features = x.shape
    for f in range(n_features):
        for r in range(BLOCK_ROWS):
            row = first_row + r
            bin_ = 0
            if row < n_rows:
                first, low, high = edge_offsets[f], edge_offsets[f], edge_offsets[f + 1]
                value = x[row, f]
                while low < high:
                    middle = (low + high) >> 1
                    if edges[middle] <= value:
                        low = middle + 1
                    else:
                        high = middle
                bin_ = low - first
            block[f * BLOCK_ROWS + r] = np.uint32(bin_) << _SHIFT


@numba.njit(**_OPTIONS)
def _sum_block(block, split, leaf, first_tree, last_tree, depth, base, out, first_row):
    """Add ``base`` and the leaves of trees ``first_tree:last_tree`` for the eight rows of ``block``.

    The eight walks (``BLOCK_ROWS``) are independent, so the CPU overlaps
    their loads. They are written out because numba keeps separate local
    variables in registers, where an array of positions was slower.
    """
    mask = _FEATURE_MASK
    n_leaves = np.uint64(1) << np.uint64(depth)
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = base
    for k in range(first_tree, last_tree):
        tree = split[k]
        i0 = i1 = i2 = i3 = i4 = i5 = i6 = i7 = np.uint64(1)
        for _ in range(depth):
            n = tree[i0]
            i0 = i0 + i0 + np.uint64(block[n & mask] > n)
            n = tree[i1]
            i1 = i1 + i1 + np.uint64(block[(n & mask) + np.uint32(1)] > n)
            n = tree[i2]
            i2 = i2 + i2 + np.uint64(block[(n & mask) + np.uint32(2)] > n)
            n = tree[i3]
            i3 = i3 + i3 + np.uint64(block[(n & mask) + np.uint32(3)] > n)
            n = tree[i4]
            i4 = i4 + i4 + np.uint64(block[(n & mask) + np.uint32(4)] > n)
            n = tree[i5]
            i5 = i5 + i5 + np.uint64(block[(n & mask) + np.uint32(5)] > n)
            n = tree[i6]
            i6 = i6 + i6 + np.uint64(block[(n & mask) + np.uint32(6)] > n)
            n = tree[i7]
            i7 = i7 + i7 + np.uint64(block[(n & mask) + np.uint32(7)] > n)
        values = leaf[k]
        a0 += values[i0 - n_leaves]
        a1 += values[i1 - n_leaves]
        a2 += values[i2 - n_leaves]
        a3 += values[i3 - n_leaves]
        a4 += values[i4 - n_leaves]
        a5 += values[i5 - n_leaves]
        a6 += values[i6 - n_leaves]
        a7 += values[i7 - n_leaves]
    totals = (a0, a1, a2, a3, a4, a5, a6, a7)
    for r in range(min(BLOCK_ROWS, len(out) - first_row)):
        out[first_row + r] = totals[r]


@numba.njit(**_OPTIONS)
def forest_margins(x, edges, edge_offsets, split, leaf, tree_offsets, base_margin):
    """Sum the trees of every output for float32 rows ``x``, returning shape (n_outputs, n_rows).

    Each block of eight rows is binned once and then walks the trees of all outputs.
    """
    n_rows, n_features = x.shape
    n_outputs = len(base_margin)
    depth = int(np.log2(split.shape[1]) + 0.5)
    out = np.empty((n_outputs, n_rows), dtype=np.float64)
    block = np.empty(n_features * BLOCK_ROWS, dtype=np.uint32)
    for first_row in range(0, n_rows, BLOCK_ROWS):
        _fill_block(block, x, first_row, edges, edge_offsets)
        for g in range(n_outputs):
            _sum_block(block, split, leaf, tree_offsets[g], tree_offsets[g + 1], depth,
                       base_margin[g], out[g], first_row)
    return out
