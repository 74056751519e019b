"""Tune a model's post-processing on held-out (never test) images and record the winner in its InferenceSpec.

The forward pass runs once per image (``zoo.inference.forward_image``); every candidate post-processing is then
applied to the cached probabilities through THE inference function (``zoo.inference.predict(...,
probabilities=...)``), scored with ``zoo.metrics.segmentation_report`` and ranked by the mean of one metric. The grid
is the product of a few values of each method's options (:data:`DEFAULT_GRIDS`, or given); the spec's own setting is
always a candidate, so tuning never returns something worse on the tuning images than what it started from.
"""

from __future__ import annotations

import itertools
from typing import Mapping, Optional, Sequence

import numpy as np

from zoo.errors import ConfigError

#: {method: {option: values}}; the product of the values is searched (the spec's own setting is added)
DEFAULT_GRIDS: dict[str, dict[str, list]] = {
    "three_class": {"min_size": [0, 10, 20, 40], "keep_orphan_boundaries": [True, False]},
    "dynamics_watershed": {"lam": [3, 5, 7, 10], "threshold": [0.4, 0.5, 0.6], "min_size": [0, 10, 20, 40]},
    "threshold": {"threshold": [0.3, 0.4, 0.5, 0.6, 0.7], "min_size": [0, 10, 20, 40]},
    "inner_contour": {"threshold": [0.4, 0.5, 0.6], "min_size": [0, 10, 20, 40]},
}


def candidates(spec, methods: Optional[Sequence[str]] = None,
               grids: Optional[Mapping[str, Mapping[str, list]]] = None) -> list:
    """The PostprocessConfigs to try: the spec's own, then every grid point of each method in ``methods`` (default:
    the spec's method) that the model's channels allow."""
    from zoo.postprocess.config import METHODS, PostprocessConfig

    grids = {**DEFAULT_GRIDS, **(grids or {})}
    out = [spec.postprocess]
    for m in methods or [spec.postprocess.method]:
        if m not in METHODS:
            raise ConfigError(f"tune: unknown post-processing method {m!r} (methods: {', '.join(METHODS)})")
        if spec.num_channels < METHODS[m].min_channels:
            continue
        grid = dict(grids.get(m, {}))
        keys = sorted(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            cfg = PostprocessConfig(m, dict(zip(keys, values)))
            if cfg not in out:
                out.append(cfg)
    return out


def tune_postprocess(model, spec, source, split: str, fold: Optional[int] = None, *, metric: str = "aji",
                     methods: Optional[Sequence[str]] = None, grids=None, max_images: int = 0,
                     progress: bool = False) -> dict:
    """Score every candidate post-processing of ``spec`` on the ``split`` images (never the test images) and return
    ``{"best": spec with the winner, "metric", "split", "images", "table": [{"postprocess", metric, "pq", "aji",
    "det_f1", "instances"}, ...] best first}``. Higher ``metric`` wins (a Hausdorff distance cannot be the metric)."""
    from zoo.evaluation.evaluate import iter_eval_samples
    from zoo.inference.core import predict, to_model_resolution
    from zoo.inference.forward import as_forward, forward_image
    from zoo.metrics import segmentation_report

    if split == "test":
        raise ConfigError("tune: the test images must never choose the post-processing; give a training or "
                          "validation split (e.g. --split train, or a fold's held-out training patient)")
    if "hausdorff" in metric:
        raise ConfigError(f"tune: metric {metric!r} is lower-is-better; pick aji, pq, dq, det_f1 or pixel_dice")
    cands = candidates(spec, methods, grids)
    forward = as_forward(model, spec)
    samples = list(iter_eval_samples(source, split, fold, max_images))
    if not samples:
        raise ConfigError(f"tune: no labelled images in split {split!r}" + (f" fold {fold}" if fold else ""))
    it = samples
    if progress:
        from tqdm import tqdm

        it = tqdm(samples, desc=f"tune on {split}", unit="img", dynamic_ncols=True)
    scores = np.zeros((len(cands), len(samples), 5))
    keys = (metric, "aji", "pq", "det_f1")
    for j, s in enumerate(it):
        probs = forward_image(forward, spec, to_model_resolution(spec, s.image, s.mpp))  # once; every candidate reuses it
        for i, c in enumerate(cands):
            pred = predict(None, spec.replace(postprocess=c), s.image, mpp=s.mpp, probabilities=probs)
            rep = segmentation_report(s.instances, pred.instances, hausdorff=False)
            if metric not in rep:
                raise ConfigError(f"tune: unknown metric {metric!r} (one of: {', '.join(sorted(rep))})")
            scores[i, j] = [float(rep[k]) for k in keys] + [pred.num_instances]
    mean = np.nanmean(scores, axis=1)
    order = np.argsort(-mean[:, 0], kind="stable")  # ties keep the spec's own setting first
    table = [{"postprocess": cands[i].to_dict(), metric: float(mean[i, 0]), "aji": float(mean[i, 1]),
              "pq": float(mean[i, 2]), "det_f1": float(mean[i, 3]), "instances": float(mean[i, 4])} for i in order]
    return {"best": spec.replace(postprocess=cands[int(order[0])]), "metric": metric, "split": split, "fold": fold,
            "images": [s.image_id for s in samples], "before": table[[int(i) for i in order].index(0)],
            "table": table}
