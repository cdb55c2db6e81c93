"""numba kernels of :class:`campaign.surrogate.compiled.BinnedForest`.

Imported on first use, so that a missing numba only disables the numba
backend. numba caches the compiled machine code on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["bin_rows", "sum_trees", "forest_margins"]

_OPTIONS = {"nogil": True, "cache": True, "boundscheck": False}


@numba.njit(**_OPTIONS)
def bin_rows(x, edges, edge_offsets):
    """Return the bin of every value, int32 of the shape of ``x``: the count of its feature's edges ``<=`` it."""
    n_rows, n_features = x.shape
    bins = np.empty((n_rows, n_features), dtype=np.int32)
    for i in range(n_rows):
        for f in range(n_features):
            first, low, high = edge_offsets[f], edge_offsets[f], edge_offsets[f + 1]
            value = x[i, f]
            while low < high:
                middle = (low + high) >> 1
                if edges[middle] <= value:
                    low = middle + 1
                else:
                    high = middle
            bins[i, f] = low - first
    return bins


@numba.njit(**_OPTIONS)
def sum_trees(bins, split, leaf, first_tree, last_tree, base, out):
    """Write ``base`` plus the leaves of trees ``first_tree:last_tree`` into ``out``, 8 rows at a time.

    The eight walks of a block are independent, so the CPU overlaps their
    memory loads. Positions kept in local variables were faster than in an array.
    """
    n_rows = bins.shape[0]
    n_internal = split.shape[1]
    depth = int(np.log2(n_internal + 1) + 0.5)
    full = n_rows - n_rows % 8
    for s in range(0, full, 8):
        b0, b1, b2, b3 = bins[s], bins[s + 1], bins[s + 2], bins[s + 3]
        b4, b5, b6, b7 = bins[s + 4], bins[s + 5], bins[s + 6], bins[s + 7]
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = base
        for k in range(first_tree, last_tree):
            tree = split[k]
            j0 = j1 = j2 = j3 = j4 = j5 = j6 = j7 = 0
            for _ in range(depth):
                n0, n1, n2, n3 = tree[j0], tree[j1], tree[j2], tree[j3]
                n4, n5, n6, n7 = tree[j4], tree[j5], tree[j6], tree[j7]
                j0 = 2 * j0 + 1 + (b0[n0 & 255] > (n0 >> 8))
                j1 = 2 * j1 + 1 + (b1[n1 & 255] > (n1 >> 8))
                j2 = 2 * j2 + 1 + (b2[n2 & 255] > (n2 >> 8))
                j3 = 2 * j3 + 1 + (b3[n3 & 255] > (n3 >> 8))
                j4 = 2 * j4 + 1 + (b4[n4 & 255] > (n4 >> 8))
                j5 = 2 * j5 + 1 + (b5[n5 & 255] > (n5 >> 8))
                j6 = 2 * j6 + 1 + (b6[n6 & 255] > (n6 >> 8))
                j7 = 2 * j7 + 1 + (b7[n7 & 255] > (n7 >> 8))
            values = leaf[k]
            a0 += values[j0 - n_internal]
            a1 += values[j1 - n_internal]
            a2 += values[j2 - n_internal]
            a3 += values[j3 - n_internal]
            a4 += values[j4 - n_internal]
            a5 += values[j5 - n_internal]
            a6 += values[j6 - n_internal]
            a7 += values[j7 - n_internal]
        out[s], out[s + 1], out[s + 2], out[s + 3] = a0, a1, a2, a3
        out[s + 4], out[s + 5], out[s + 6], out[s + 7] = a4, a5, a6, a7
    for i in range(full, n_rows):
        row = bins[i]
        total = base
        for k in range(first_tree, last_tree):
            j = 0
            for _ in range(depth):
                node = split[k, j]
                j = 2 * j + 1 + (row[node & 255] > (node >> 8))
            total += leaf[k, j - n_internal]
        out[i] = total


@numba.njit(**_OPTIONS)
def forest_margins(x, edges, edge_offsets, split, leaf, tree_offsets, base_margin):
    """Bin float32 rows ``x`` once and sum the trees of every output; returns shape (n_outputs, n_rows)."""
    bins = bin_rows(x, edges, edge_offsets)
    n_outputs = len(base_margin)
    out = np.empty((n_outputs, x.shape[0]), dtype=np.float64)
    for g in range(n_outputs):
        sum_trees(bins, split, leaf, tree_offsets[g], tree_offsets[g + 1], base_margin[g], out[g])
    return out
