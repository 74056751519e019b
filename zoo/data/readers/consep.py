"""CoNSeP (Graham et al., "HoVer-Net", Medical Image Analysis 2019) and other data in HoVer-Net's ``.mat`` label format.

Layout: ``{Train,Test}/Images/<name>.png`` and ``{Train,Test}/Labels/<name>.mat`` (``Overlay/`` ignored). Each
``.mat`` holds ``inst_map`` (H, W instance ids 1..N, stored as float), ``type_map`` (H, W per-pixel type),
``inst_type`` (N, 1: the type of instance i + 1) and ``inst_centroid`` (N, 2: x, y). Read: instances from
``inst_map`` (ids kept), instance_classes from ``inst_type``, class_map from ``type_map``; the centroids are
checked (one per instance) but not stored (they follow from the instance map, and points would count each
nucleus twice in the summary). Images RGBA -> RGB (imageio rules).

Classes: CoNSeP's 7 original types (``classes=7``, default): 1 other (miscellaneous), 2 inflammatory,
3 healthy epithelial, 4 dysplastic/malignant epithelial, 5 fibroblast, 6 muscle, 7 endothelial.
``classes=4`` applies HoVer-Net's merge (paper Sec. 4.1; its CoNSeP loader): 3 + 4 -> epithelial,
5 + 6 + 7 -> spindle-shaped, giving other, inflammatory, epithelial, spindle-shaped (1..4).
Split: Train -> train, Test -> test. No patient ids in the files: source_id = image name. mpp: option (default 0;
CoNSeP was scanned at 40x).
"""

from __future__ import annotations

import glob
import os

import numpy as np

from zoo.data.imageio import check_same_size, read_rgb, to_label
from zoo.data.readers import Reader, register
from zoo.data.sample import Sample
from zoo.errors import ConfigError, DataError

CLASS_NAMES_7 = ("other", "inflammatory", "healthy epithelial", "dysplastic/malignant epithelial", "fibroblast",
                 "muscle", "endothelial")
CLASS_NAMES_4 = ("other", "inflammatory", "epithelial", "spindle-shaped")
MERGE_7_TO_4 = np.array([0, 1, 2, 3, 3, 4, 4, 4])  # index = original type, value = merged type


def read_hovernet_mat(path: str) -> dict:
    """The arrays of a HoVer-Net label .mat: inst_map, type_map (int32 H, W), inst_type (N,), inst_centroid (N, 2)."""
    from scipy.io import loadmat

    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    try:
        m = loadmat(path)
    except Exception as e:  # truncated / not a MAT file
        raise DataError(path, f"unreadable .mat file ({type(e).__name__}: {e})") from None
    if "inst_map" not in m:
        raise DataError(path, f"no 'inst_map' variable (found {[k for k in m if not k.startswith('__')]})")
    out = {"inst_map": to_label(m["inst_map"], f"{path}:inst_map")}
    if "type_map" in m:
        out["type_map"] = to_label(m["type_map"], f"{path}:type_map")
        if out["type_map"].shape != out["inst_map"].shape:
            raise DataError(path, f"type_map {out['type_map'].shape} and inst_map {out['inst_map'].shape} differ")
    if "inst_type" in m:
        t = np.asarray(m["inst_type"], np.float64).ravel()
        if not np.all(t == np.round(t)) or (t.size and t.min() < 0):
            raise DataError(path, "inst_type values are not non-negative integers")
        out["inst_type"] = t.astype(np.int64)
    if "inst_centroid" in m:
        out["inst_centroid"] = np.asarray(m["inst_centroid"], np.float64).reshape(-1, 2)
    return out


@register("consep")
class CoNSePReader(Reader):
    def __init__(self, root: str, classes: int = 7, mpp: float = 0.0, **options):
        inner = os.path.join(root, "CoNSeP")
        super().__init__(inner if os.path.isdir(inner) else root, **options)
        if int(classes) not in (4, 7):
            raise ConfigError(f"consep: classes must be 7 (original types) or 4 (HoVer-Net's merge), got {classes!r}")
        self.classes, self.mpp = int(classes), float(mpp)
        self.class_names = CLASS_NAMES_7 if self.classes == 7 else CLASS_NAMES_4
        if not any(os.path.isdir(os.path.join(self.root, s, "Images")) for s in ("Train", "Test")):
            raise DataError(root, "not a CoNSeP / HoVer-Net folder (expected Train/Images or Test/Images inside it)")

    def items(self) -> list[tuple[str, str]]:
        return [(split.lower(), p) for split in ("Train", "Test")
                for p in sorted(glob.glob(os.path.join(self.root, split, "Images", "*.png")))]

    def _types(self, t: np.ndarray, path: str) -> np.ndarray:
        if t.size and t.max() > 7:
            raise DataError(path, f"type {t.max()} outside CoNSeP's 0..7")
        return MERGE_7_TO_4[t] if self.classes == 4 else t

    def read(self, item: tuple[str, str]) -> Sample:
        split, path = item
        name = os.path.splitext(os.path.basename(path))[0]
        mat = os.path.join(os.path.dirname(os.path.dirname(path)), "Labels", name + ".mat")
        image = read_rgb(path)
        lab = read_hovernet_mat(mat)
        inst = lab["inst_map"]
        check_same_size(image, inst, mat)
        ids = np.flatnonzero(np.bincount(inst.ravel()))
        ids = ids[ids > 0]
        inst_ids = inst_classes = class_map = None
        if "inst_type" in lab:
            t = lab["inst_type"]
            if ids.size and ids.max() > len(t):
                raise DataError(mat, f"inst_map has id {ids.max()} but inst_type lists only {len(t)} instances")
            if "inst_centroid" in lab and len(lab["inst_centroid"]) != len(t):
                raise DataError(mat, f"{len(lab['inst_centroid'])} inst_centroid rows for {len(t)} inst_type rows")
            inst_ids, inst_classes = ids, self._types(t[ids - 1], mat)
        if "type_map" in lab:
            class_map = self._types(lab["type_map"], mat).astype(np.uint8)
        return Sample(image=image, image_id=name, dataset="consep", source_id=name, split=split, instances=inst,
                      class_map=class_map, instance_ids=inst_ids, instance_classes=inst_classes, site="",
                      organ="Colon", mpp=self.mpp, class_names=self.class_names)
