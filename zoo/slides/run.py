"""``predict_slide``: a whole slide through THE inference function, tile by tile, streamed to disk and resumable.

1. Open the slide (``zoo.slides.readers``), pick the level by the model's resolution (``Slide.choose_level``); the
   tile and overlap are given in the model's pixels and converted to the level's.
2. Tissue mask on a thumbnail (``zoo.slides.tissue``): tiles whose core holds no tissue are never run.
3. Tiles (``zoo.slides.tiled.tile_grid``) are read by a background thread two batches ahead (I/O overlaps the model),
   resampled to the model (``zoo.inference.core.to_model_resolution``), run through the model ``batch`` at a time
   (``zoo.inference.as_forward``), each post-processed by ``zoo.inference.predict(..., probabilities=...)`` (the one
   post-processing and class assignment), then stitched by the seam rule (``zoo.slides.tiled.resolve_tile``).
4. Each tile's accepted nuclei (label crop, measurements, QuPath features in slide coordinates) are written
   atomically to ``<out>/tiles/<index>.npz``; only a few rows of tiles are ever held in memory.
5. ``zoo.slides.outputs.assemble`` streams the tile files into the slide's GeoJSON, CSV / Parquet, overlay, summary.

Resume: ``<out>/run.json`` records what determines the result (slide, level, grid, spec); a rerun with the same
settings skips every batch whose tiles are all written and recomputes the others whole (batches are fixed runs of
``batch`` tissue tiles, so every tile sees the same batch as in an uninterrupted run), so the final files are
identical to an uninterrupted run's. A folder holding a run with other settings is refused.
"""

from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import numpy as np

from zoo import atomic
from zoo.errors import ConfigError

