"""Compiled predictors of XGBoost boosters, cached on local disk by model hash.

Two compiled backends exist, and the XGBoost predictor is the fallback:

- ``"numba"`` (default): every tree is padded to a complete binary tree of
  the booster's maximum depth (a :class:`FlatForest`, cached on disk). At
  load time the thresholds of each feature are sorted into bin edges and
  every split becomes "bin of the feature > bin of the threshold", packed
  with its feature into one uint32 (a :class:`BinnedForest`). A numba kernel
  bins a block of eight rows, then walks them through the trees together, so
  the walks of different rows overlap in the CPU. The regressor and the
  classifier of a surrogate share one binned forest and one kernel call.
- ``"tl2cgen"``: treelite reads the booster and tl2cgen compiles it to a
  shared library with ``-O0``. With tl2cgen 1.0.0, ``-O0`` compiled 300 trees
  of depth 6 in about 9 s where the default ``-O3`` took 36 to 89 s, at the
  same prediction speed.
- ``"xgboost"``: ``Booster.inplace_predict``, with no DMatrix per call.

A :class:`BoosterPredictor` uses its compiled backend for batches of at most
``max_compiled_rows`` rows and ``inplace_predict`` above. tl2cgen was slower
than XGBoost's own predictor on large batches, and XGBoost with many threads
may beat the one-thread numba kernel there. Rows with a missing (NaN)
value also go to XGBoost, which applies each split's default direction.
benchmarks/bench_posterior.py measures all three side by side.

Compiled artifacts are platform-specific, so they live in a local cache
directory (``$CAMPAIGN_CACHE_DIR``, else ``~/.cache/campaign``), never in
the database.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xgboost

from campaign.errors import ConfigError

__all__ = [
    "BACKENDS", "CACHE_ENV", "FlatForest", "BinnedForest", "BoosterPredictor", "CompiledSurrogate",
    "cache_dir", "model_hash", "flatten_booster", "compile_booster", "compile_surrogate", "default_max_compiled_rows",
]

logger = logging.getLogger(__name__)

BACKENDS = ("numba", "tl2cgen", "xgboost")
CACHE_ENV = "CAMPAIGN_CACHE_DIR"
#: Largest batch that goes to tl2cgen; larger ones go to ``inplace_predict``,
#: which was faster on large batches on a 2-core Xeon.
DEFAULT_MAX_TL2CGEN_ROWS = 256
#: Largest batch that goes to numba when XGBoost may use several threads.
#: With one thread numba takes every batch: on a 2-core AMD EPYC it was 2.3x
#: faster than one-thread ``inplace_predict`` at 16,384 rows, and 1.3x faster
#: than two-thread ``inplace_predict``.
# NOTE: an estimate. With many threads XGBoost should win on large batches,
# but the crossover was not measured beyond two threads.
DEFAULT_MAX_NUMBA_ROWS_THREADED = 4096
#: Padding a tree of depth d to a complete tree stores 2**d leaves, so deeper
#: boosters use the XGBoost predictor instead.
MAX_PADDED_DEPTH = 14
#: Rows that the numba kernel walks through the trees together.
BLOCK_ROWS = 8
#: A binned split packs ``feature * BLOCK_ROWS`` into its low 11 bits and its
#: threshold edge into the high 21 bits of an unsigned 32-bit integer.
FEATURE_BITS = 11
MAX_FEATURES = 2 ** FEATURE_BITS // BLOCK_ROWS
MAX_EDGES = 2 ** (32 - FEATURE_BITS) - 1
#: The split of a padding node: no bin is larger, so every row goes left.
PADDING_SPLIT = MAX_EDGES << FEATURE_BITS
#: Relative tolerance of the check against XGBoost after flattening; float32
#: thresholds and leaf sums differ from XGBoost's by rounding (about 2e-5).
CHECK_RTOL = 1e-4
CHECK_ROWS = 32


def cache_dir() -> Path:
    """Return the directory of compiled models: ``$CAMPAIGN_CACHE_DIR/compiled`` or ``~/.cache/campaign/compiled``."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "campaign"
    return Path(root) / "compiled"


def model_hash(booster: xgboost.Booster) -> str:
    """Return the sha256 of a booster's UBJSON serialization, the key of its cached artifacts."""
    return hashlib.sha256(bytes(booster.save_raw("ubj"))).hexdigest()


