"""Whole-slide readers: one :class:`Slide` interface over pyramidal TIFF / OME-TIFF / SVS (tifffile, tile-level reads),
OpenSlide formats (optional extra ``histozoo[slides]``) and plain PNG / JPEG.

A slide is a list of :class:`Level` s (level 0 = full resolution; ``downsample`` = level-0 pixels per level pixel)
and ``mpp`` (µm per level-0 pixel, 0 = unknown). ``read_region(level, y, x, h, w)`` returns uint8 RGB (h, w, 3) in
that level's pixels; the part of a region outside the level is white (no tissue).

TIFF pages are read tile by tile (or strip by strip): only the segments a region touches are read from the file and
decoded (``tifffile.FileHandle.read_segments`` + ``TiffPage.decode``, the primitives of ``TiffPage.segments``), so
level 0 is never loaded whole and no zarr is needed. Resolution comes from, in this order: the ``mpp`` the user
gives, OME-XML ``Pixels/@PhysicalSizeX`` (+ unit), an Aperio (SVS) ImageDescription ``MPP = ...``, the TIFF
XResolution + ResolutionUnit tags (cm or inch; values outside 0.01..100 µm/px, such as a default 72 dpi, are ignored).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import threading
from typing import Optional

import numpy as np

from zoo.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")
OPENSLIDE_ONLY_EXTS = (".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")
_UNIT_UM = {"pm": 1e-6, "nm": 1e-3, "µm": 1.0, "um": 1.0, "\u03bcm": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}


@dataclasses.dataclass(frozen=True)
class Level:
    """One pyramid level: shape (H, W) in its own pixels and downsample (level-0 pixels per level pixel)."""

    shape: tuple
    downsample: float


class Slide:
    """A whole-slide image (module docstring). Subclasses implement ``_read`` (a region inside the level)."""

    format = "slide"

    def __init__(self, path: str, levels: list, mpp: float, mpp_source: str):
        self.path = os.fspath(path)
        self.levels = levels
        self.mpp = float(mpp or 0.0)
        self.mpp_source = mpp_source if self.mpp else "unknown"

    # ------------------------------------------------------------------------------------------ interface
    @property
    def shape(self) -> tuple:
        return self.levels[0].shape

    def level_mpp(self, level: int) -> float:
        """µm per pixel of ``level`` (0 when the slide's resolution is unknown)."""
        return self.mpp * self.levels[level].downsample

    def read_region(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        """uint8 RGB (h, w, 3) of ``level`` from row ``y``, column ``x`` (that level's pixels); outside = white."""
        if not 0 <= level < len(self.levels):
            raise DataError(self.path, f"no level {level} (the slide has {len(self.levels)})")
        out = np.full((h, w, 3), 255, np.uint8)
        H, W = self.levels[level].shape
        y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, H), min(x + w, W)
        if y1 > y0 and x1 > x0:
            out[y0 - y:y1 - y, x0 - x:x1 - x] = self._read(level, y0, x0, y1 - y0, x1 - x0)
        return out

    def thumbnail(self, max_side: int = 2048) -> tuple[np.ndarray, float]:
        """A low-resolution RGB image of the whole slide, longest side <= ``max_side``, and its downsample
        (level-0 pixels per thumbnail pixel). Reads the coarsest level that is at least that large, block by block,
        subsampled by an integer step, so memory stays bounded by one block and the thumbnail."""
        cands = [i for i, lv in enumerate(self.levels) if max(lv.shape) >= max_side]
        level = max(cands, key=lambda i: self.levels[i].downsample) if cands else 0
        H, W = self.levels[level].shape
        step = max(1, math.ceil(max(H, W) / max_side))
        by, bx = max(step, (1024 // step) * step), max(step, (4096 // step) * step)  # blocks of about 12 MiB
        out = np.empty((-(-H // step), -(-W // step), 3), np.uint8)
        for y in range(0, H, by):
            for x in range(0, W, bx):
                block = self.read_region(level, y, x, min(by, H - y), min(bx, W - x))[::step, ::step]
                out[y // step:y // step + block.shape[0], x // step:x // step + block.shape[1]] = block
        return out, self.levels[level].downsample * step

    def choose_level(self, target_mpp: float) -> int:
        """The level to run a model of ``target_mpp`` µm/px on: the coarsest level that is not coarser than the
        model (within ``zoo.inference.MPP_TOLERANCE``), so resampling to the model only ever shrinks; level 0 when
        either resolution is unknown."""
        from zoo.inference import MPP_TOLERANCE

        if not self.mpp or not target_mpp:
            return 0
        ok = [i for i in range(len(self.levels)) if self.level_mpp(i) <= target_mpp * (1 + MPP_TOLERANCE)]
        return max(ok, key=lambda i: self.levels[i].downsample) if ok else 0

    def describe(self) -> dict:
        return {"path": os.path.abspath(self.path), "format": self.format, "mpp": self.mpp or None,
                "mpp_source": self.mpp_source,
                "levels": [{"shape": list(lv.shape), "downsample": round(lv.downsample, 4),
                            "mpp": round(self.mpp * lv.downsample, 5) if self.mpp else None} for lv in self.levels]}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------ TIFF
class TiffSlide(Slide):
    """Pyramidal TIFF / OME-TIFF / SVS through tifffile: levels = ``series[0].levels``; tile-level reads."""

    format = "tiff"

    def __init__(self, path: str, mpp: Optional[float] = None):
        import tifffile

        try:
            self._tif = tifffile.TiffFile(path)
            series = self._tif.series[0]
            pages = [lv.keyframe for lv in series.levels]
        except Exception as e:  # noqa: BLE001 — tifffile raises many types for a non-TIFF or broken file
            raise DataError(path, f"not a readable slide ({type(e).__name__}: {_first_line(e)})") from None
        self._pages = []
        levels = []
        for p in pages:
            if p.samplesperpixel not in (1, 3, 4) or (p.samplesperpixel > 1 and p.planarconfig != 1):
                raise DataError(path, f"unsupported TIFF layout ({p.samplesperpixel} samples, planar "
                                      f"configuration {p.planarconfig}); expected RGB(A) or grey, interleaved")
            if p.imagedepth > 1:
                raise DataError(path, "3-D (tiled volume) TIFF pages are not slides")
            self._pages.append(p)
        w0 = pages[0].imagewidth
        levels = [Level((p.imagelength, p.imagewidth), w0 / p.imagewidth) for p in pages]
        self._lock = threading.Lock()
        self.format = "ome-tiff" if self._tif.is_ome else "svs" if self._tif.is_svs else "tiff"
        if mpp:
            m, src = float(mpp), "given"
        else:
            m, src = tiff_mpp(self._tif, pages[0])
        super().__init__(path, levels, m, src)

    def _read(self, level, y, x, h, w):
        from zoo.data.imageio import to_rgb_uint8

        page = self._pages[level]
        H, W = page.imagelength, page.imagewidth
        th, tw = (page.tilelength, page.tilewidth) if page.is_tiled else (min(page.rowsperstrip or H, H), W)
        nx = -(-W // tw)
        rows = range(y // th, (y + h - 1) // th + 1)
        cols = range(x // tw, (x + w - 1) // tw + 1)
        indices = [r * nx + c for r in rows for c in cols]
        args = {"_fullsize": page.is_tiled}
        if page.compression in (6, 7, 34892, 33007):  # JPEG flavours
            args.update(jpegtables=page.jpegtables, jpegheader=page.jpegheader)
        out = np.full((h, w, page.samplesperpixel), np.iinfo(page.dtype).max if page.dtype.kind == "u" else 0,
                      page.dtype)
        offsets = [page.dataoffsets[i] for i in indices]
        counts = [page.databytecounts[i] for i in indices]
        try:
            for data, idx in self._tif.filehandle.read_segments(offsets, counts, indices, lock=self._lock):
                seg, pos, _ = page.decode(data, idx, **args)
                if seg is None:
                    continue
                seg = seg.reshape(seg.shape[-3:])  # (length, width, samples)
                sy, sx = pos[2], pos[3]
                ya, yb = max(y, sy), min(y + h, sy + seg.shape[0], H)
                xa, xb = max(x, sx), min(x + w, sx + seg.shape[1], W)
                if yb > ya and xb > xa:
                    out[ya - y:yb - y, xa - x:xb - x] = seg[ya - sy:yb - sy, xa - sx:xb - sx]
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 — a truncated or corrupt segment: name the file
            raise DataError(self.path, f"cannot decode level {level} at y={y}, x={x} "
                                       f"({type(e).__name__}: {_first_line(e)})") from None
        return to_rgb_uint8(out[..., 0] if out.shape[2] == 1 else out, self.path)

    def close(self):
        self._tif.close()


def tiff_mpp(tif, page) -> tuple[float, str]:
    """(µm per pixel, source) of a TIFF's full-resolution page from its metadata (module docstring), (0, '')."""
    if tif.is_ome and tif.ome_metadata:
        m = _ome_mpp(tif.ome_metadata)
        if m:
            return m, "OME PhysicalSizeX"
    desc = page.description or ""
    hit = re.search(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)", desc)
    if hit:
        try:
            m = float(hit.group(1))
            if 0.01 <= m <= 100:
                return m, "SVS ImageDescription MPP"
        except ValueError:
            pass
    tags = page.tags
    if "XResolution" in tags and "ResolutionUnit" in tags:
        num, den = tags["XResolution"].value
        unit = int(tags["ResolutionUnit"].value)
        per = {2: 25400.0, 3: 10000.0}.get(unit)  # µm per inch / per cm
        if per and num:
            m = per * den / num
            if 0.01 <= m <= 100:
                return m, "TIFF XResolution"
    return 0.0, ""


def _ome_mpp(xml: str) -> float:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return 0.0
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "Pixels" and el.get("PhysicalSizeX"):
            try:
                v = float(el.get("PhysicalSizeX"))
            except ValueError:
                return 0.0
            return v * _UNIT_UM.get(el.get("PhysicalSizeXUnit", "µm"), 0.0)
    return 0.0


# ------------------------------------------------------------------------------------------------ OpenSlide
class OpenSlideSlide(Slide):
    """SVS / NDPI / MRXS / ... through OpenSlide (``pip install histozoo[slides]``: openslide-python + openslide-bin);
    mpp from ``openslide.mpp-x``."""

    format = "openslide"

    def __init__(self, path: str, mpp: Optional[float] = None):
        import openslide

        try:
            self._os = openslide.OpenSlide(path)
        except Exception as e:  # noqa: BLE001
            raise DataError(path, f"not a readable slide ({type(e).__name__}: {_first_line(e)})") from None
        levels = [Level((h, w), float(d)) for (w, h), d in zip(self._os.level_dimensions, self._os.level_downsamples)]
        src = "given" if mpp else "openslide.mpp-x"
        if not mpp:
            try:
                mpp = float(self._os.properties.get("openslide.mpp-x", 0) or 0)
            except ValueError:
                mpp = 0.0
        self.format = f"openslide:{self._os.properties.get('openslide.vendor', '')}"
        super().__init__(path, levels, mpp or 0.0, src)

    def _read(self, level, y, x, h, w):
        d = self.levels[level].downsample
        rgba = np.asarray(self._os.read_region((int(round(x * d)), int(round(y * d))), level, (w, h)))
        a = rgba[..., 3:4].astype(np.float32) / 255.0  # transparent = outside the scanned area = white
        return np.round(rgba[..., :3] * a + 255.0 * (1.0 - a)).astype(np.uint8)

    def close(self):
        self._os.close()


# ------------------------------------------------------------------------------------------------ PNG / JPEG
class ImageSlide(Slide):
    """A plain PNG / JPEG / BMP as a one-level slide. Such files cannot be read by region, so the image is decoded
    once into memory (``zoo.data.imageio.read_rgb``); use a pyramidal TIFF for slides larger than memory."""

    format = "image"

    def __init__(self, path: str, mpp: Optional[float] = None):
        from zoo.data.imageio import read_rgb

        self._img = read_rgb(path)
        super().__init__(path, [Level(self._img.shape[:2], 1.0)], mpp or 0.0, "given" if mpp else "")

    def _read(self, level, y, x, h, w):
        return self._img[y:y + h, x:x + w]


# ------------------------------------------------------------------------------------------------ open
def openslide_available() -> bool:
    try:
        import openslide  # noqa: F401
    except Exception:  # noqa: BLE001 — ImportError, or OSError when the native library is missing
        return False
    return True


def open_slide(path, mpp: Optional[float] = None) -> Slide:
    """Open a slide file with the reader for its kind (module docstring); ``mpp`` overrides its metadata.
    Anything else is a one-line ``DataError`` naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(path, "no such slide file")
    if mpp is not None and not (isinstance(mpp, (int, float)) and mpp > 0):
        raise DataError(path, f"mpp must be a positive number of µm per pixel, got {mpp!r}")
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTS:
        return ImageSlide(path, mpp)
    if ext in OPENSLIDE_ONLY_EXTS:
        if not openslide_available():
            raise DataError(path, f"{ext} slides need OpenSlide (pip install 'histozoo[slides]')")
        return OpenSlideSlide(path, mpp)
    try:
        return TiffSlide(path, mpp)
    except DataError:
        if openslide_available():
            try:
                return OpenSlideSlide(path, mpp)
            except DataError:
                pass
        raise


def _first_line(e: Exception) -> str:
    s = str(e)
    return s.splitlines()[0][:200] if s else ""
