"""Unsupervised nucleus classification with a trained GAN model (Hu et al. IEEE JBHI 2019, Fig. 3b and sec. IV-D;
Yuan & Suh sec. 4.2): Q(c|x) assigns every nucleus crop (zoo.data.crops) to one of k clusters; where the crops carry
a nucleus type, the clustering is scored with zoo.metrics.clustering (purity, entropy in bits, F-score with majority
assignment, per-class precision / sensitivity / F1, confusion matrix).

``histozoo cluster`` writes, per run: ``clusters.csv`` (one row per nucleus: its image, source, type and cluster, and
Q's probabilities), ``contact_sheet.png`` (one row per cluster of randomly drawn crops, so a pathologist can see what
each cluster is), ``generated.png`` (G's samples: rows = fixed z, columns = c, the papers' Fig. 5 / 7) and, with
typed crops, ``metrics.json``.
"""

from __future__ import annotations

import csv
import io
import os
from typing import Optional

import numpy as np

from zoo.errors import DataError


def standardize(train, *others, dtype=None) -> list:
    """Zero mean, unit variance per feature with the statistics of ``train`` (constant features left at 0); returns
    ``[train, *others]`` so standardised, in ``dtype`` (default: ``train``'s). The one standardisation of the
    features of k-means, the L2-SVM and DEC."""
    train = np.asarray(train, dtype)
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return [(np.asarray(a, train.dtype) - mu) / sd for a in (train, *others)]


