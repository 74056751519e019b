"""Scoring models on full images; see the package docstring."""

from __future__ import annotations

import os
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from zoo.data import records
from zoo.data.sample import Sample
from zoo.errors import ConfigError

Source = Union[str, Sequence[str]]


def iter_eval_samples(source: Source, split: str = "test", fold: Optional[int] = None,
                      max_images: int = 0) -> Iterator[Sample]:
    """The labelled samples of ``split`` (or fold ``fold``'s split) from a built data dir or a shard list."""
    if isinstance(source, (list, tuple)):
        paths, keep = list(source), None
    else:
        from zoo.data.build import select

        paths, keep = select(source, split, fold)
    n = 0
    for s in records.read_samples(paths):
        if keep is not None and s.image_id not in keep:
            continue
        if s.instances is None:
            continue
        yield s
        n += 1
        if max_images and n >= max_images:
            return


def predict_probabilities(model, image: np.ndarray) -> np.ndarray:
    """Softmax probabilities (H, W, C) for one uint8 RGB image (zoo models pad to their divisor themselves)."""
    x = image.astype(np.float32)[None] / 255.0
    return np.asarray(model(x, training=False))[0]


def instances_from_probabilities(probs: np.ndarray, postprocess: Optional[dict] = None) -> np.ndarray:
    """Instances from (H, W, C) probabilities. ``method``: ``auto`` (2 classes -> Naylor's dynamics watershed on
    the nucleus posterior; 3 classes -> interior components grown into the boundary class, Yuan & Suh / Qu),
    ``dynamics_watershed``, ``three_class``, ``threshold`` (connected components of p1 > threshold)."""
    from zoo import postprocess as pp

    cfg = dict(postprocess or {})
    method = cfg.pop("method", "auto")
    if method == "auto":
        method = "dynamics_watershed" if probs.shape[-1] == 2 else "three_class"
    if method == "dynamics_watershed":
        return pp.dynamics_watershed(probs[..., 1], **cfg)
    if method == "three_class":
        return pp.instances_from_three_class(probs, **cfg)
    if method == "threshold":
        from scipy import ndimage

        lab, _ = ndimage.label(probs[..., 1] > cfg.get("threshold", 0.5), structure=np.ones((3, 3)))
        return lab.astype(np.int32)
    raise ConfigError(f"postprocess method must be auto, dynamics_watershed, three_class or threshold, got {method!r}")


def evaluate(model, source: Source, split: str = "test", fold: Optional[int] = None,
             postprocess: Optional[dict] = None, max_images: int = 0, progress: bool = False,
             hausdorff: bool = True) -> dict:
    """Score ``model`` on every labelled image of the split: per-image metrics and their means.
    ``hausdorff=False`` skips the object-level Hausdorff distance (the slowest metric) for quick checks."""
    from zoo.metrics import segmentation_report

    samples = iter_eval_samples(source, split, fold, max_images)
    if progress:
        from tqdm import tqdm

        samples = tqdm(samples, desc=f"evaluate {split}", unit="img", dynamic_ncols=True)
    per_image = []
    for s in samples:
        probs = predict_probabilities(model, s.image)
        pred = instances_from_probabilities(probs, postprocess)
        rep = segmentation_report(s.instances, pred, hausdorff=hausdorff)
        per_image.append({"image_id": s.image_id, **{k: float(v) for k, v in rep.items() if _scalar(v)}})
    if not per_image:
        raise ConfigError(f"no labelled images to evaluate in split {split!r}" + (f" fold {fold}" if fold else ""))
    keys = [k for k in per_image[0] if k != "image_id"]
    mean = {k: float(np.nanmean([r[k] for r in per_image])) for k in keys}
    if "aji_c" in keys:  # AJI pooled over the split: sum of intersections / sum of unions (Kumar et al.)
        u = sum(r["aji_u"] for r in per_image)
        mean["aji_pooled"] = float(sum(r["aji_c"] for r in per_image) / u) if u else 1.0
    return {"split": split, "fold": fold, "images": len(per_image), "postprocess": postprocess or {"method": "auto"},
            "mean": mean, "per_image": per_image}


def _scalar(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating))


def format_table(result: dict, keys: Optional[Sequence[str]] = None) -> str:
    """Per-image rows and the mean as a plain-text table."""
    keys = list(keys or result["mean"].keys())
    head = ["image"] + keys
    rows = [[r["image_id"]] + [f"{r[k]:.4f}" for k in keys] for r in result["per_image"]]
    rows.append(["mean"] + [f"{result['mean'][k]:.4f}" for k in keys])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda r: "  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w) for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def save_overlays(model, source: Source, out_dir: str, split: str = "test", fold: Optional[int] = None,
                  postprocess: Optional[dict] = None, n: int = 3) -> str:
    """PNG overlays of predicted (green) and true (red) instance contours on the first ``n`` images."""
    from PIL import Image
    from skimage.segmentation import find_boundaries

    os.makedirs(out_dir, exist_ok=True)
    for s in iter_eval_samples(source, split, fold, n):
        pred = instances_from_probabilities(predict_probabilities(model, s.image), postprocess)
        img = s.image.copy()
        img[find_boundaries(s.instances, mode="inner")] = (255, 0, 0)
        img[find_boundaries(pred, mode="inner")] = (0, 255, 0)
        path = os.path.join(out_dir, f"{s.image_id}.png")
        Image.fromarray(img).save(path + ".tmp", format="PNG")
        os.replace(path + ".tmp", path)
    return out_dir
