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
    """The labelled samples of ``split`` (or fold ``fold``'s split) from a built data dir or a shard list; a list of
    ``Sample`` objects (images in memory) is used as it is."""
    if isinstance(source, (list, tuple)) and source and isinstance(source[0], Sample):
        labelled = [s for s in source if s.instances is not None]
        yield from labelled[:max_images] if max_images else labelled
        return
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


def resolve_spec(model, spec=None, postprocess=None):
    """The spec evaluation runs with: ``spec`` (or the model's default spec when it carries none), with
    ``postprocess`` overriding the spec's post-processing when given (said in one line)."""
    from zoo.inference import default_spec
    from zoo.postprocess.config import PostprocessConfig

    if spec is None:
        return default_spec(model, postprocess)
    if postprocess:
        pp = PostprocessConfig.from_dict(postprocess)
        if pp.method != "auto" and pp.to_dict() != spec.postprocess.to_dict():
            return spec.override({"postprocess": pp})
    return spec


def evaluate(model, source: Source, split: str = "test", fold: Optional[int] = None,
             postprocess: Optional[dict] = None, max_images: int = 0, progress: bool = False,
             hausdorff: bool = True, spec=None) -> dict:
    """Score ``model`` on every labelled image of the split through THE inference function
    (``zoo.inference.predict``: the spec's resolution, stain and post-processing): per-image metrics and their means.
    spec: the model's InferenceSpec (default: ``zoo.inference.default_spec``); postprocess: overrides its
    post-processing. ``hausdorff=False`` skips the object-level Hausdorff distance (the slowest metric)."""
    from zoo.inference import as_forward, predict

    spec = resolve_spec(model, spec, postprocess)
    forward = as_forward(model, spec)
    res = score(lambda s: predict(forward, spec, s.image, mpp=s.mpp).instances, source, split, fold, max_images,
                progress, hausdorff)
    return {**res, "postprocess": spec.postprocess.to_dict(), "spec": spec.to_dict()}


def evaluate_classical(method: str, source: Source, split: str = "test", fold: Optional[int] = None,
                       max_images: int = 0, progress: bool = False, hausdorff: bool = True) -> dict:
    """Score a classical, training-free segmenter (``zoo.postprocess.classical.METHODS``, e.g. ``hu_otsu``) on the
    same images and with the same metrics as :func:`evaluate`: the baseline a model must beat."""
    from zoo.postprocess import classical

    res = score(lambda s: classical.segment(method, s.image).instances, source, split, fold, max_images, progress,
                hausdorff)
    return {**res, "method": method}


def score(segment, source: Source, split: str = "test", fold: Optional[int] = None, max_images: int = 0,
          progress: bool = False, hausdorff: bool = True) -> dict:
    """Per-image ``zoo.metrics.segmentation_report`` of ``segment(sample) -> instance map`` on the labelled images
    of the split, their means, and AJI pooled over the split (sum of C / sum of U, Kumar et al.)."""
    from zoo.metrics import segmentation_report

    samples = iter_eval_samples(source, split, fold, max_images)
    if progress:
        from tqdm import tqdm

        samples = tqdm(samples, desc=f"evaluate {split}", unit="img", dynamic_ncols=True)
    per_image = []
    for s in samples:
        instances = segment(s)
        rep = segmentation_report(s.instances, instances, hausdorff=hausdorff)
        per_image.append({"image_id": s.image_id, "instances": int(len(np.unique(instances[instances > 0]))),
                          **{k: float(v) for k, v in rep.items() if _scalar(v)}})
    if not per_image:
        raise ConfigError(f"no labelled images to evaluate in split {split!r}" + (f" fold {fold}" if fold else ""))
    keys = [k for k in per_image[0] if k != "image_id"]
    mean = {k: float(np.nanmean([r[k] for r in per_image])) for k in keys}
    if "aji_c" in keys:  # AJI pooled over the split: sum of intersections / sum of unions (Kumar et al.)
        u = sum(r["aji_u"] for r in per_image)
        mean["aji_pooled"] = float(sum(r["aji_c"] for r in per_image) / u) if u else 1.0
    return {"split": split, "fold": fold, "images": len(per_image), "mean": mean, "per_image": per_image}


def _scalar(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating))


def format_table(result: dict, keys: Optional[Sequence[str]] = None) -> str:
    """Per-image rows and the mean as a plain-text table."""
    keys = list(keys or result["mean"].keys())
    head = ["image"] + keys
    cell = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731 — split-level keys (aji_pooled) have no per-image value
    rows = [[r["image_id"]] + [cell(r.get(k)) for k in keys] for r in result["per_image"]]
    rows.append(["mean"] + [f"{result['mean'][k]:.4f}" for k in keys])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda r: "  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w) for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def save_overlays(model, source: Source, out_dir: str, split: str = "test", fold: Optional[int] = None,
                  postprocess: Optional[dict] = None, n: int = 3, spec=None) -> str:
    """PNG overlays of predicted (green) and true (red) instance contours on the first ``n`` images, named by the
    image id made safe for a file name (``zoo.data.sample.safe_name``: ids may hold ``/`` or ``..``)."""
    from skimage.segmentation import find_boundaries

    from zoo.atomic import save_image
    from zoo.data.sample import safe_name
    from zoo.inference import as_forward, predict

    spec = resolve_spec(model, spec, postprocess)
    forward = as_forward(model, spec)
    os.makedirs(out_dir, exist_ok=True)
    for s in iter_eval_samples(source, split, fold, n):
        pred = predict(forward, spec, s.image, mpp=s.mpp).instances
        img = s.image.copy()
        img[find_boundaries(s.instances, mode="inner")] = (255, 0, 0)
        img[find_boundaries(pred, mode="inner")] = (0, 255, 0)
        save_image(os.path.join(out_dir, f"{safe_name(s.image_id)}.png"), img, format="PNG")
    return out_dir