RUN_FILE = "run.json"
TILES_DIR = "tiles"
DEFAULT_TILE = 512          # model pixels, when the spec has no tile size
NUCLEUS_RADIUS_UM = 12.0    # the default margin: nuclei up to 24 µm across are never cut (seam rule)
PREFETCH_BATCHES = 2


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a run computes: level, its µm/px, the resampling factor to the model, and the grid (level pixels)."""

    level: int
    level_shape: tuple
    level_mpp: float
    downsample: float
    factor: float
    tile_model: int
    overlap_model: int
    tile: int
    overlap: int


def plan_run(slide, spec, tile_size: Optional[int] = None, overlap: Optional[int] = None) -> Plan:
    """The level and grid for ``spec`` on ``slide`` (module docstring, step 1). ``tile_size`` / ``overlap`` are in
    the model's pixels (defaults: the spec's tile size or 512; the larger of the spec's overlap and twice
    ``NUCLEUS_RADIUS_UM``)."""
    from zoo.inference import resample_factor

    t = int(tile_size or spec.tile_size or DEFAULT_TILE)
    if overlap is None:
        auto = 2 * int(np.ceil(NUCLEUS_RADIUS_UM / spec.mpp)) if spec.mpp else 64
        overlap = max(int(spec.tile_overlap), auto)
    o = int(overlap)
    if not 0 <= o <= t // 2:
        raise ConfigError(f"slide overlap must lie in [0, tile_size / 2] (model pixels), got overlap={o}, "
                          f"tile_size={t}")
    level = slide.choose_level(spec.mpp)
    lmpp = slide.level_mpp(level)
    f = resample_factor(spec, lmpp)
    tile = t if f == 1.0 else int(np.floor(t / f))
    ov = o if f == 1.0 else int(round(o / f))
    ov -= ov % 2
    return Plan(level, tuple(slide.levels[level].shape), lmpp, slide.levels[level].downsample, f, t, o, tile, ov)


def predict_slide(slide_path, model, spec, out_dir, *, mpp=None, tile_size=None, overlap=None, batch=4,
                  progress=True) -> dict:
    """Predict every nucleus of a slide with ``model`` + ``spec`` (what ``zoo.training.tracking.load`` returns) and
    write ``out_dir``/{nuclei.geojson, nuclei.csv, nuclei.parquet (with pyarrow), overlay.png, summary.json}; returns
    the summary. ``mpp`` overrides the slide's metadata; ``tile_size`` / ``overlap`` are model pixels; ``batch``
    tiles per model call. Resumable (module docstring)."""
    from zoo.slides.outputs import assemble
    from zoo.slides.readers import open_slide
    from zoo.slides.tiled import tile_grid
    from zoo.slides.tissue import detect_tissue

    if not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be a positive integer, got {batch!r}")
    out = atomic.check_output_dir(out_dir)
    t_start = time.perf_counter()
    with open_slide(slide_path, mpp) as slide:
        plan = plan_run(slide, spec, tile_size, overlap)
        tissue = detect_tissue(slide)
        tiles = tile_grid(plan.level_shape, plan.tile, plan.overlap)
        d = plan.downsample
        run_tiles = [t for t in tiles if tissue.any_in(t.cy0 * d, t.cx0 * d, t.cy1 * d, t.cx1 * d)]
        manifest = {"slide": os.path.abspath(slide.path), "slide_shape": list(slide.shape),
                    "slide_bytes": os.path.getsize(slide.path), "mpp": slide.mpp, **_plan_dict(plan),
                    "batch": batch, "tiles": len(tiles), "tissue_tiles": [t.index for t in run_tiles],
                    "spec": spec.to_dict()}
        os.makedirs(os.path.join(out, TILES_DIR), exist_ok=True)
        run_path = os.path.join(out, RUN_FILE)
        if os.path.exists(run_path):
            old = atomic.read_json(run_path, "slide run manifest")
            if old != _jsonable(manifest):
                diff = sorted(k for k in set(old) | set(manifest) if old.get(k) != _jsonable(manifest).get(k))
                raise ConfigError(f"{out}: holds a slide run with other settings ({', '.join(diff)}); "
                                  "use a new --out folder")
        else:
            atomic.write_json(run_path, manifest)
        timing = {"read_wait": 0.0, "model": 0.0, "postprocess": 0.0, "stitch_write": 0.0}
        reused = _run_tiles(slide, plan, tiles, run_tiles, model, spec, out, batch, progress, timing)
        t_asm = time.perf_counter()
        run = {"tiles_reused": reused}
        summary = assemble(out, slide, plan, tiles, run_tiles, tissue, spec, run=run)
        timing["assemble"] = time.perf_counter() - t_asm
        run.update(seconds=round(time.perf_counter() - t_start, 3),
                   seconds_by_step={k: round(v, 3) for k, v in timing.items()})
        atomic.write_json(os.path.join(out, "summary.json"), summary, indent=2)
    return summary


def _plan_dict(plan: Plan) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(plan).items()}


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj, default=float))


def tile_path(out: str, index: int) -> str:
    return os.path.join(out, TILES_DIR, f"{index:07d}.npz")


def _run_tiles(slide, plan, tiles, run_tiles, model, spec, out, batch, progress, timing) -> int:
    """Steps 3-4 of the module docstring, in three threads: tile reads (``PREFETCH_BATCHES`` ahead), the model (this
    thread), and post-processing + the seam rule + writing, in tile order (one worker, at most
    ``PREFETCH_BATCHES`` batches behind, so memory stays bounded). Returns how many tiles were already on disk;
    adds to ``timing`` the seconds waiting for reads, in the model, in post-processing, in stitching + writing, and
    waiting for the worker (``worker_wait``)."""
    from tqdm import tqdm

    from zoo.inference import as_forward

    forward = as_forward(model, spec)
    batches = [run_tiles[i:i + batch] for i in range(0, len(run_tiles), batch)]
    done = {t.index for t in run_tiles if os.path.exists(tile_path(out, t.index))}
    todo = [b for b in batches if not all(t.index in done for t in b)]
    grid = {(t.row, t.col): t for t in tiles}
    grid["ncols"] = 1 + max(t.col for t in tiles)
    cache: dict = {}
    timing.setdefault("worker_wait", 0.0)

    def read(b):
        return [slide.read_region(plan.level, t.y, t.x, t.h, t.w) for t in b]

    def finish(b, images, probs):
        preds = _postprocess(forward, spec, images, probs, plan, timing)
        t0 = time.perf_counter()
        for t, img, pred in zip(b, images, preds):
            if t.index in done:  # written before an interruption: recomputed for the batch, kept as written
                continue
            _finish_tile(t, img, pred, plan, spec, out, grid, cache)
            bar.update(1)
        timing["stitch_write"] += time.perf_counter() - t0

    def wait(fut):
        t0 = time.perf_counter()
        fut.result()  # re-raises a worker's exception here
        timing["worker_wait"] += time.perf_counter() - t0

    bar = tqdm(total=len(run_tiles), initial=len(done), unit="tile", disable=not progress,
               desc=os.path.basename(slide.path)[:30], dynamic_ncols=True)
    with ThreadPoolExecutor(1, thread_name_prefix="slide-read") as reader, \
            ThreadPoolExecutor(1, thread_name_prefix="slide-post") as worker:
        pending = [reader.submit(read, b) for b in todo[:PREFETCH_BATCHES]]
        posts: list = []
        try:
            for k, b in enumerate(todo):
                t0 = time.perf_counter()
                images = pending.pop(0).result()
                timing["read_wait"] += time.perf_counter() - t0
                if k + PREFETCH_BATCHES < len(todo):
                    pending.append(reader.submit(read, todo[k + PREFETCH_BATCHES]))
                probs = _forward_batch(forward, spec, images, plan, timing)
                posts.append(worker.submit(finish, b, images, probs))
                while len(posts) > PREFETCH_BATCHES or (posts and posts[0].done()):
                    wait(posts.pop(0))
            while posts:
                wait(posts.pop(0))
        finally:  # an exception (a fault in the model): the batches already run are still finished and written
            for p in pending:
                p.cancel()
    bar.close()
    return len(done)


def _forward_batch(forward, spec, images, plan, timing) -> list:
    """Probabilities of a batch of tiles at the model's resolution (one model call when their shapes agree)."""
    from zoo.inference import forward_image
    from zoo.inference.core import to_model_resolution

    t0 = time.perf_counter()
    xs = [to_model_resolution(spec, img, plan.level_mpp or None) for img in images]
    if len({x.shape for x in xs}) == 1 and not (spec.tile_size and max(xs[0].shape[:2]) > spec.tile_size):
        probs = list(forward(np.stack(xs)))
    else:
        probs = [forward_image(forward, spec, x) for x in xs]
    timing["model"] = timing.get("model", 0.0) + time.perf_counter() - t0
    return probs


