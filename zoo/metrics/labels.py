"""Label maps and their overlap table: the one piece every instance- and object-level metric shares.

``overlap(gt, pred)`` reads the pixel count of every (ground-truth id, predicted id) pair that meets in one
``np.bincount`` over ``gt * K + pred`` (or ``np.unique`` when the ids are too large for a dense table), plus the area
of every instance; ``instance_classes`` gives each instance its class. zoo.metrics.instance (AJI, PQ, ...) and
zoo.metrics.object (Qu / GlaS) both build on this module and never import each other.

Label maps: 2-D (or any-D) non-negative integer arrays of the same shape, 0 = background. Ids need not be
consecutive (``[0, 2, 7, 1000]`` is fine) and gt / pred ids are unrelated.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Optional

import numpy as np

from zoo.errors import DataError

__all__ = ["Overlap", "overlap", "remap_label", "instance_classes"]

# a dense (n_gt + 1) x (n_pred + 1) bincount table is used up to this many cells, np.unique above it
_DENSE_LIMIT = 1 << 24


def _as_labels(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        if np.issubdtype(a.dtype, np.floating) and a.size and np.all(np.mod(a, 1) == 0):
            a = a.astype(np.int64)
        else:
            raise DataError(name, f"a label map must hold integers, got dtype {a.dtype}")
    if a.size and a.min() < 0:
        raise DataError(name, "a label map must not hold negative ids")
    return a


def _ids_and_areas(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Sorted non-zero ids, their pixel counts, and (when ids are small enough for a lookup table) a table
    ``lut`` with ``lut[id] = index + 1`` (0 for background / absent ids)."""
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(1, np.int64)
    top = int(flat.max())
    if top <= 4 * flat.size + 65536:
        counts = np.bincount(flat)
        ids = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(top + 1, np.int64)
        lut[ids] = np.arange(1, ids.size + 1)
        return ids.astype(np.int64), counts[ids].astype(np.int64), lut
    ids, counts = np.unique(flat, return_counts=True)
    keep = ids > 0
    return ids[keep].astype(np.int64), counts[keep].astype(np.int64), None


def _index(flat: np.ndarray, ids: np.ndarray, lut: Optional[np.ndarray]) -> np.ndarray:
    """Map raw ids to 1-based consecutive indices (0 stays background)."""
    if lut is not None:
        return lut[flat]
    return np.searchsorted(ids, flat) + 1 - (flat == 0)  # ids are sorted and exclude 0; background -> 0


@dataclasses.dataclass(frozen=True)
class Overlap:
    """All (gt, pred) overlaps of two label maps.

    gt_ids, pred_ids: the original non-zero ids, sorted; gt_area, pred_area: their pixel counts.
    pair_gt, pair_pred: indices (into gt_ids / pred_ids) of every pair that shares at least one pixel;
    inter: the shared pixel count of each pair. union and iou follow.
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    gt_area: np.ndarray
    pred_area: np.ndarray
    pair_gt: np.ndarray
    pair_pred: np.ndarray
    inter: np.ndarray

    @property
    def n_gt(self) -> int:
        return int(self.gt_ids.size)

    @property
    def n_pred(self) -> int:
        return int(self.pred_ids.size)

    @property
    def union(self) -> np.ndarray:
        return self.gt_area[self.pair_gt] + self.pred_area[self.pair_pred] - self.inter

    @property
    def iou(self) -> np.ndarray:
        return self.inter / self.union


def overlap(gt, pred) -> Overlap:
    """The contingency table of two label maps, read in one pass: ``bincount(g * (n_pred + 1) + p)`` over the
    pixels where both are foreground (g, p = consecutive indices of the ids), or ``np.unique`` of the same keys
    when the dense table would exceed 2**24 cells."""
    g = _as_labels(gt, "gt")
    p = _as_labels(pred, "pred")
    if g.shape != p.shape:
        raise DataError("pred", f"label map shape {p.shape} differs from the ground truth's {g.shape}")
    gf = g.ravel()
    pf = p.ravel()
    gids, garea, glut = _ids_and_areas(gf)
    pids, parea, plut = _ids_and_areas(pf)
    both = (gf > 0) & (pf > 0)
    gi = _index(gf[both], gids, glut)
    pi = _index(pf[both], pids, plut)
    width = pids.size + 1
    keys = gi.astype(np.int64) * width + pi
    cells = (gids.size + 1) * width
    if cells <= _DENSE_LIMIT:
        counts = np.bincount(keys, minlength=cells)
        nz = np.flatnonzero(counts)
        inter = counts[nz]
    else:
        nz, inter = np.unique(keys, return_counts=True)
    return Overlap(gids, pids, garea, parea, (nz // width - 1).astype(np.int64), (nz % width - 1).astype(np.int64),
                   inter.astype(np.int64))


def remap_label(labels) -> np.ndarray:
    """Renumber a label map's ids to 1..n in increasing order of the original id (0 stays 0), vectorised."""
    a = _as_labels(labels, "labels")
    flat = a.ravel()
    ids, _, lut = _ids_and_areas(flat)
    return _index(flat, ids, lut).reshape(a.shape).astype(np.int32)


