"""Bone marrow H&E cell dots (Kainz et al., "You Should Use Regression to Detect Cells", MICCAI 2015): 1200x1200 crops.

Quirks handled (../shared/data/bone_marrow_kainz2015/PROVENANCE.md):
- Layout ``BM_GRAZ/source/BM_GRAZ_HE_<slide>_<crop>.png`` and ``BM_GRAZ/annotations/<same>.txt`` (the root may be
  the dataset folder or ``BM_GRAZ`` itself).
- ``.txt``: header ``N 3 0``, then N lines ``x y c``, **0-based**, x = column, y = row (the authors'
  writeGTLocations.m). Points are stored as (row, col) = (y, x); the undocumented third column (values 1 or 3)
  goes unchanged into ``point_attrs``; the points are untyped (type 0, K = 0). A header whose N disagrees with the
  rows, or a point outside the image, is an error. Without a ``.txt``, the non-zero pixels of
  ``annotations/<same>.png`` are the points (no attributes).
- mpp: the ``MPP = ...`` of the Aperio description in the PNG text chunk (0.2454 for both images here), 0 if absent.
- source_id = slide number (first number: crops of one slide share it). Split: the authors' demo lists
  (``demo/*/data/source/{train,test}``): slides 0001, 0002, 0003, 0004, 0006 train; 0007, 0008, 0020 test; a slide
  in neither list is train. Here: 0001_01 train (356 dots), 0007_01 test (295 dots).
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np

from zoo.data.imageio import read_label, read_rgb
from zoo.data.readers import Reader, register
from zoo.data.sample import Sample
from zoo.errors import DataError

TEST_SLIDES = ("0007", "0008", "0020")  # the authors' demo test list; 0001-0004 and 0006 are their train list


def read_dots_txt(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A Kainz et al. dot file: (points (N, 2) float x, y as stored, third column (N,) int)."""
    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    try:
        with open(path) as fh:
            lines = [ln.split() for ln in fh.read().splitlines() if ln.strip()]
        header = lines[0] if lines else []
        rows = np.array(lines[1:], dtype=np.float64) if len(lines) > 1 else np.zeros((0, 3))
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(path, f"not a dot annotation file ({type(e).__name__}: {e})") from None
    if len(header) < 2 or not all(t.lstrip("-").isdigit() for t in header):
        raise DataError(path, f"bad header {' '.join(header)!r} (expected 'N 3 0')")
    n = int(header[0])
    if len(rows) != n:
        raise DataError(path, f"header says {n} points but the file has {len(rows)}")
    if rows.shape[1] < 2:
        raise DataError(path, f"expected rows 'x y c', got {rows.shape[1]} columns")
    attrs = rows[:, 2] if rows.shape[1] > 2 else np.zeros(len(rows))
    if not np.all(attrs == np.round(attrs)):
        raise DataError(path, "third column is not integer")
    return rows[:, :2].astype(np.float64), attrs.astype(np.int64)


def png_mpp(path: str) -> float:
    """``MPP = ...`` from an Aperio description in a PNG/TIFF text chunk (0.0 when absent)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            text = " ".join(str(v) for v in {**im.info, **getattr(im, "text", {})}.values())
    except Exception:
        return 0.0
    m = re.search(r"MPP\s*=\s*([0-9.]+)", text)
    return float(m.group(1)) if m else 0.0


@register("bone_marrow")
class BoneMarrowReader(Reader):
    class_names = ()

    def __init__(self, root: str, **options):
        inner = os.path.join(root, "BM_GRAZ")
        super().__init__(inner if os.path.isdir(inner) else root, **options)
        if not os.path.isdir(os.path.join(self.root, "source")):
            raise DataError(root, "not a bone-marrow (Kainz et al.) folder (expected BM_GRAZ/source/ inside it)")

    def items(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.root, "source", "BM_GRAZ_HE_*.png")))

    def read(self, path: str) -> Sample:
        stem = os.path.splitext(os.path.basename(path))[0]
        image = read_rgb(path)
        h, w = image.shape[:2]
        txt = os.path.join(self.root, "annotations", stem + ".txt")
        dots_png = os.path.join(self.root, "annotations", stem + ".png")
        if os.path.isfile(txt) or not os.path.isfile(dots_png):
            xy, attrs = read_dots_txt(txt)
            bad = (xy[:, 0] < 0) | (xy[:, 0] > w - 1) | (xy[:, 1] < 0) | (xy[:, 1] > h - 1)
            if bad.any():
                x, y = xy[np.argmax(bad)]
                raise DataError(txt, f"{int(bad.sum())} point(s) outside the {w}x{h} image, e.g. x={x:g} y={y:g}")
            yx = xy[:, ::-1]
        else:
            dots = read_label(dots_png)
            if dots.shape != (h, w):
                raise DataError(dots_png, f"size {dots.shape[1]}x{dots.shape[0]} does not match image {w}x{h}")
            yx, attrs = np.argwhere(dots > 0).astype(np.float64), None
        m = re.match(r"BM_GRAZ_HE_(\d+)_", stem + "_")
        slide = m.group(1) if m else stem
        return Sample(image=image, image_id=stem, dataset="bone_marrow", source_id=slide,
                      split="test" if slide in TEST_SLIDES else "train", points_yx=yx.astype(np.float32),
                      point_classes=np.zeros(len(yx), np.int64), point_attrs=attrs, site="", organ="Bone marrow",
                      mpp=png_mpp(path), class_names=())