@dataclass(frozen=True)
class FlatForest:
    """A tree ensemble as complete binary trees in flat arrays.

    Node ``j`` of a tree has children ``2j+1`` (left) and ``2j+2`` (right);
    a row goes right when its feature value is ``>=`` the threshold. Leaves
    of pruned branches are repeated down to the full depth, and padding
    nodes have an infinite threshold, so every row goes left there.

    Attributes:
        feature: Split feature per internal node, shape (n_trees, 2**depth - 1).
        threshold: Split threshold per internal node, float32, same shape.
        leaf: Leaf values, shape (n_trees, 2**depth).
        depth: Depth of every padded tree.
        base_margin: Margin added to the sum of the leaves.
    """

    feature: np.ndarray
    threshold: np.ndarray
    leaf: np.ndarray
    depth: int
    base_margin: float

    def save(self, path: Path) -> None:
        with open(path, "wb") as handle:
            np.savez(handle, feature=self.feature, threshold=self.threshold, leaf=self.leaf,
                     depth=self.depth, base_margin=self.base_margin)

    @classmethod
    def load(cls, path: Path) -> "FlatForest":
        with np.load(path) as data:
            return cls(feature=data["feature"], threshold=data["threshold"], leaf=data["leaf"],
                       depth=int(data["depth"]), base_margin=float(data["base_margin"]))

    def padded(self, depth: int) -> "FlatForest":
        """Return the same forest padded to a larger ``depth``.

        Complete trees number their nodes level by level, so the existing
        nodes keep their positions. The new levels send every row left, to
        the first of the ``2**(depth - self.depth)`` copies of each leaf.
        """
        if depth == self.depth:
            return self
        n_trees, n_internal = len(self.feature), 2 ** depth - 1
        feature = np.zeros((n_trees, n_internal), dtype=np.int32)
        threshold = np.full((n_trees, n_internal), np.inf, dtype=np.float32)
        feature[:, :self.feature.shape[1]] = self.feature
        threshold[:, :self.threshold.shape[1]] = self.threshold
        leaf = np.repeat(self.leaf, 2 ** (depth - self.depth), axis=1)
        return FlatForest(feature, threshold, leaf, depth, self.base_margin)


def flatten_booster(booster: xgboost.Booster) -> FlatForest:
    """Convert a ``gbtree`` booster with numeric splits into a :class:`FlatForest`.

    Raises:
        ConfigError: The booster is not a single-output tree model with
            numeric splits of depth at most ``MAX_PADDED_DEPTH``.
    """
    model = json.loads(bytes(booster.save_raw("json")))["learner"]
    gradient_booster = model["gradient_booster"]
    if gradient_booster.get("name") != "gbtree":
        raise ConfigError(f"only gbtree boosters can be compiled, got {gradient_booster.get('name')!r}")
    trees = gradient_booster["model"]["trees"]
    if int(model["learner_model_param"].get("num_target", "1")) != 1 or any(
        int(tree["tree_param"].get("size_leaf_vector", "1")) > 1 for tree in trees
    ):
        raise ConfigError("only single-output boosters can be compiled")
    if any(tree.get("categories_nodes") for tree in trees):
        raise ConfigError("boosters with categorical splits cannot be compiled")
    if booster.num_features() > MAX_FEATURES:
        raise ConfigError(f"boosters with more than {MAX_FEATURES} features cannot be compiled")

    depth = max((_tree_depth(tree["left_children"], tree["right_children"]) for tree in trees), default=0)
    if depth > MAX_PADDED_DEPTH:
        raise ConfigError(f"trees of depth {depth} are deeper than the compiled maximum {MAX_PADDED_DEPTH}")
    n_internal = 2 ** depth - 1
    feature = np.zeros((len(trees), n_internal), dtype=np.int32)
    threshold = np.full((len(trees), n_internal), np.inf, dtype=np.float32)
    leaf = np.zeros((len(trees), 2 ** depth), dtype=np.float64)
    for k, tree in enumerate(trees):
        _fill_tree(tree, depth, feature[k], threshold[k], leaf[k])

    forest = FlatForest(feature, threshold, leaf, depth, 0.0)
    return _with_base_margin(forest, booster)


def _tree_depth(left: list[int], right: list[int]) -> int:
    depth, stack = 0, [(0, 0)]
    while stack:
        node, level = stack.pop()
        if left[node] < 0:
            depth = max(depth, level)
        else:
            stack.extend([(left[node], level + 1), (right[node], level + 1)])
    return depth


def _fill_tree(tree: dict, depth: int, feature, threshold, leaf) -> None:
    left, right = tree["left_children"], tree["right_children"]
    split_index, split_condition = tree["split_indices"], tree["split_conditions"]
    stack = [(0, 0, 0)]  # (node in the XGBoost tree, position in the complete tree, level)
    while stack:
        node, position, level = stack.pop()
        if left[node] < 0:
            # A leaf at this level covers 2**(depth - level) leaves of the complete tree.
            span = 2 ** (depth - level)
            first = (position - (2 ** level - 1)) * span
            leaf[first:first + span] = split_condition[node]
            continue
        feature[position] = split_index[node]
        threshold[position] = split_condition[node]
        stack.append((left[node], 2 * position + 1, level + 1))
        stack.append((right[node], 2 * position + 2, level + 1))


