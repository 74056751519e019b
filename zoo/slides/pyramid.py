"""Write an in-memory RGB image as a pyramidal TIFF a slide reader opens: OME-TIFF (levels as SubIFDs, OME-XML
``PhysicalSizeX``) or an SVS-like TIFF (Aperio page layout: tiled baseline whose ImageDescription starts with
``Aperio`` and carries ``MPP = ...``, a stripped thumbnail page, tiled reduced levels, label and macro pages), both
through tifffile. For tests, benchmarks and converting tile mosaics; each level is the previous one averaged 2x2.
"""

from __future__ import annotations

import os

import numpy as np

from zoo import atomic


def pyramid_levels(image: np.ndarray, min_side: int = 256) -> list[np.ndarray]:
    """The image and its 2x-averaged reductions down to the first one whose shorter side is < 2 * ``min_side``."""
    levels = [np.asarray(image, np.uint8)]
    while min(levels[-1].shape[:2]) >= 2 * min_side:
        a = levels[-1]
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        a = a[:h, :w].astype(np.float32).reshape(h // 2, 2, w // 2, 2, 3).mean((1, 3))
        levels.append(np.round(a).astype(np.uint8))
    return levels


def write_pyramid(path, image: np.ndarray, mpp: float, flavour: str = "ome", tile: int = 256,
                  compression: str = "zlib", min_side: int = 256) -> str:
    """Write ``image`` (H, W, 3) uint8 at ``mpp`` µm/px as a pyramidal ``flavour`` ("ome" or "svs") TIFF,
    atomically; returns ``path``."""
    import tifffile

    if flavour not in ("ome", "svs"):
        raise ValueError(f"flavour must be 'ome' or 'svs', got {flavour!r}")
    levels = pyramid_levels(image, min_side)
    res = (1e4 / mpp, 1e4 / mpp)
    kw = dict(photometric="rgb", compression=compression, resolution=res, resolutionunit="CENTIMETER")
    with atomic.atomic_path(os.fspath(path)) as tmp, tifffile.TiffWriter(tmp, ome=(flavour == "ome")) as tw:
        if flavour == "ome":
            tw.write(levels[0], subifds=len(levels) - 1, tile=(tile, tile),
                     metadata={"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeXUnit": "µm",
                               "PhysicalSizeY": mpp, "PhysicalSizeYUnit": "µm"}, **kw)
            for lv in levels[1:]:
                tw.write(lv, subfiletype=1, tile=(tile, tile), **kw)
        else:
            h, w = levels[0].shape[:2]
            desc = (f"Aperio Image Library v12.0.15 \r\n{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}) histozoo |"
                    f"AppMag = 40|MPP = {mpp:.4f}")
            tw.write(levels[0], tile=(tile, tile), description=desc, metadata=None, **kw)
            thumb = levels[-1][::2, ::2]
            tw.write(thumb, description=f"Aperio Image Library v12.0.15 \r\n{w}x{h} -> {thumb.shape[1]}x"
                                        f"{thumb.shape[0]}", metadata=None, photometric="rgb")
            for lv in levels[1:]:
                tw.write(lv, tile=(tile, tile), description=f"Aperio Image Library v12.0.15 \r\n{w}x{h} -> "
                                                            f"{lv.shape[1]}x{lv.shape[0]}", metadata=None, **kw)
            label = np.full((64, 64, 3), 255, np.uint8)
            tw.write(label, subfiletype=1, description="Aperio Image Library v12.0.15\r\nlabel 64x64",
                     metadata=None, photometric="rgb")
            tw.write(label, subfiletype=9, description="Aperio Image Library v12.0.15\r\nmacro 64x64",
                     metadata=None, photometric="rgb")
    return os.fspath(path)
