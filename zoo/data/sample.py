"""The in-memory form of one annotated image, as every reader yields it and records.py stores it.

Class indices (DESIGN.md): 0 is background in ``class_map`` and "unknown type" in ``instance_classes`` /
``point_classes``; nucleus types are 1..K and ``class_names[i - 1]`` names type i. K = 0 means untyped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Optional

import numpy as np

SPLITS = ("train", "val", "test", "all")
_SEPARATORS = re.compile(r"[\\/]+")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f:*?\"<>|]")
_MAX_NAME = 200  # characters; file systems allow 255 bytes, leaving room for suffixes such as "_instances.png"


def safe_name(image_id: str) -> str:
    """A file-name stem derived from an image id, safe to join onto an output folder.

    Image ids may hold path separators (own-data layouts such as ``images/train/x.png``) or ``..`` (a record's id
    is data, not trusted), so they are never joined into paths as they are. The result is stable (the same id gives
    the same name on every run and machine) and readable: separators become ``__`` (``a/b/c.png`` ->
    ``a__b__c.png``), ``.`` and ``..`` components and empty ones are dropped (``../evil`` -> ``evil``), runs of dots
    become one dot, control and Windows-reserved characters become ``_``, and leading dots are removed, so the result
    has no separator, no ``..`` and no leading dot. Names longer than 200 bytes (UTF-8) are cut and end in 12 hex digits
    of their SHA-1, so distinct long ids stay distinct. An id with nothing left (``""``, ``..``) gives ``"_"``.
    """
    parts = [p for p in _SEPARATORS.split(str(image_id)) if p not in ("", ".", "..")]
    name = "__".join(re.sub(r"\.{2,}", ".", _UNSAFE.sub("_", p)) for p in parts).lstrip(".") or "_"
    if len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME:
        digest = hashlib.sha1(str(image_id).encode("utf-8", "surrogatepass")).hexdigest()[:12]
        head = name[:_MAX_NAME - 13]
        while len(head.encode("utf-8", "surrogatepass")) > _MAX_NAME - 13:
            head = head[:-1]
        name = f"{head}-{digest}"
    return name


@dataclasses.dataclass
class Sample:
    """One image with its labels and provenance.

    image: (H, W, 3) uint8 RGB.
    instances: (H, W) integer instance map, 0 = background; ids need not be consecutive (max 65535).
    class_map: (H, W) uint8 per-pixel type, 0 = background.
    instance_ids / instance_classes: parallel int arrays, the type of each instance id.
    points_yx: (N, 2) float32 centre coordinates in 0-based pixels (row, col); point_classes (N,) int.
    point_attrs: (N,) int, extra per-point values kept as given (e.g. the bone-marrow third column).
    split: the split the reader assigns ("train", "val", "test", or "all" when the dataset has none).
    """

    image: np.ndarray
    image_id: str
    dataset: str
    source_id: str
    split: str = "all"
    instances: Optional[np.ndarray] = None
    class_map: Optional[np.ndarray] = None
    instance_ids: Optional[np.ndarray] = None
    instance_classes: Optional[np.ndarray] = None
    points_yx: Optional[np.ndarray] = None
    point_classes: Optional[np.ndarray] = None
    point_attrs: Optional[np.ndarray] = None
    tissue_class: int = -1
    site: str = ""
    organ: str = ""
    mpp: float = 0.0
    class_names: tuple = ()

    def __post_init__(self):
        img = np.asarray(self.image)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"{self.image_id}: image must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
        if self.split not in SPLITS:
            raise ValueError(f"{self.image_id}: split must be one of {SPLITS}, got {self.split!r}")
        h, w = img.shape[:2]
        for name in ("instances", "class_map"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (h, w):
                raise ValueError(f"{self.image_id}: {name} shape {arr.shape} != image shape {(h, w)}")
        self.class_names = tuple(self.class_names)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def num_instances(self) -> int:
        """Number of distinct non-zero instance ids (not ``max()``: ids may skip values)."""
        if self.instances is None:
            return 0
        ids = np.unique(self.instances)
        return int(np.count_nonzero(ids))

    @property
    def num_points(self) -> int:
        return 0 if self.points_yx is None else int(len(self.points_yx))