def _postprocess(forward, spec, images, probs, plan, timing) -> list:
    """``zoo.inference.predict`` on each tile with its probabilities: the one post-processing and class assignment."""
    from zoo.inference import predict

    t0 = time.perf_counter()
    preds = [predict(forward, spec, img, mpp=plan.level_mpp or None, probabilities=p) for img, p in zip(images, probs)]
    timing["postprocess"] = timing.get("postprocess", 0.0) + time.perf_counter() - t0
    return preds


def _predict_batch(forward, spec, images, plan, timing=None) -> list:
    """Model then post-processing of a batch of tiles, one after the other (plain tile-by-tile prediction)."""
    timing = {} if timing is None else timing
    return _postprocess(forward, spec, images, _forward_batch(forward, spec, images, plan, timing), plan, timing)


def _accepted(tile, grid, cache, out) -> np.ndarray:
    """bool (h, w): pixels of this tile's region held by nuclei accepted from earlier, overlapping tiles."""
    held = np.zeros((tile.h, tile.w), bool)
    for r in range(tile.row - 3, tile.row + 1):
        for c in range(tile.col - 3, tile.col + 4):
            u = grid.get((r, c))
            if u is None or u.index >= tile.index or not u.intersects(tile):
                continue
            if u.index not in cache:
                p = tile_path(out, u.index)
                if not os.path.exists(p):  # a background tile: nothing accepted
                    cache[u.index] = None
                    continue
                with np.load(p) as z:
                    cache[u.index] = (tuple(z["origin"]), z["labels"] > 0)
            if cache[u.index] is None:
                continue
            (oy, ox), m = cache[u.index]
            ya, yb = max(oy, tile.y), min(oy + m.shape[0], tile.y + tile.h)
            xa, xb = max(ox, tile.x), min(ox + m.shape[1], tile.x + tile.w)
            if yb > ya and xb > xa:
                held[ya - tile.y:yb - tile.y, xa - tile.x:xb - tile.x] |= m[ya - oy:yb - oy, xa - ox:xb - ox]
    ncols = grid["ncols"]
    for k in [k for k in cache if k // ncols < tile.row - 3]:
        del cache[k]
    return held


def _finish_tile(tile, image, pred, plan, spec, out, grid, cache) -> None:
    """Seam rule, measurements and QuPath features of one tile, written atomically to its tile file."""
    import json

    from zoo.inference.outputs import geojson_features, nucleus_table
    from zoo.slides.tiled import resolve_tile

    held = _accepted(tile, grid, cache, out)
    kept, classes, stats = resolve_tile(pred.instances, pred.classes, tile, held, plan.level_shape)
    nz = np.nonzero(kept)
    if len(nz[0]):
        y0, y1, x0, x1 = nz[0].min(), nz[0].max() + 1, nz[1].min(), nz[1].max() + 1
    else:
        y0 = y1 = x0 = x1 = 0
    crop = kept[y0:y1, x0:x1]  # measurements and outlines on the kept nuclei's box only
    oy, ox = tile.y + y0, tile.x + x0
    kp = dataclasses.replace(pred, instances=crop, classes=classes)
    table = slide_table(nucleus_table(kp, image[y0:y1, x0:x1]), oy, ox, plan, pred.mpp)
    feats = geojson_features(kp, table)
    for f in feats:
        f["geometry"]["coordinates"] = _shift(f["geometry"]["coordinates"], ox, oy, plan.downsample)
    arrays = {f"col_{k}": np.asarray(v) for k, v in table.items() if k != "class_name"}
    arrays["col_class_name"] = np.asarray(table["class_name"], dtype=str)
    crop = crop.astype(np.uint16) if crop.size and crop.max() < 2 ** 16 else crop  # half the bytes to compress
    cache[tile.index] = ((oy, ox), crop > 0)
    with atomic.atomic_path(tile_path(out, tile.index)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, origin=np.array([oy, ox]), labels=crop,
                                features=np.frombuffer(json.dumps(feats, separators=(",", ":")).encode(), np.uint8),
                                stats=np.array(json.dumps(stats)), **arrays)


def _shift(coords, ox: float, oy: float, d: float):
    """GeoJSON coordinates (QuPath pixel-corner convention) of a tile -> level-0 slide coordinates (one numpy operation
    per ring; integral values stay integers, so the text is the same as a whole-image trace's)."""
    if coords and isinstance(coords[0][0], (int, float)):  # a ring: [[x, y], ...]
        r = (np.asarray(coords, np.float64) + (ox, oy)) * d
        return r.astype(np.int64).tolist() if (r == np.round(r)).all() else r.tolist()
    return [_shift(c, ox, oy, d) for c in coords]


def slide_table(table: dict, oy: int, ox: int, plan: Plan, mpp: float) -> dict:
    """``zoo.inference.outputs.nucleus_table`` of a crop whose top-left pixel is (``oy``, ``ox``) on the level ->
    slide coordinates: centroids and bboxes in level-0
    pixels (pixel centres at integers; level pixel c covers level-0 [c * d, (c + 1) * d)), centroids in µm too,
    ``area_px`` in level-0 pixels; ``area_um2`` and the optical densities as measured."""
    d = plan.downsample
    t = dict(table)
    n = len(t["id"])
    t["centroid_x"] = (np.asarray(t["centroid_x"], np.float64) + ox + 0.5) * d - 0.5
    t["centroid_y"] = (np.asarray(t["centroid_y"], np.float64) + oy + 0.5) * d - 0.5
    for k, o in (("bbox_x0", ox), ("bbox_x1", ox), ("bbox_y0", oy), ("bbox_y1", oy)):
        t[k] = np.round((np.asarray(t[k], np.float64) + o) * d).astype(np.int64)
    t["area_px"] = np.round(np.asarray(t["area_px"], np.float64) * d * d).astype(np.int64)
    m0 = mpp / d if mpp else 0.0  # µm per level-0 pixel (the model's when the slide's is unknown)
    t["centroid_x_um"] = t["centroid_x"] * m0 if m0 else np.full(n, np.nan)
    t["centroid_y_um"] = t["centroid_y"] * m0 if m0 else np.full(n, np.nan)
    return t
