"""PanNuke (Gamper et al., ECDP 2019 and arXiv:2003.10778): 256x256 H&E patches, 19 tissues, 3 folds, 5 nucleus types.

Layout (the published zips, unpacked): ``Fold k/images/foldk/images.npy`` (N, 256, 256, 3; float64 0..255 or
uint8), ``Fold k/images/foldk/types.npy`` (N,) tissue names, ``Fold k/masks/foldk/masks.npy`` (N, 256, 256, 6):
channels 0..4 hold the instance ids of neoplastic, inflammatory, connective/soft tissue, dead and epithelial
nuclei, channel 5 is background. The arrays are memory-mapped, so a fold of several GB is read patch by patch.

Read: type t = channel index + 1 (``CLASS_NAMES``). Every (channel, id) pair becomes one instance, renumbered
1..N in channel-then-id order (PanNuke ids can repeat across channels); a pixel non-zero in several type channels
goes to the first such channel (an instance that loses every pixel that way is dropped). class_map = the type of
each pixel. tissue_class = index of the tissue in ``TISSUES`` (-1 for a name not in it); organ = the tissue name.
Float images are rounded and clipped to 0..255 (PanNuke stores 0..255 floats).
Splits: option ``fold_splits`` (default ``{"1": "train", "2": "val", "3": "test"}``, the usual PanNuke split 1);
``folds()`` gives the three leave-one-fold-out folds for ``--fold k``. No patient ids are published:
source_id = fold (folds are the unit PanNuke keeps apart). mpp: option (default 0; PanNuke is 40x).
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np

from zoo.data.imageio import to_rgb_uint8
from zoo.data.readers import Reader, register
from zoo.data.sample import SPLITS, Sample
from zoo.errors import ConfigError, DataError

CLASS_NAMES = ("neoplastic", "inflammatory", "connective/soft tissue", "dead", "epithelial")
TISSUES = ("Adrenal_gland", "Bile-duct", "Bladder", "Breast", "Cervix", "Colon", "Esophagus", "HeadNeck", "Kidney",
           "Liver", "Lung", "Ovarian", "Pancreatic", "Prostate", "Skin", "Stomach", "Testis", "Thyroid", "Uterus")
DEFAULT_SPLITS = {"1": "train", "2": "val", "3": "test"}


def _load_npy(path: str, mmap: bool = True) -> np.ndarray:
    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as e:  # truncated header, pickled object arrays, not an .npy file
        raise DataError(path, f"unreadable .npy file ({type(e).__name__}: {e})") from None


def masks_to_instances(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A PanNuke (H, W, 6) mask -> (instances (H, W) int32, instance_ids, instance_classes, class_map uint8)."""
    m = np.asarray(masks)[:, :, :5]
    if m.dtype.kind == "f":
        m = np.round(m)
    m = m.astype(np.int64)
    nz = m > 0
    chan = np.argmax(nz, axis=2)  # the first type channel that is non-zero
    has = nz.any(axis=2)
    orig = np.take_along_axis(m, chan[:, :, None], axis=2)[:, :, 0]
    key = np.where(has, (chan + 1) * (int(m.max()) + 1) + orig, 0)
    uniq, inv = np.unique(key, return_inverse=True)  # 0 first
    inst = inv.reshape(key.shape).astype(np.int32)
    if uniq[0] != 0:
        inst += 1
        uniq = np.r_[0, uniq]
    ids = np.arange(1, len(uniq), dtype=np.int64)
    classes = (uniq[1:] // (int(m.max()) + 1)).astype(np.int64)
    class_map = np.where(has, chan + 1, 0).astype(np.uint8)
    return inst, ids, classes, class_map


@register("pannuke")
class PanNukeReader(Reader):
    class_names = CLASS_NAMES

    def __init__(self, root: str, fold_splits: dict | None = None, mpp: float = 0.0, **options):
        super().__init__(root, **options)
        self.fold_dirs = {}
        for d in glob.glob(os.path.join(self.root, "Fold *")) + glob.glob(os.path.join(self.root, "fold*")):
            m = re.fullmatch(r"[Ff]old[ _]?(\d+)", os.path.basename(d))
            if m and os.path.isdir(d):
                self.fold_dirs[int(m.group(1))] = d
        if not self.fold_dirs:
            raise DataError(root, "not a PanNuke folder (expected 'Fold 1', 'Fold 2', ... inside it)")
        splits = {str(k): v for k, v in (fold_splits or DEFAULT_SPLITS).items()}
        bad = [v for v in splits.values() if v not in SPLITS]
        if bad:
            raise ConfigError(f"pannuke: fold_splits values must be one of {SPLITS}, got {bad}")
        self.fold_splits, self.mpp = splits, float(mpp)
        self._arrays: dict[int, tuple] = {}

    def _paths(self, k: int) -> tuple[str, str, str]:
        d = self.fold_dirs[k]
        return (os.path.join(d, "images", f"fold{k}", "images.npy"), os.path.join(d, "masks", f"fold{k}", "masks.npy"),
                os.path.join(d, "images", f"fold{k}", "types.npy"))

    def _fold(self, k: int) -> tuple:
        if k not in self._arrays:
            ip, mp, tp = self._paths(k)
            images, masks, types = _load_npy(ip), _load_npy(mp), _load_npy(tp, mmap=False)
            if images.ndim != 4 or images.shape[3] not in (3, 4):
                raise DataError(ip, f"expected (N, H, W, 3) images, got {images.shape}")
            if masks.ndim != 4 or masks.shape[3] != 6:
                raise DataError(mp, f"expected (N, H, W, 6) masks (5 type channels + background), got {masks.shape}")
            if masks.shape[:3] != images.shape[:3]:
                raise DataError(mp, f"masks {masks.shape[:3]} do not match images {images.shape[:3]}")
            if len(types) != len(images):
                raise DataError(tp, f"{len(types)} tissue types for {len(images)} images")
            self._arrays[k] = (images, masks, types)
        return self._arrays[k]

    def items(self) -> list[tuple[int, int]]:
        return [(k, i) for k in sorted(self.fold_dirs) for i in range(len(self._fold(k)[0]))]

    def describe(self, item: tuple[int, int]) -> str:
        k, i = item
        return f"{self._paths(k)[0]}[{i}]"

    def read(self, item: tuple[int, int]) -> Sample:
        k, i = item
        images, masks, types = self._fold(k)
        ip, mp, _ = self._paths(k)
        img = np.asarray(images[i])
        if img.dtype.kind == "f":
            img = np.clip(np.round(img), 0, 255).astype(np.uint8)
        image = to_rgb_uint8(img, f"{ip}[{i}]")
        m = np.asarray(masks[i])
        if m.dtype.kind == "f" and not np.all(m == np.round(m)):
            raise DataError(f"{mp}[{i}]", "mask values are not integers")
        inst, ids, classes, class_map = masks_to_instances(m)
        tissue = str(types[i])
        return Sample(image=image, image_id=f"fold{k}_{i:05d}", dataset="pannuke", source_id=f"fold{k}",
                      split=self.fold_splits.get(str(k), "train"), instances=inst, class_map=class_map,
                      instance_ids=ids, instance_classes=classes,
                      tissue_class=TISSUES.index(tissue) if tissue in TISSUES else -1, site="", organ=tissue,
                      mpp=self.mpp, class_names=CLASS_NAMES)

    def folds(self) -> list[dict]:
        ids = {k: [f"fold{k}_{i:05d}" for i in range(len(self._fold(k)[0]))] for k in sorted(self.fold_dirs)}
        return [{"fold": k, "test_source": f"fold{k}", "test": ids[k],
                 "train": [x for j in sorted(ids) if j != k for x in ids[j]]} for k in sorted(ids)]
