"""CRCHistoPhenotypes (Sirinukunwattana et al., IEEE TMI 2016): 500x500 colorectal H&E tiles, nucleus centres, 4 types.

Quirks handled (../shared/data/crchistophenotypes/PROVENANCE.md):
- Every ``.mat`` holds one (N, 2) variable ``detection`` (also the class files), columns (x, y), MATLAB 1-based,
  continuous; dtype float64, uint16 or uint8, and an empty class is a (0, 2) uint8 array: everything is cast to
  float and shifted to 0-based (row, col) = (y - 1, x - 1), clipped to the image (the smallest values, 0.15, lie
  just outside pixel 0 after the shift).
- Types (DESIGN.md): ``class_names = ("epithelial", "inflammatory", "fibroblast", "others")`` ("others" is the
  dataset's "miscellaneous"); type i = class_names[i - 1]; a detection without a class is type 0.
- Class points are matched one-to-one to detection points, nearest pairs first, within ``match_px`` (default
  **8 px**, about 4 um at 20x, less than a nucleus radius): a matched detection takes the class (its own
  coordinates are kept). In the 48-image subset 8,226 class points coincide exactly with a detection and the
  other 49 lie 0.97 to 6.78 px from an otherwise unclaimed detection, so all 8,275 are matched and the points are
  exactly the 13,382 detections (8,275 typed, 5,107 type 0). A class point with no detection within ``match_px``
  (none here; the full 100-image set has some up to ~9.5 px away) is kept as a typed point at its own coordinates;
  ``match_px=0`` keeps exact coincidences only (then 13,431 points: the 49 become extra typed points).
- Layouts: ``imgN/imgN.{png,bmp}`` with all five ``.mat`` files beside it (as in ../shared/data), or the original
  zip's ``Detection/imgN/`` + ``Classification/imgN/``.
- Split (PROVENANCE's proposal, image level; no patient ids exist): **test = image number divisible by 4**
  (48 images: 36 train / 12 test), so source_id = image id. mpp unknown (0; the paper states 20x).
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np

from zoo.data.imageio import read_rgb
from zoo.data.readers import Reader, register
from zoo.data.sample import Sample
from zoo.errors import DataError

CLASS_NAMES = ("epithelial", "inflammatory", "fibroblast", "others")


def read_points_mat(path: str) -> np.ndarray:
    """The (N, 2) ``detection`` array of a CRCHistoPhenotypes ``.mat`` as float64 (x, y), 1-based as stored."""
    from scipy.io import loadmat

    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    try:
        m = loadmat(path)
    except Exception as e:  # scipy raises ValueError/TypeError/OSError for truncated or non-MAT files
        raise DataError(path, f"unreadable .mat file ({type(e).__name__}: {e})") from None
    if "detection" not in m:
        keys = [k for k in m if not k.startswith("__")]
        raise DataError(path, f"no 'detection' variable (found {keys})")
    a = np.asarray(m["detection"])
    if a.size == 0:
        return np.zeros((0, 2))
    if a.ndim != 2 or a.shape[1] != 2 or a.dtype.kind not in "uif":
        raise DataError(path, f"'detection' must be an (N, 2) numeric array, got {a.shape} {a.dtype}")
    return a.astype(np.float64)


def match_points(det: np.ndarray, cls_pts: np.ndarray, max_dist: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of class points to detections, closest pairs first, within ``max_dist``.

    Returns (det_index of each class point or -1, distance): every pair within ``max_dist`` from a KD-tree,
    then one greedy pass over those pairs sorted by distance (few per point: nuclei are > max_dist apart).
    """
    from scipy.spatial import cKDTree

    match = np.full(len(cls_pts), -1, np.int64)
    dist = np.full(len(cls_pts), np.inf)
    if not len(det) or not len(cls_pts):
        return match, dist
    pairs = cKDTree(cls_pts).sparse_distance_matrix(cKDTree(det), max_dist, output_type="ndarray")
    i, j, d = pairs["i"], pairs["j"], pairs["v"]  # the "ndarray" output keeps exact (distance 0) pairs
    o = np.lexsort((j, i, d))
    used_c = np.zeros(len(cls_pts), bool)
    used_d = np.zeros(len(det), bool)
    for a, b, dd in zip(i[o], j[o], d[o]):  # greedy over candidate pairs (few per point)
        if not used_c[a] and not used_d[b]:
            used_c[a] = used_d[b] = True
            match[a], dist[a] = b, dd
    return match, dist


@register("crchistophenotypes")
class CRCHistoPhenotypesReader(Reader):
    class_names = CLASS_NAMES

    def __init__(self, root: str, match_px: float = 8.0, **options):
        inner = os.path.join(root, "CRCHistoPhenotypes_2016_04_28")
        super().__init__(inner if os.path.isdir(inner) else root, **options)
        self.match_px = float(match_px)
        if not self.items():
            raise DataError(root, "not a CRCHistoPhenotypes folder (no imgN/imgN_detection.mat or "
                            "Detection/imgN/imgN_detection.mat inside it)")

    def _folders(self, name: str) -> tuple[str, str]:
        """(folder with the image and detection .mat, folder with the class .mat files)."""
        flat = os.path.join(self.root, name)
        if os.path.isfile(os.path.join(flat, f"{name}_detection.mat")):
            return flat, flat
        return os.path.join(self.root, "Detection", name), os.path.join(self.root, "Classification", name)

    def items(self) -> list[str]:
        mats = glob.glob(os.path.join(self.root, "img*", "img*_detection.mat")) + \
            glob.glob(os.path.join(self.root, "Detection", "img*", "img*_detection.mat"))
        names = {os.path.basename(os.path.dirname(p)) for p in mats}
        names = [n for n in names if re.fullmatch(r"img\d+", n)]
        return sorted(names, key=lambda n: int(n[3:]))

    def read(self, name: str) -> Sample:
        det_dir, cls_dir = self._folders(name)
        img_path = next((os.path.join(det_dir, name + e) for e in (".png", ".bmp", ".tif")
                         if os.path.isfile(os.path.join(det_dir, name + e))), os.path.join(det_dir, name + ".png"))
        image = read_rgb(img_path)
        h, w = image.shape[:2]
        det = read_points_mat(os.path.join(det_dir, f"{name}_detection.mat"))
        cls = [read_points_mat(os.path.join(cls_dir, f"{name}_{c}.mat")) for c in CLASS_NAMES]
        cls_pts = np.concatenate(cls)
        cls_lab = np.repeat(np.arange(1, len(CLASS_NAMES) + 1), [len(c) for c in cls])
        match, _ = match_points(det, cls_pts, self.match_px)
        det_cls = np.zeros(len(det), np.int64)
        det_cls[match[match >= 0]] = cls_lab[match >= 0]
        extra = match < 0
        xy = np.concatenate([det, cls_pts[extra]])
        classes = np.concatenate([det_cls, cls_lab[extra]])
        yx = np.stack([np.clip(xy[:, 1] - 1.0, 0, h - 1), np.clip(xy[:, 0] - 1.0, 0, w - 1)], axis=1)
        number = int(name[3:])
        return Sample(image=image, image_id=name, dataset="crchistophenotypes", source_id=name,
                      split="test" if number % 4 == 0 else "train", points_yx=yx.astype(np.float32),
                      point_classes=classes, site="", organ="Colon", mpp=0.0, class_names=CLASS_NAMES)
