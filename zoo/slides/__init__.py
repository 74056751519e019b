"""Whole slides on one machine (issue 24): readers, tissue detection, tiled inference with seamless instances,
streamed and resumable outputs. See docs/slides.md.

- ``open_slide(path, mpp=None)`` -> :class:`Slide` (levels, mpp, ``read_region``): ``zoo.slides.readers``.
- ``detect_tissue(slide)``: Otsu + morphology on a thumbnail: ``zoo.slides.tissue``.
- ``tile_grid`` / ``resolve_tile``: the grid and the seam rule: ``zoo.slides.tiled``.
- ``predict_slide(slide_path, model, spec, out_dir, ...)`` -> summary dict: ``zoo.slides.run`` (the function other
  code, e.g. a Beam pipeline, calls; model and spec as ``zoo.training.tracking.load`` returns them).
- ``write_pyramid``: an in-memory image as a pyramidal OME-TIFF / SVS-like TIFF: ``zoo.slides.pyramid``.
"""

from zoo.slides.pyramid import write_pyramid
from zoo.slides.readers import Level, Slide, open_slide
from zoo.slides.run import plan_run, predict_slide
from zoo.slides.tiled import Tile, resolve_tile, tile_grid
from zoo.slides.tissue import TissueMask, detect_tissue

__all__ = ["open_slide", "Slide", "Level", "detect_tissue", "TissueMask", "tile_grid", "resolve_tile", "Tile",
           "predict_slide", "plan_run", "write_pyramid"]
