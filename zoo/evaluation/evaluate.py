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


def evaluate_centres(model, source: Source, split: str = "test", fold: Optional[int] = None, spec=None,
                     postprocess: Optional[dict] = None, max_images: int = 0, progress: bool = False) -> dict:
    """Score a typed model against centre annotations (CRCHistoPhenotypes) through THE inference function: Qu et
    al.'s Table 2 (detection P / R / F1, accuracy over detected centres, all and per type, confusion) and HoVer-Net's
    F_d / F_c (``zoo.metrics.typed``), counts pooled over the split (:func:`score_centres`)."""
    from zoo.inference import as_forward, predict

    spec = resolve_spec(model, spec, postprocess)
    forward = as_forward(model, spec)

    def segment(s):
        pr = predict(forward, spec, s.image, mpp=s.mpp)
        return pr.instances, pr.classes

    return {**score_centres(segment, source, split, fold, len(spec.class_names), tuple(spec.class_names),
                            max_images, progress),
            "postprocess": spec.postprocess.to_dict(), "spec": spec.to_dict()}


def score_centres(segment, source: Source, split: str = "test", fold: Optional[int] = None, num_types: int = 0,
                  class_names: Sequence[str] = (), max_images: int = 0, progress: bool = False) -> dict:
    """``segment(sample) -> (instance map, per-instance classes)`` scored on the split's centre-annotated images
    (``zoo.metrics.typed.centre_detection``: a centre is detected when it falls inside exactly one predicted
    instance). Detection counts, confusion matrices and the (true, predicted) type pairs are pooled over the images
    before any ratio is taken; per-image rows keep the image's own detection F1 and accuracy. ``source``: a built
    data dir, a shard list or a list of ``Sample`` objects."""
    from zoo.metrics.typed import _detection_row, centre_detection, type_f1

    if isinstance(source, (list, tuple)) and source and isinstance(source[0], Sample):
        samples = (s for s in source if s.points_yx is not None)
    else:
        if isinstance(source, (list, tuple)):
            paths, keep = list(source), None
        else:
            from zoo.data.build import select

            paths, keep = select(source, split, fold)
        samples = (s for s in records.read_samples(paths)
                   if (keep is None or s.image_id in keep) and s.points_yx is not None)
    if progress:
        from tqdm import tqdm

        samples = tqdm(samples, desc=f"evaluate centres {split}", unit="img", dynamic_ncols=True)
    det, conf, per_image = {}, None, []
    pairs = {"true": [], "pred": [], "unpaired_true": [], "unpaired_pred": []}
    for i, s in enumerate(samples):
        if max_images and i >= max_images:
            break
        names = class_names or tuple(s.class_names or ())
        k = num_types or len(names)
        instances, classes = segment(s)
        r = centre_detection(s.points_yx, s.point_classes, instances, classes, k, names)
        for name, row in r["detection"].items():
            acc = det.setdefault(name, {"tp": 0, "fp": 0, "fn": 0})
            for key in acc:
                acc[key] += row[key]
        m = np.asarray(r["classification"]["confusion"], np.int64)
        conf = m if conf is None else conf + m
        for key in pairs:
            pairs[key] += r["pairs"][key]
        per_image.append({"image_id": s.image_id, "centres": int(len(s.point_classes)),
                          "instances": int(len(np.unique(instances[instances > 0]))),
                          "det_f1": r["detection"]["All"]["f1"], "accuracy": r["classification"]["accuracy"]})
    if not per_image:
        raise ConfigError(f"no centre-annotated images to evaluate in split {split!r}" + (f" fold {fold}" if fold else ""))
    detection = {name: _detection_row(c["tp"], c["tp"] + c["fp"], c["tp"] + c["fn"]) for name, c in det.items()}
    labels = ["unknown"] + [str(n) for n in names]
    correct, n = np.diag(conf), conf.sum(axis=1)
    per_class = {labels[t]: {"accuracy": float(correct[t] / n[t]) if n[t] else float("nan"), "correct": int(correct[t]),
                             "n": int(n[t])} for t in range(1, conf.shape[0])}
    classification = {"accuracy": float(correct[1:].sum() / n.sum()) if n.sum() else float("nan"),
                      "correct": int(correct[1:].sum()), "n": int(n.sum()), "per_class": per_class, "labels": labels,
                      "confusion": conf.tolist()}
    return {"split": split, "fold": fold, "images": len(per_image), "detection": detection,
            "classification": classification, "hovernet": type_f1(pairs, k, names), "per_image": per_image}


def format_centres(result: dict) -> str:
    """The pooled centre scores as a few plain-text lines."""
    d, c, h = result["detection"]["All"], result["classification"], result["hovernet"]
    lines = [f"{result['images']} images: detection P {d['precision']:.4f}  R {d['recall']:.4f}  F1 {d['f1']:.4f}  "
             f"(tp {d['tp']}, fp {d['fp']}, fn {d['fn']})",
             f"accuracy over detected centres {c['accuracy']:.4f} ({c['correct']} / {c['n']}); HoVer-Net F_d "
             f"{h['f_d']:.4f}, accuracy {h['accuracy']:.4f}"]
    for name, pc in c["per_class"].items():
        lines.append(f"  {name:<14} accuracy {pc['accuracy']:.4f} ({pc['correct']} / {pc['n']})  "
                     f"F_c {h['f_c'].get(name, float('nan')):.4f}")
    return "\n".join(lines)


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
