"""What a prediction is written as, for people and for other tools: the files ``histozoo predict`` writes per image.

- ``<stem>_instances.png``: the instance map, uint16 (0 = background, 1..N).
- ``<stem>_prob.png``: P(nucleus) as grey (2 channels), the three class probabilities as RGB (3), else P(nucleus).
- ``<stem>_overlay.png``: the image with each nucleus outlined, coloured by its type (QuPath's palette, the same
  colours as the GeoJSON; untyped nuclei in green).
- ``<stem>.geojson``: a FeatureCollection of Polygon / MultiPolygon ``detection`` features, one per nucleus, with
  ``classification`` {name, color} for typed nuclei and ``measurements`` (QuPath's list of {name, value}); QuPath
  imports it with File > Import objects (``zoo.data.geojson``: outlines along pixel edges, so the file reads back to
  the same instance map).
- ``<stem>_nuclei.csv``: one row per nucleus: id, class, class_name, centroid_x, centroid_y (pixels, x right, y
  down, pixel centres at integers), area_px, area_um2 (when the image's µm/px is known), bbox_x0, bbox_y0, bbox_x1,
  bbox_y1 (pixel edges, end exclusive), mean_od_h, mean_od_e (mean hematoxylin and eosin optical density inside the
  nucleus, colour deconvolution of Ruifrok & Johnston 2001 as ``skimage.color.rgb2hed``).

:func:`predict_files` runs THE inference function on image files with any probability function (a Keras model, or a
served model through ``serving.client.ServedForward``) and writes all of the above plus ``summary.json``.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Iterable, Optional, Sequence

import numpy as np

from zoo import atomic
from zoo.inference.core import Prediction, predict

CSV_COLUMNS = ("id", "class", "class_name", "centroid_x", "centroid_y", "area_px", "area_um2", "bbox_x0", "bbox_y0",
               "bbox_x1", "bbox_y1", "mean_od_h", "mean_od_e")
UNTYPED_COLOUR = (0, 255, 0)


def probability_png(probs: np.ndarray) -> np.ndarray:
    """[H, W, C] probabilities -> uint8 array: P(nucleus) as grey for C == 2, the three classes as RGB for C == 3
    (R background, G interior, B boundary), P(nucleus) = 1 - P(background) as grey otherwise."""
    from zoo.postprocess.config import nucleus_probability

    p = probs if probs.shape[-1] == 3 else nucleus_probability(probs)
    return np.round(np.clip(p, 0.0, 1.0) * 255.0).astype(np.uint8)


def nucleus_table(pred: Prediction, image: np.ndarray) -> dict[str, np.ndarray]:
    """Per-nucleus measurements (the CSV columns, module docstring) as {column: array}, one entry per instance id
    present in the map, in increasing order; vectorised: one sort of the nucleus pixels by id, then per-id sums,
    minima and maxima (``np.add / minimum / maximum.reduceat``), and ``skimage.color.rgb2hed`` on nucleus pixels
    only (the same values as ``skimage.measure.regionprops_table``'s area, centroid, bbox and intensity_mean)."""
    from skimage.color import rgb2hed

    inst = np.asarray(pred.instances)
    flat = np.flatnonzero(inst)
    if not len(flat):
        return {c: np.zeros(0) for c in CSV_COLUMNS}
    lab = inst.ravel()[flat]
    o = np.argsort(lab, kind="stable")  # row-major within each id: its first pixel has the lowest row
    flat, lab = flat[o], lab[o]
    ids, start, area = np.unique(lab, return_index=True, return_counts=True)
    ids, area = ids.astype(np.int64), area.astype(np.int64)
    r, c = np.divmod(flat, inst.shape[1])
    pix = np.asarray(image)[r, c][:, None, :]  # (pixels, 1, 3): an image of the nucleus pixels only
    hed = rgb2hed(pix)[:, 0, :2].astype(np.float32)
    od = np.add.reduceat(hed.astype(np.float64), start, axis=0) / area[:, None]
    cls = pred.classes[ids]
    names = np.array([pred.class_names[k - 1] if 0 < k <= len(pred.class_names) else "" for k in cls], object)
    return {"id": ids, "class": cls, "class_name": names,
            "centroid_x": np.add.reduceat(c, start) / area, "centroid_y": np.add.reduceat(r, start) / area,
            "area_px": area, "area_um2": area * pred.mpp ** 2 if pred.mpp else np.full(len(ids), np.nan),
            "bbox_x0": np.minimum.reduceat(c, start), "bbox_y0": r[start],
            "bbox_x1": np.maximum.reduceat(c, start) + 1, "bbox_y1": r[np.r_[start[1:], len(r)] - 1] + 1,
            "mean_od_h": od[:, 0], "mean_od_e": od[:, 1]}


def table_csv(table: dict[str, np.ndarray]) -> str:
    """The nucleus table as CSV text (floats with 4 decimals; an unknown area_um2 is left empty)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    cols = [table[c] for c in CSV_COLUMNS]
    for row in zip(*cols):
        w.writerow(["" if isinstance(v, float) and np.isnan(v) else
                    (f"{v:.4f}" if isinstance(v, (float, np.floating)) else v) for v in row])
    return buf.getvalue()


def overlay(image: np.ndarray, pred: Prediction) -> np.ndarray:
    """The image with each nucleus' inner outline drawn in its type's colour (untyped: green)."""
    from skimage.segmentation import find_boundaries

    from zoo.data.geojson import PALETTE

    out = np.asarray(image, np.uint8).copy()
    edge = find_boundaries(pred.instances, mode="inner")
    if not edge.any():
        return out
    colours = np.array([UNTYPED_COLOUR] + [PALETTE[i % len(PALETTE)] for i in range(max(len(pred.class_names), 1))],
                       np.uint8)
    cls = pred.classes[pred.instances[edge]]
    out[edge] = colours[np.clip(cls, 0, len(colours) - 1)]
    return out


def geojson_features(pred: Prediction, table: Optional[dict] = None) -> list[dict]:
    """QuPath ``detection`` features of the prediction's nuclei, classified, with the table's measurements."""
    from zoo.data.geojson import instances_to_features

    classes = {i: int(c) for i, c in enumerate(pred.classes) if i and c}
    feats = instances_to_features(pred.instances, classes, pred.class_names, object_type="detection")
    if table is not None and len(feats):
        keys = [k for k in CSV_COLUMNS if k not in ("id", "class", "class_name")]
        for f, row in zip(feats, zip(*(table[k] for k in keys))):
            f["properties"]["measurements"] = [{"name": k, "value": float(v)} for k, v in zip(keys, row)
                                               if not (isinstance(v, float) and np.isnan(v))]
    return feats


def write_prediction(pred: Prediction, image: np.ndarray, out_dir: str, stem: str) -> dict:
    """Write the five files of one image (module docstring) into ``out_dir``, atomically; returns their names and
    the counts for the summary."""
    from zoo.data.geojson import write_features

    if pred.num_instances > np.iinfo(np.uint16).max:
        from zoo.errors import DataError

        raise DataError(stem, f"{pred.num_instances} instances do not fit a uint16 PNG")
    names = {"instances_png": f"{stem}_instances.png", "probabilities_png": f"{stem}_prob.png",
             "overlay_png": f"{stem}_overlay.png", "geojson": f"{stem}.geojson", "csv": f"{stem}_nuclei.csv"}
    path = lambda k: os.path.join(out_dir, names[k])  # noqa: E731
    table = nucleus_table(pred, image)
    atomic.save_image(path("instances_png"), pred.instances.astype(np.uint16), format="PNG")
    atomic.save_image(path("probabilities_png"), probability_png(pred.probabilities), format="PNG")
    atomic.save_image(path("overlay_png"), overlay(image, pred), format="PNG")
    write_features(geojson_features(pred, table), path("geojson"))
    atomic.write_text(path("csv"), table_csv(table))
    by_class: dict[str, int] = {}
    for c in pred.classes[1:]:
        key = pred.class_names[c - 1] if 0 < c <= len(pred.class_names) else "untyped"
        by_class[key] = by_class.get(key, 0) + 1
    return {**names, "height": int(image.shape[0]), "width": int(image.shape[1]),
            "num_classes": int(pred.probabilities.shape[-1]), "instances": pred.num_instances, "by_class": by_class}


def output_stems(paths: Sequence[str]) -> list[str]:
    """Safe, distinct output stems of input files (``zoo.data.sample.safe_name`` of each base name)."""
    from zoo.data.sample import safe_name
    from zoo.errors import ConfigError

    stems = [safe_name(os.path.splitext(os.path.basename(os.fspath(p)))[0]) for p in paths]
    dup = {s for s in stems if stems.count(s) > 1}
    if dup:
        raise ConfigError(f"two input images share the name {sorted(dup)[0]!r}; their outputs would collide")
    return stems


def list_images(paths: Iterable[str]) -> list[str]:
    """Image files given as files or folders (a folder: its PNG / JPEG / TIFF / BMP files, sorted, not recursive)."""
    from zoo.errors import DataError

    exts = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
    out = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            found = sorted(os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(exts))
            if not found:
                raise DataError(p, f"no images here (looked for {', '.join(exts)})")
            out.extend(found)
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise DataError(p, "no such image file or folder")
    return out


def predict_files(model, spec, paths: Iterable[str], out_dir: str, *, mpp: Optional[float] = None,
                  progress: bool = True, extra: Optional[dict] = None) -> dict:
    """Run ``zoo.inference.predict`` on every image file (or folder of images) and write, per image, the files of
    :func:`write_prediction` and, for all, ``summary.json`` (``extra`` entries added). ``model``: a Keras model or
    a probability function (e.g. a served model). ``mpp``: the images' µm/px (None: the model's own)."""
    from tqdm import tqdm

    from zoo.data.imageio import read_rgb
    from zoo.errors import DataError, ZooError
    from zoo.inference.forward import as_forward

    atomic.check_output_dir(out_dir)
    paths = list_images(paths)
    stems = output_stems(paths)
    forward = as_forward(model, spec)
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for path, stem in zip(tqdm(paths, desc="predict", unit="img", disable=not progress), stems):
        img = read_rgb(path)
        try:
            pred = predict(forward, spec, img, mpp=mpp)
        except ZooError as e:  # e.g. a server that refused this image: name the image
            if isinstance(e, DataError):
                raise
            raise DataError(path, str(e)) from None
        rows.append({"image": os.path.abspath(path), **write_prediction(pred, img, out_dir, stem)})
    summary = {**(extra or {}), "spec": spec.to_dict(), "mpp": mpp, "images": rows,
               "total_instances": int(sum(r["instances"] for r in rows))}
    atomic.write_json(os.path.join(out_dir, "summary.json"), summary, indent=2)
    return summary