def _get_overlap(gt, pred) -> Overlap:
    return gt if isinstance(gt, Overlap) else overlap(gt, pred)


def _first_per_group(group: np.ndarray, *keys_desc: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Row index of the best row per value of ``group``: largest ``keys_desc[0]``, then ``keys_desc[1]``...,
    then smallest ``tie``."""
    order = np.lexsort((tie,) + tuple(-k for k in reversed(keys_desc)) + (group,))
    g = group[order]
    first = np.ones(g.size, bool)
    first[1:] = g[1:] != g[:-1]
    return order[first]


def instance_classes(classes, ids: np.ndarray, labels: Optional[np.ndarray] = None, name: str = "classes",
                     ignore: Iterable[int] = ()) -> np.ndarray:
    """The class of each id in ``ids`` (sorted, as ``Overlap.gt_ids`` / ``pred_ids``) from one of: a mapping
    ``{id: class}``; a ``(ids, classes)`` pair of sequences (the record schema's label/instance_ids +
    label/instance_classes); a 1-D array indexed by id (``classes[id]``); or a per-pixel class map of the label
    map's shape. Missing ids get class 0 (unknown).

    From a class map, each instance takes the majority class of its **typed** pixels: class 0 (background /
    unknown type) never votes, nor does any class in ``ignore`` (e.g. the contour class of Qu et al.'s merged
    inner/contour target, which carries no type), so a nucleus whose rim is untyped is voted its type. Ties go to
    the smaller class; an instance with no voting pixel gets 0. One ``np.bincount`` over (instance, class) pairs.
    """
    ids = np.asarray(ids, np.int64)
    if isinstance(classes, Mapping):
        return np.array([int(classes.get(int(i), 0)) for i in ids.tolist()], np.int64)
    if isinstance(classes, tuple) and len(classes) == 2:
        cid = np.asarray(classes[0], np.int64).ravel()
        ccl = np.asarray(classes[1], np.int64).ravel()
        if cid.size != ccl.size:
            raise DataError(name, f"{cid.size} instance ids but {ccl.size} classes")
        out = np.zeros(ids.size, np.int64)
        if cid.size:
            order = np.argsort(cid)
            cid, ccl = cid[order], ccl[order]
            pos = np.minimum(np.searchsorted(cid, ids), cid.size - 1)
            hit = cid[pos] == ids
            out[hit] = ccl[pos[hit]]
        return out
    arr = np.asarray(classes)
    if labels is not None and arr.shape == np.shape(labels) and arr.ndim >= 2:
        lab = _as_labels(labels, name).ravel()
        cm = _as_labels(arr, name).ravel()
        if ids.size == 0:
            return np.zeros(0, np.int64)
        ncls = int(cm.max()) + 1 if cm.size else 1
        voting = np.ones(ncls, bool)
        voting[0] = False
        skip = np.asarray(list(ignore), np.int64)
        voting[skip[(skip >= 0) & (skip < ncls)]] = False
        keep = (lab > 0) & voting[cm]
        lk, ck = lab[keep], cm[keep]
        idx = np.minimum(np.searchsorted(ids, lk), ids.size - 1)
        known = ids[idx] == lk  # pixels of ids not asked for do not vote
        table = np.bincount(idx[known] * ncls + ck[known], minlength=ids.size * ncls).reshape(ids.size, ncls)
        return table.argmax(axis=1).astype(np.int64)  # an all-zero row gives 0 (column 0 never votes)
    if arr.ndim == 1:
        out = np.zeros(ids.size, np.int64)
        ok = ids < arr.size
        out[ok] = arr[ids[ok]]
        return out
    raise DataError(name, "classes must be a {id: class} mapping, an (ids, classes) pair, a 1-D array indexed by "
                          f"id, or a class map of the label map's shape; got an array of shape {arr.shape}")
