"""The annotation cycle (Bhatia, "Ground-truth-free nuclei segmentation", sections 3.2.3 and 4.1, Table 4.1), driven
by the one training core.

Cycle 1 is the automatic model trained on synthetic records only (``initial_model``: a run folder, ``.keras`` file or
MLflow URI). Each later cycle c takes the next batch of real unlabelled images (``batches[c - 2]``: image ids of the
``pool_data`` split; their centre ``crop`` px, Bhatia: one 400 x 400 crop per image), annotates them and retrains:

1. proposals: the current automatic model's instance map (``zoo.inference.predict``);
2. correction by a simulated annotator with the interactive model (``zoo.interactive``) and a click budget of
   ``clicks_per_image`` (:func:`annotate_image`). The image's ground truth is read ONLY to place clicks (f-BRS
   protocol, ``zoo.interactive.simulate.next_click``) and to choose which nucleus / proposal to click on; every label
   written is a model's mask (a proposal accepted as it is, or the interactive model's mask), never the ground truth;
3. the annotated crops written as records of the one schema (``zoo.data.build.DatasetWriter``) in
   ``<out>/cycle_NN/records``;
4. retraining through ``zoo.training.train`` on the synthetic records + every crop annotated so far, starting from
   the previous cycle's weights (the experiment config's ``init_weights``), into ``<out>/cycle_NN/run``;
5. scoring on ``eval_data`` / ``eval_split`` (MoNuSeg test) with ``zoo.evaluation.evaluate``; a row (cycle, images
   annotated, clicks spent, Dice, AJI, PQ, run dir) is appended to ``<out>/cycles.json`` and ``<out>/cycles.csv``.

Resumable: a cycle with a row is skipped; a cycle whose records are complete is not annotated again; its training
continues from its last checkpoint (``train(resume=True)``). The interactive model stays the one given (the report
retrains it every cycle too; not done here).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from typing import Any, Callable, Optional

import numpy as np

from zoo import atomic
from zoo.errors import ConfigError, DataError

TABLE_JSON, TABLE_CSV, CONFIG_COPY = "cycles.json", "cycles.csv", "cycle_config.json"
COLUMNS = ("cycle", "images_annotated", "clicks", "clicks_total", "clicks_per_image", "dice", "aji", "aji_pooled",
           "pq", "eval_images", "run_dir")


@dataclasses.dataclass(frozen=True)
class CycleConfig:
    """The cycle's settings (``configs/cycle/monuseg.yaml``).

    initial_model: cycle 1's automatic model (trained on synthetic records only). interactive_model: the
    click-conditioned segmenter (``zoo.interactive.load``). train_config: the experiment config (YAML path or a
    mapping) of the automatic model's retraining; ``train_overrides`` changes its keys (e.g. epochs).
    synthetic_data / synthetic_split: the synthetic records, part of every cycle's training set. pool_data /
    pool_split: the real images (built records; only the pixels become training data). batches: image ids of each
    cycle after the first. crop: side of the centre crop annotated (0 = the whole image). clicks_per_image: the
    click budget of one image; clicks_per_nucleus: at most this many clicks on one nucleus; accept_iou: a proposal (or
    an interactive mask) whose IoU with the nucleus reaches it is accepted (f-BRS's 0.85). fbrs: run f-BRS per click.
    eval_data / eval_split: where Dice, AJI, PQ are measured (MoNuSeg test)."""

    initial_model: str
    interactive_model: str
    train_config: Any
    synthetic_data: str
    pool_data: str
    eval_data: str
    batches: tuple = ()
    synthetic_split: str = "train"
    pool_split: str = "train"
    eval_split: str = "test"
    crop: int = 400
    clicks_per_image: int = 200
    clicks_per_nucleus: int = 3
    accept_iou: float = 0.85
    fbrs: bool = False
    train_overrides: Any = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for key in ("initial_model", "interactive_model", "synthetic_data", "pool_data", "eval_data",
                    "synthetic_split", "pool_split", "eval_split"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(f"{key}: must be a non-empty string, got {getattr(self, key)!r}")
        if not isinstance(self.train_config, (str, dict)) or not self.train_config:
            raise ConfigError(f"train_config: must be a config file path or a mapping, got {self.train_config!r}")
        if not isinstance(self.train_overrides, dict):
            raise ConfigError(f"train_overrides: must be a mapping, got {self.train_overrides!r}")
        batches = self.batches
        if not isinstance(batches, (list, tuple)) or not all(
                isinstance(b, (list, tuple)) and b and all(isinstance(i, str) for i in b) for b in batches):
            raise ConfigError(f"batches: must be a list of non-empty lists of image ids, got {batches!r}")
        object.__setattr__(self, "batches", tuple(tuple(b) for b in batches))
        seen = [i for b in self.batches for i in b]
        if len(seen) != len(set(seen)):
            raise ConfigError("batches: an image id appears in more than one cycle")
        for key, low in (("crop", 0), ("clicks_per_image", 0), ("clicks_per_nucleus", 1)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"{key}: must be an integer >= {low}, got {v!r}")
        if isinstance(self.accept_iou, bool) or not isinstance(self.accept_iou, (int, float)) \
                or not 0 < self.accept_iou <= 1:
            raise ConfigError(f"accept_iou: must be a number in (0, 1], got {self.accept_iou!r}")
        if not isinstance(self.fbrs, bool):
            raise ConfigError(f"fbrs: must be true or false, got {self.fbrs!r}")

    @property
    def cycles(self) -> int:
        """Cycle 1 (the initial model) and one cycle per batch."""
        return 1 + len(self.batches)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d, source: str = "cycle config") -> "CycleConfig":
        """From a mapping; one-line ConfigError naming ``source`` and the key."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(map(str, set(d) - set(known)))
        if unknown:
            raise ConfigError(f"{source}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING and f.name not in d]
        if missing:
            raise ConfigError(f"{source}: missing key {missing[0]!r}")
        try:
            return cls(**d)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def load(cls, path: str) -> "CycleConfig":
        """Read a YAML / JSON cycle config."""
        import yaml

        if not os.path.isfile(path):
            raise ConfigError(f"{path}: config file not found")
        try:
            with open(path) as fh:
                d = yaml.safe_load(fh) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML/JSON ({str(e).splitlines()[0]})") from None
        return cls.from_dict(d, path)


# ------------------------------------------------------------------------------------------------ one image
def annotate_image(image, gt, proposal, segment: Callable, *, budget: int, per_nucleus: int = 3,
                   accept_iou: float = 0.85):
    """A simulated annotator corrects the automatic model's ``proposal`` (instance map) of ``image`` with the
    interactive model -> (label map int32, stats dict). ``segment(clicks, prev_mask) -> bool mask`` is the
    interactive model (``Segmenter.segment`` bound to the image); ``gt`` (instance map) places the clicks only.

    For each ground-truth nucleus in id order: the proposal instance with the highest IoU with it (not used before) is
    accepted as it is when that IoU >= ``accept_iou`` (no click); otherwise, while the image's ``budget`` lasts, up to
    ``per_nucleus`` clicks are placed by the f-BRS protocol (``next_click``: the first against the proposal, which is
    also the first ``prev_mask``), each followed by the interactive model's mask, stopping once its IoU reaches
    ``accept_iou``; the last interactive mask is the nucleus's label. Labels are painted in that order on pixels not yet
    labelled; a proposal touched by a label is replaced by it. Then each remaining proposal that overlaps no
    ground-truth nucleus (a false positive) is deleted with one click while the budget lasts; the other remaining
    proposals (nuclei the budget did not reach) are kept as they are. stats: clicks, nuclei (ground truth), accepted,
    corrected, unreached (nuclei after the budget ran out), empty (a mask that added no unlabelled pixel), deleted,
    kept (unreviewed proposals)."""
    from zoo.interactive.simulate import iou, next_click
    from zoo.metrics.labels import overlap

    gt = np.asarray(gt)
    proposal = np.asarray(proposal)
    ov = overlap(gt, proposal)
    pair_iou = ov.iou
    labels = np.zeros(gt.shape, np.int32)
    used = set()
    stats = dict(clicks=0, nuclei=ov.n_gt, accepted=0, corrected=0, unreached=0, empty=0, deleted=0, kept=0)
    for gi, g in enumerate(ov.gt_ids.tolist()):
        obj = gt == g
        cand = [(pair_iou[k], int(ov.pred_ids[ov.pair_pred[k]])) for k in np.flatnonzero(ov.pair_gt == gi)]
        cand = sorted((c for c in cand if c[1] not in used), reverse=True)
        best_iou, p = cand[0] if cand else (0.0, 0)
        pred = proposal == p if p else np.zeros(gt.shape, bool)
        mask = None
        if p and best_iou >= accept_iou:
            mask = pred
            stats["accepted"] += 1
        elif stats["clicks"] < budget:
            clicks = []
            prev = pred if pred.any() else None
            for _ in range(min(per_nucleus, budget - stats["clicks"])):
                click = next_click(obj, pred)
                if click is None:
                    break
                clicks.append(click)
                stats["clicks"] += 1
                pred = np.asarray(segment(list(clicks), prev), bool)
                prev, mask = pred, pred
                if iou(obj, pred) >= accept_iou:
                    break
            stats["corrected"] += mask is not None
        if mask is None:
            stats["unreached"] += 1
            continue
        if not (mask & (labels == 0)).any():
            stats["empty"] += 1
            continue
        labels[mask & (labels == 0)] = labels.max() + 1
    for p in np.unique(proposal[(labels > 0) & (proposal > 0)]).tolist():
        used.add(int(p))  # replaced by the labels painted over them
    for p in ov.pred_ids.tolist():
        if p in used:
            continue
        region = proposal == p
        if not (gt[region] > 0).any() and stats["clicks"] < budget:
            stats["clicks"] += 1
            stats["deleted"] += 1
            continue
        labels[region & (labels == 0)] = labels.max() + 1
        stats["kept"] += 1
    return labels, stats


def centre_crop(a: np.ndarray, side: int) -> np.ndarray:
    """The centre ``side`` x ``side`` crop of ``a`` (all of it along an axis shorter than ``side``; 0 = all)."""
    if not side:
        return a
    h, w = a.shape[:2]
    y0, x0 = max((h - side) // 2, 0), max((w - side) // 2, 0)
    return a[y0:y0 + side, x0:x0 + side]


# ------------------------------------------------------------------------------------------------ the cycle
def _table(out: str) -> list:
    path = os.path.join(out, TABLE_JSON)
    return atomic.read_json(path, "cycle table") if os.path.isfile(path) else []


def _write_table(out: str, rows: list) -> None:
    atomic.write_json(os.path.join(out, TABLE_JSON), rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic.write_text(os.path.join(out, TABLE_CSV), buf.getvalue())


def _cycle_dir(out: str, c: int) -> str:
    return os.path.join(out, f"cycle_{c:02d}")


def _model_uri(run_dir: str) -> str:
    """The model a finished run hands on: checkpoints/best.keras when the run selected one, else the run folder."""
    best = os.path.join(run_dir, "checkpoints", "best.keras")
    return best if os.path.isfile(best) else run_dir


def pool_samples(pool_data: str, pool_split: str, ids) -> list:
    """The Samples ``ids`` of split ``pool_split`` of the built records folder ``pool_data``, in that order; a
    one-line DataError names the first id missing."""
    from zoo.data import records
    from zoo.data.build import select

    paths, keep = select(pool_data, pool_split)
    want = set(ids)
    found = {s.image_id: s for s in records.read_samples(paths)
             if s.image_id in want and (keep is None or s.image_id in keep)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise DataError(pool_data, f"image id {missing[0]!r} (batches) is not in split {pool_split!r}")
    return [found[i] for i in ids]


def annotate_batch(config: CycleConfig, ids, auto, segmenter, records_dir: str, progress: bool = False) -> dict:
    """Annotate the images ``ids`` (proposals of ``auto``, a zoo.inference.LoadedModel; corrections of
    ``segmenter``) and write them into ``records_dir`` (split ``train``) -> per-image stats and totals
    (:func:`annotate_pool` with the config's pool and annotation settings)."""
    return annotate_pool(config.pool_data, config.pool_split, ids, auto, segmenter, records_dir, crop=config.crop,
                         clicks_per_image=config.clicks_per_image, clicks_per_nucleus=config.clicks_per_nucleus,
                         accept_iou=config.accept_iou, fbrs=config.fbrs, progress=progress)


def annotate_pool(pool_data: str, pool_split: str, ids, auto, segmenter, records_dir: str, *, crop: int,
                  clicks_per_image: int, clicks_per_nucleus: int = 3, accept_iou: float = 0.85, fbrs: bool = False,
                  progress: bool = False) -> dict:
    """One cycle's annotation (steps 1-3 of the module doc; ``histozoo cycle`` and the TFX step HistoAnnotate):
    the centre ``crop`` of each image ``ids`` of the pool (:func:`pool_samples`), the proposals of ``auto`` (a
    zoo.inference.LoadedModel) corrected by :func:`annotate_image` with ``segmenter`` (zoo.interactive) at its own
    µm/px, written as records of the one schema into ``records_dir`` (split ``train``) -> ``{"images": per-image
    stats, "clicks": total}``."""
    from zoo.data.build import DatasetWriter, progress_bar
    from zoo.data.sample import Sample
    from zoo.inference import MPP_TOLERANCE, predict
    from zoo.inference.core import resize
    from zoo.postprocess.instances import relabel_sequential

    per_image = []
    with DatasetWriter(records_dir) as w:
        for s in progress_bar(pool_samples(pool_data, pool_split, ids), "annotate", progress):
            if s.instances is None:
                raise DataError(pool_data, f"{s.image_id}: no instance map to place simulated clicks on")
            image, gt = centre_crop(s.image, crop), centre_crop(s.instances, crop)
            image = np.ascontiguousarray(image)
            proposal = predict(auto.model, auto.spec, image, mpp=s.mpp).instances
            # the interactive model works at its own µm/px: annotate there (the inference contract's 2 % rule), and
            # bring the labels back to the image's own pixels
            f = s.mpp / segmenter.mpp if s.mpp and segmenter.mpp else 1.0
            size = image.shape[:2]
            if abs(f - 1.0) > MPP_TOLERANCE:
                at = (max(1, int(round(size[0] * f))), max(1, int(round(size[1] * f))))
                image_s = np.clip(np.round(resize(image, at, 1)), 0, 255).astype(np.uint8)
                gt_s, proposal_s = resize(gt, at, 0), resize(proposal, at, 0)
            else:
                image_s, gt_s, proposal_s = image, gt, proposal

            def segment(clicks, prev, image=image_s):
                return segmenter.segment(image, clicks, prev_mask=prev, fbrs=fbrs)

            labels, stats = annotate_image(image_s, gt_s, proposal_s, segment, budget=clicks_per_image,
                                           per_nucleus=clicks_per_nucleus, accept_iou=accept_iou)
            if labels.shape != size:
                labels = relabel_sequential(resize(labels, size, 0).astype(np.int32))
            # a new Sample: the image's pixels and provenance, the model-made labels, nothing else of the record
            w.add(Sample(image=image, image_id=s.image_id, dataset="annotation_cycle", source_id=s.source_id,
                         split="train", instances=labels.astype(np.uint16), site=s.site, organ=s.organ, mpp=s.mpp))
            per_image.append({"image_id": s.image_id, **stats, "instances": int(labels.max())})
        w.commit(dataset="annotation_cycle", root=os.path.abspath(pool_data),
                 options={"crop": crop, "clicks_per_image": clicks_per_image})
    return {"images": per_image, "clicks": sum(r["clicks"] for r in per_image)}


def base_experiment(config: CycleConfig):
    """The automatic model's experiment config as ``train_config`` gives it (cycle 1's recipe)."""
    from zoo.training import ExperimentConfig

    return ExperimentConfig.coerce(config.train_config)


def cycle_experiment(config: CycleConfig, c: int, init: str):
    """Cycle ``c``'s retraining: ``train_config`` + ``train_overrides``, named ``<name>-cycle<c>``, starting from the
    weights ``init``, on the synthetic records (``synthetic_data`` / ``synthetic_split``, no fold)."""
    from zoo.training import ExperimentConfig

    base = base_experiment(config)
    d = {**base.to_dict(), **config.train_overrides, "name": f"{base.name}-cycle{c}", "init_weights": init,
         "data_dir": config.synthetic_data, "train_split": config.synthetic_split, "fold": None}
    return ExperimentConfig.from_dict(d)


def run_cycles(config: CycleConfig, out: str, cycles: Optional[int] = None, progress: bool = True,
               verbose: int = 0) -> list:
    """Run (or resume) cycles 1..``cycles`` (default all) into ``out``; returns the table's rows (module doc).
    ``progress``: tqdm bars over cycles, annotated images and evaluated images; ``verbose``: the training core's."""
    from zoo import interactive
    from zoo.data import records
    from zoo.evaluation import evaluate
    from zoo.training import train
    from zoo.training.tracking import load

    n = config.cycles if cycles is None else cycles
    if not 1 <= n <= config.cycles:
        raise ConfigError(f"--cycles {n}: the config has cycles 1..{config.cycles} (one per batch, plus cycle 1)")
    os.makedirs(out, exist_ok=True)
    copy = os.path.join(out, CONFIG_COPY)
    if os.path.isfile(copy) and atomic.read_json(copy, "cycle config copy") != config.to_dict():
        raise ConfigError(f"{out}: made with another cycle config ({copy}); use a new --out")
    atomic.write_json(copy, config.to_dict())
    rows = _table(out)
    done = {r["cycle"] for r in rows}
    segmenter = None
    bar = range(1, n + 1)
    if progress:
        from tqdm import tqdm

        bar = tqdm(bar, desc="cycle", unit="cycle", dynamic_ncols=True)
    for c in bar:
        if c in done:
            continue
        cdir = _cycle_dir(out, c)
        annotated = sum(len(b) for b in config.batches[:c - 1])
        if c == 1:
            run_dir, clicks = config.initial_model, 0
            model = load(config.initial_model)
        else:
            prev = config.initial_model if c == 2 else _model_uri(os.path.join(_cycle_dir(out, c - 1), "run"))
            rec_dir, log = os.path.join(cdir, "records"), os.path.join(cdir, "annotation.json")
            if not (os.path.isfile(os.path.join(rec_dir, "summary.json")) and os.path.isfile(log)):
                segmenter = segmenter or interactive.load(config.interactive_model)
                ann = annotate_batch(config, config.batches[c - 2], load(prev), segmenter, rec_dir, progress)
                atomic.write_json(log, ann)
            clicks = atomic.read_json(log, "annotation log")["clicks"]
            shards = records.list_shards(config.synthetic_data, config.synthetic_split)
            for k in range(2, c + 1):
                shards += records.list_shards(os.path.join(_cycle_dir(out, k), "records"), "train")
            run_dir = os.path.join(cdir, "run")
            train(cycle_experiment(config, c, prev), train_records=shards, output_dir=run_dir, resume=True,
                  verbose=verbose)
            model = load(_model_uri(run_dir))
        ev = evaluate(model.model, config.eval_data, split=config.eval_split, spec=model.spec, hausdorff=False,
                      progress=progress)
        os.makedirs(cdir, exist_ok=True)
        atomic.write_json(os.path.join(cdir, "evaluation.json"), ev)
        m = ev["mean"]
        rows.append({"cycle": c, "images_annotated": annotated, "clicks": int(clicks),
                     "clicks_total": int(clicks) + sum(r["clicks"] for r in rows),
                     "clicks_per_image": config.clicks_per_image, "dice": m["pixel_dice"], "aji": m["aji"],
                     "aji_pooled": m.get("aji_pooled"), "pq": m["pq"], "eval_images": ev["images"],
                     "run_dir": run_dir})
        _write_table(out, rows)
    return rows