def read_crops(source, split: Optional[str] = None) -> dict:
    """The crops of ``source`` (a folder written by ``histozoo data crops``, or shard paths): ``images`` uint8
    [N, S, S, 3] and per-crop ``type`` (0 = unknown), ``image_id``, ``source_id``, ``dataset``, ``organ``,
    plus ``class_names``."""
    from zoo.data import records

    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        paths = records.list_shards(os.fspath(source), split)
        if not paths:
            raise DataError(os.fspath(source), f"no record shards{f' of split {split!r}' if split else ''}")
    else:
        paths = [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else [os.fspath(p) for p in source]
    images, types, ids, sources, datasets, organs, names = [], [], [], [], [], [], ()
    for s in records.read_samples(paths):
        if images and s.image.shape != images[0].shape:
            raise DataError(s.image_id, f"crop of shape {s.image.shape}, the others {images[0].shape}: not one crop "
                                        "size (make the crops with one `histozoo data crops --size`)")
        images.append(s.image)
        cls = s.instance_classes if s.instance_classes is not None and len(s.instance_classes) else s.point_classes
        types.append(int(cls[0]) if cls is not None and len(cls) else 0)
        ids.append(s.image_id)
        sources.append(s.source_id)
        datasets.append(s.dataset)
        organs.append(s.organ)
        names = names or tuple(s.class_names)
    if not images:
        raise DataError(str(paths[0]) if paths else str(source), "no crops")
    return {"images": np.stack(images), "type": np.asarray(types, np.int64), "image_id": ids, "source_id": sources,
            "dataset": datasets, "organ": organs, "class_names": names}


def assign(model, images: np.ndarray, batch_size: int = 256, embedding: bool = False, progress: bool = False):
    """Q's cluster probabilities [N, k] of uint8 crops (and D's embedding [N, E] when ``embedding``)."""
    from tqdm import tqdm

    probs, embs = [], []
    for i in tqdm(range(0, len(images), batch_size), desc="cluster", disable=not progress, leave=False):
        out = model(images[i:i + batch_size].astype(np.float32) / 255.0, training=False)
        probs.append(np.asarray(out["probabilities"]))
        if embedding:
            embs.append(np.asarray(out["embedding"]))
    probs = np.concatenate(probs)
    return (probs, np.concatenate(embs)) if embedding else probs


def d_features(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """D's features of uint8 crops [N, S, S, 3] (Hu et al. IV-C, Table I): the output of each of the critic's 4
    residual blocks max-pooled to a 4 x 4 grid, flattened and concatenated -> float32 [N, 4 * 16 * d_filters]
    (8192 at d_filters = 128), the ``embedding`` of zoo.models.gan. Only D's trunk runs (not Q), so this works for a
    trained or a freshly built (random-init) GAN model at half the cost of ``assign(..., embedding=True)`` when Q has
    its own trunk (Hu et al.)."""
    s = int(model.config.image_size)
    if images.ndim != 4 or images.shape[1:] != (s, s, 3):
        raise DataError("crops", f"crops of shape {tuple(images.shape[1:])}; the model's D takes ({s}, {s}, 3)")
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].astype(np.float32) / 127.5 - 1.0  # [0, 255] -> [-1, 1], as the model's call
        out.append(np.asarray(model.embed_scaled(x, training=False), np.float32))
    if not out:
        return np.zeros((0, int(model.embedding_dim)), np.float32)
    return np.concatenate(out)


def contact_sheet(images: np.ndarray, clusters: np.ndarray, k: int, per_cluster: int = 16, seed: int = 0,
                  gap: int = 2) -> np.ndarray:
    """uint8 sheet: row j holds up to ``per_cluster`` crops drawn at random (``seed``) from cluster j, white gaps."""
    s = images.shape[1]
    rng = np.random.default_rng(seed)
    sheet = np.full((k * (s + gap) + gap, per_cluster * (s + gap) + gap, 3), 255, np.uint8)
    for j in range(k):
        members = np.flatnonzero(clusters == j)
        pick = rng.choice(members, min(per_cluster, members.size), replace=False) if members.size else []
        for n, idx in enumerate(pick):
            y, x = gap + j * (s + gap), gap + n * (s + gap)
            sheet[y:y + s, x:x + s] = images[idx]
    return sheet


def _csv_text(crops: dict, probs: np.ndarray) -> str:
    k = probs.shape[1]
    names = crops["class_names"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image_id", "source_id", "dataset", "type", "type_name", "cluster", "confidence"]
               + [f"p_cluster_{j}" for j in range(k)])
    clusters = probs.argmax(1)
    for i in range(len(probs)):
        t = int(crops["type"][i])
        w.writerow([crops["image_id"][i], crops["source_id"][i], crops["dataset"][i], t,
                    names[t - 1] if 0 < t <= len(names) else "", int(clusters[i]), f"{probs[i].max():.6f}"]
                   + [f"{p:.6f}" for p in probs[i]])
    return buf.getvalue()


def score(clusters: np.ndarray, types: np.ndarray, class_names=()) -> Optional[dict]:
    """zoo.metrics.clustering.clustering_report over the typed crops (type > 0) as plain JSON, or None if none is
    typed."""
    from zoo.metrics.clustering import clustering_report

    typed = types > 0
    if not typed.any():
        return None
    rep = clustering_report(clusters[typed], types[typed])
    out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in rep.items()}
    out["mapping"] = {str(k): v for k, v in rep["mapping"].items()}
    out["class_names"] = [class_names[t - 1] if 0 < t <= len(class_names) else str(t) for t in rep["labels"]]
    out["typed"], out["untyped"] = int(typed.sum()), int((~typed).sum())
    return out