def _with_base_margin(forest: FlatForest, booster: xgboost.Booster) -> FlatForest:
    """Take the base margin from XGBoost's own margin at one row.

    This avoids decoding ``base_score`` for each objective (its link function
    differs between regression and classification).
    """
    row = np.full((1, booster.num_features()), 0.5, dtype=np.float32)
    margin = float(booster.inplace_predict(row, predict_type="margin")[0])
    sum_of_leaves = float(BinnedForest.build([forest], booster.num_features()).predict_margins(row)[0, 0])
    return FlatForest(forest.feature, forest.threshold, forest.leaf, forest.depth, margin - sum_of_leaves)


@dataclass(frozen=True)
class BinnedForest:
    """One or more forests of the same depth, with splits on binned features.

    The bin of value ``v`` of feature ``f`` is the number of edges of ``f``
    that are ``<= v``. A row goes right at a split on edge number ``m``
    exactly when its bin is ``> m``, the same decision as XGBoost's
    ``v >= threshold`` on float32 values. Each split is packed as
    ``(m << FEATURE_BITS) | (f * BLOCK_ROWS)``, the layout the kernels in
    :mod:`campaign.surrogate.forest_kernels` read. Nodes are numbered from 1,
    so node ``j`` of a :class:`FlatForest` is node ``j + 1`` here.

    Attributes:
        edges: Sorted distinct thresholds of all features, float32, shape (n_edges,).
        edge_offsets: Edges of feature ``f`` are ``edges[edge_offsets[f]:edge_offsets[f + 1]]``.
        split: Packed splits, uint32, shape (n_trees, 2**depth); column 0 is unused.
        leaf: Leaf values, shape (n_trees, 2**depth).
        tree_offsets: Trees of output ``g`` are ``tree_offsets[g]:tree_offsets[g + 1]``.
        base_margin: Base margin per output, shape (n_outputs,).
    """

    edges: np.ndarray
    edge_offsets: np.ndarray
    split: np.ndarray
    leaf: np.ndarray
    tree_offsets: np.ndarray
    base_margin: np.ndarray

    @classmethod
    def build(cls, forests: list[FlatForest], n_features: int) -> "BinnedForest":
        """Bin the splits of ``forests`` (padded to a common depth), one output per forest."""
        depth = max(forest.depth for forest in forests)
        forests = [forest.padded(depth) for forest in forests]
        feature = np.concatenate([forest.feature for forest in forests])
        threshold = np.concatenate([forest.threshold for forest in forests])
        padding = ~np.isfinite(threshold)
        packed = np.full(feature.shape, PADDING_SPLIT, dtype=np.uint32)
        edges = []
        for f in range(n_features):
            used = (feature == f) & ~padding
            feature_edges = np.unique(threshold[used])
            if len(feature_edges) >= MAX_EDGES:
                raise ConfigError(
                    f"feature {f} has {len(feature_edges)} distinct thresholds, more than the compiled "
                    f"maximum {MAX_EDGES - 1}; use the xgboost backend"
                )
            edge = np.searchsorted(feature_edges, threshold[used]).astype(np.uint32)
            packed[used] = (edge << FEATURE_BITS) | np.uint32(f * BLOCK_ROWS)
            edges.append(feature_edges)
        split = np.zeros((len(packed), packed.shape[1] + 1), dtype=np.uint32)
        split[:, 1:] = packed
        return cls(
            edges=np.concatenate(edges).astype(np.float32),
            edge_offsets=np.cumsum([0] + [len(e) for e in edges]).astype(np.int64),
            split=split,
            leaf=np.concatenate([forest.leaf for forest in forests]).astype(np.float64),
            tree_offsets=np.cumsum([0] + [len(forest.leaf) for forest in forests]).astype(np.int64),
            base_margin=np.array([forest.base_margin for forest in forests], dtype=np.float64),
        )

    def predict_margins(self, x: np.ndarray) -> np.ndarray:
        """Predict margins for rows ``x`` without NaN, shape (n, n_features); returns shape (n_outputs, n)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.edge_offsets) - 1:
            raise ValueError(f"expected rows of {len(self.edge_offsets) - 1} features, got shape {x.shape}")
        from campaign.surrogate import forest_kernels

        return forest_kernels.forest_margins(
            x, self.edges, self.edge_offsets, self.split, self.leaf, self.tree_offsets, self.base_margin,
        )


def default_max_compiled_rows(backend: str, threads: int) -> int | float:
    """Return the largest batch for ``backend`` before ``inplace_predict`` takes over, ``inf`` for no limit."""
    if backend == "tl2cgen":
        return DEFAULT_MAX_TL2CGEN_ROWS
    if threads > 1:
        return DEFAULT_MAX_NUMBA_ROWS_THREADED
    return math.inf


class BoosterPredictor:
    """Predicts margins of one booster with a compiled backend or XGBoost.

    Args:
        booster: The XGBoost booster; also the predictor of large batches.
        backend: ``"numba"``, ``"tl2cgen"`` or ``"xgboost"`` (no compilation).
        cache: Directory of compiled artifacts; :func:`cache_dir` when None.
        max_compiled_rows: Largest batch sent to the compiled backend; None
            chooses by backend and threads (see :func:`default_max_compiled_rows`).
        threads: Threads of XGBoost and of tl2cgen's compiler and predictor.

    Attributes:
        backend: The backend in use; ``"xgboost"`` after a failed compilation.
        compile_seconds: Time spent compiling, 0 when the cache had the artifact.
        from_cache: Whether the compiled artifact came from the cache.
    """

    def __init__(
        self,
        booster: xgboost.Booster,
        backend: str = "numba",
        *,
        cache: Path | None = None,
        max_compiled_rows: int | None = None,
        threads: int = 1,
    ):
        if backend not in BACKENDS:
            raise ConfigError(f"unknown compiled backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.booster = booster
        self.booster.set_param({"nthread": threads})
        if max_compiled_rows is None:
            max_compiled_rows = default_max_compiled_rows(backend, threads)
        self.max_compiled_rows = max_compiled_rows
        self.threads = threads
        self.hash = model_hash(booster)
        self.compile_seconds = 0.0
        self.from_cache = False
        self.forest: FlatForest | None = None
        self._predict_compiled = None
        self.backend = "xgboost"
        if backend != "xgboost":
            self._load_or_compile(backend, Path(cache) if cache else cache_dir())

    def __repr__(self) -> str:
        return f"BoosterPredictor(backend={self.backend!r}, hash={self.hash[:12]})"

    def predict_margin(self, x: np.ndarray) -> np.ndarray:
        """Predict the margin (raw score) for rows ``x``, shape (n, n_features); returns shape (n,)."""
        x = np.asarray(x)
        if self._predict_compiled is not None and len(x) <= self.max_compiled_rows and not np.isnan(x).any():
            return self._predict_compiled(x)
        return self.booster.inplace_predict(x, predict_type="margin").astype(np.float64, copy=False)

    def _load_or_compile(self, backend: str, cache: Path) -> None:
        cache.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        try:
            if backend == "numba":
                self._predict_compiled = self._numba_predictor(cache)
            else:
                self._predict_compiled = self._tl2cgen_predictor(cache)
        except (ConfigError, ImportError, OSError, ValueError, RuntimeError, _tl2cgen_error()) as exc:
            # tl2cgen 1.0.0 raises ValueError when gcc is missing and
            # TL2cgenError when compiling fails.
            logger.warning(
                "compiling booster %s with %s failed (%s); predicting with XGBoost instead",
                self.hash[:12], backend, exc,
            )
            return
        self.compile_seconds = 0.0 if self.from_cache else time.perf_counter() - start
        if not self._agrees_with_xgboost():
            logger.warning("compiled %s predictor of booster %s disagrees with XGBoost; using XGBoost",
                           backend, self.hash[:12])
            self._predict_compiled = None
            self.forest = None
            return
        self.backend = backend

    def _numba_predictor(self, cache: Path):
        path = cache / f"{self.hash}.forest.npz"
        self.from_cache = path.exists()
        if self.from_cache:
            forest = FlatForest.load(path)
        else:
            forest = flatten_booster(self.booster)
            _write_atomically(path, forest.save)
            logger.info("flattened booster %s into %s", self.hash[:12], path)
        binned = BinnedForest.build([forest], self.booster.num_features())
        self.forest = forest
        return lambda x: binned.predict_margins(x)[0]

    def _tl2cgen_predictor(self, cache: Path):
        import tl2cgen
        import treelite

        path = cache / f"{self.hash}.tl2cgen.so"
        self.from_cache = path.exists()
        if not self.from_cache:
            model = treelite.frontend.from_xgboost(self.booster)

            def export(target: Path) -> None:
                # tl2cgen 1.0.0 prints its native log lines with print(); keep them
                # out of the command's output and in the debug log instead.
                with contextlib.redirect_stdout(io.StringIO()) as native_log:
                    tl2cgen.export_lib(
                        model, toolchain="gcc", libpath=str(target),
                        params={"parallel_comp": max(self.threads, 1)}, options=["-O0"],
                    )
                for line in native_log.getvalue().splitlines():
                    logger.debug("tl2cgen: %s", line)

            _write_atomically(path, export)
            logger.info("compiled booster %s with tl2cgen into %s", self.hash[:12], path)
        predictor = tl2cgen.Predictor(str(path), nthread=self.threads)

        def predict(x: np.ndarray) -> np.ndarray:
            matrix = tl2cgen.DMatrix(np.ascontiguousarray(x, dtype=np.float32))
            return predictor.predict(matrix, pred_margin=True).reshape(len(x)).astype(np.float64)

        return predict

    def _agrees_with_xgboost(self) -> bool:
        rows = np.random.default_rng(0).random((CHECK_ROWS, self.booster.num_features()))
        expected = self.booster.inplace_predict(rows, predict_type="margin")
        actual = self._predict_compiled(rows)
        scale = max(1.0, float(np.max(np.abs(expected))))
        return bool(np.max(np.abs(actual - expected)) <= CHECK_RTOL * scale)


def _tl2cgen_error() -> type[Exception]:
    try:
        from tl2cgen.exception import TL2cgenError
    except ImportError:
        return RuntimeError
    return TL2cgenError


def _write_atomically(path: Path, write) -> None:
    """Call ``write(temporary_path)`` and rename the result to ``path``.

    Two processes compiling the same booster then never see a half-written file.
    """
    with tempfile.TemporaryDirectory(dir=path.parent) as directory:
        temporary = Path(directory) / path.name
        write(temporary)
        shutil.move(str(temporary), str(path))


def compile_booster(booster: xgboost.Booster, backend: str = "numba", **options) -> BoosterPredictor:
    """Compile a booster (or load it from the cache); see :class:`BoosterPredictor` for the options."""
    return BoosterPredictor(booster, backend, **options)


class CompiledSurrogate:
    """The surrogate chi2 of a two-stage model, predicted with compiled boosters.

    With the numba backend on both boosters, the regressor and the classifier
    share one :class:`BinnedForest`, so a batch is binned once and both
    forests are summed in one kernel call.

    Args:
        model: A :class:`campaign.surrogate.model.SurrogateModel`.
        backend, options: Passed to :class:`BoosterPredictor`.
        penalty: chi2 per unit of classifier log-odds below the model's
            ``low_margin_threshold``; the model's delta_chi2 when None.
    """

    def __init__(self, model, backend: str = "numba", *, penalty: float | None = None, **options):
        self.model = model
        self.space = model.space
        self.penalty = model.delta_chi2 if penalty is None else penalty
        self.low_margin_threshold = model.low_margin_threshold
        self.regressor = BoosterPredictor(model.regressor, backend, **options)
        self.classifier = BoosterPredictor(model.classifier, backend, **options)
        self.max_compiled_rows = self.regressor.max_compiled_rows
        self._joint = None
        if self.regressor.forest is not None and self.classifier.forest is not None:
            self._joint = BinnedForest.build([self.regressor.forest, self.classifier.forest], self.space.dim)

    @property
    def backend(self) -> str:
        return self.regressor.backend if self.regressor.backend == self.classifier.backend else "mixed"

    def chi2(self, x: np.ndarray) -> np.ndarray:
        """Predict the surrogate chi2 at physical values ``x``, shape (n, dim); returns shape (n,)."""
        return self.chi2_of_unit(self.space.to_unit(np.atleast_2d(x)))

    def chi2_of_unit(self, unit: np.ndarray) -> np.ndarray:
        """Predict the surrogate chi2 at unit-cube coordinates, shape (n, dim); returns shape (n,)."""
        from campaign.surrogate.model import combine_chi2

        if self._joint is not None and len(unit) <= self.max_compiled_rows and not np.isnan(unit).any():
            regressor_chi2, classifier_margin = self._joint.predict_margins(unit)
        else:
            regressor_chi2 = self.regressor.predict_margin(unit)
            classifier_margin = self.classifier.predict_margin(unit)
        return combine_chi2(regressor_chi2, classifier_margin, self.penalty, threshold=self.low_margin_threshold)


def compile_surrogate(model, backend: str = "numba", **options) -> CompiledSurrogate:
    """Compile the regressor and the classifier of a surrogate model (or load them from the cache)."""
    return CompiledSurrogate(model, backend, **options)