def cluster_crops(model, source, out_dir: str, split: Optional[str] = None, per_cluster: int = 16, seed: int = 0,
                  batch_size: int = 256, samples: int = 8, progress: bool = True) -> dict:
    """Assign every crop of ``source`` to a cluster with ``model`` (a zoo.models.gan model) and write the module's
    outputs into ``out_dir`` (atomically, each file): clusters.csv, contact_sheet.png, generated.png, counts.json
    (the cluster sizes, overall and per dataset of origin: whether Q's categories follow the cell or the dataset a
    crop came from) and, for typed crops, metrics.json. Returns {"n", "counts", "by_dataset", "metrics", "files"}."""
    from zoo.atomic import save_image, write_json, write_text

    crops = read_crops(source, split)
    s = model.config.image_size
    if crops["images"].shape[1:3] != (s, s):
        raise DataError(os.fspath(source) if not isinstance(source, (list, tuple)) else str(source[0]),
                        f"crops are {crops['images'].shape[1]} x {crops['images'].shape[2]} pixels; the model takes "
                        f"{s} x {s} (make them with `histozoo data crops --size {s}`)")
    probs = assign(model, crops["images"], batch_size, progress=progress)
    clusters = probs.argmax(1)
    k = probs.shape[1]
    os.makedirs(out_dir, exist_ok=True)
    files = {"csv": os.path.join(out_dir, "clusters.csv"), "sheet": os.path.join(out_dir, "contact_sheet.png"),
             "counts": os.path.join(out_dir, "counts.json")}
    write_text(files["csv"], _csv_text(crops, probs))
    datasets = np.asarray(crops["dataset"])
    counts = np.bincount(clusters, minlength=k).tolist()
    by_dataset = {str(d): np.bincount(clusters[datasets == d], minlength=k).tolist() for d in sorted(set(datasets))}
    write_json(files["counts"], {"n": int(len(clusters)), "counts": counts, "by_dataset": by_dataset}, indent=1)
    save_image(files["sheet"], contact_sheet(crops["images"], clusters, k, per_cluster, seed))
    if samples:
        files["generated"] = os.path.join(out_dir, "generated.png")
        save_image(files["generated"], model.sample_grid(samples, seed))
    metrics = score(clusters, crops["type"], crops["class_names"])
    if metrics is not None:
        files["metrics"] = os.path.join(out_dir, "metrics.json")
        write_json(files["metrics"], metrics, indent=1)
    return {"n": int(len(clusters)), "counts": counts, "by_dataset": by_dataset, "metrics": metrics, "files": files}


# ------------------------------------------------------------------------------------ the training core's hooks
def evaluate_clusters(model, source, split: str = "test", fold=None, spec=None, progress: bool = False,
                      **_segmentation_options) -> dict:
    """The training core's evaluation of a model that clusters crops (zoo.training.train dispatches here for the
    GAN models): Q's clusters of every crop of ``split`` scored against the crops' types with
    zoo.metrics.clustering. ``{"mean": {purity, entropy (bits), f_score (Hu's F, majority assignment), accuracy,
    n}, "report": score(...), "images": crops scored}``; the segmentation options (max_images, hausdorff, spec, fold)
    have no meaning here and are ignored."""
    crops = read_crops(source, split)
    clusters = assign(model, crops["images"], progress=progress).argmax(1)
    rep = score(clusters, crops["type"], crops["class_names"])
    if rep is None:
        raise DataError(str(source), f"split {split!r} has no typed crops to score the clusters against")
    mean = {"purity": rep["purity"], "entropy": rep["entropy"], "f_score": rep["f1_weighted"],
            "accuracy": rep["accuracy"], "n": rep["typed"]}
    return {"mean": mean, "report": rep, "images": len(clusters)}  # images: crops scored (the TFX Evaluator's count)


def save_samples(model, source, out_dir: str, split: str = "test", fold=None, spec=None, seed: int = 0) -> str:
    """The GAN models' counterpart of the segmentation overlays: ``generated.png`` (G's samples, rows = fixed z,
    columns = c, Hu et al. Fig. 5 / Yuan & Suh Fig. 7) and ``contact_sheet.png`` (random crops of ``split`` per
    cluster) in ``out_dir``, which is returned."""
    from zoo.atomic import save_image

    os.makedirs(out_dir, exist_ok=True)
    save_image(os.path.join(out_dir, "generated.png"), model.sample_grid(8, seed))
    crops = read_crops(source, split)
    clusters = assign(model, crops["images"]).argmax(1)
    save_image(os.path.join(out_dir, "contact_sheet.png"),
               contact_sheet(crops["images"], clusters, model.config.categories, 16, seed))
    return out_dir
