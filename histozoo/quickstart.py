"""``histozoo quickstart``: the README's main job, end to end on the sample that ships in the package.

Every step is the real code path a user's own work takes: records from the packaged MoNuSeg sample (the folder
reader, ``zoo.data.build``) -> fine-tune the shipped nuclei model (``init_weights: pretrained:...``) through the one
training core, with MLflow tracking in the embedded sqlite store and registration as ``histozoo-quickstart`` ->
score it on the sample's held-out tiles beside the classical baseline (Hu et al.'s pipeline with an Otsu threshold,
``zoo.evaluation.evaluate_classical``) -> export a versioned SavedModel -> serve it with the local PredictionService
on 127.0.0.1 -> predict a held-out tile over gRPC (its instances checked equal to the in-process prediction) ->
overlay PNG, QuPath GeoJSON and per-nucleus CSV -> stop the server. ``--tfx`` runs the records -> train -> evaluate
-> push part through the TFX pipeline instead (where TFX is installed). Nothing needs ../shared or the network.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import numpy as np

SAMPLE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "zoo", "sample_data", "monuseg")
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "quickstart.yaml")
KEYS = ("pixel_dice", "aji", "pq", "det_f1")
BASELINE = "hu_otsu"
STEPS = 7


class _Progress:
    def __init__(self, enabled: bool, total: int = STEPS):
        self.enabled, self.t0, self.n, self.total = enabled, time.perf_counter(), 0, total

    def step(self, what: str) -> None:
        self.n += 1
        if self.enabled:
            print(f"[{self.n}/{self.total}] {what}  (t = {time.perf_counter() - self.t0:.0f} s)", flush=True)


def sample_dir() -> str:
    """The packaged sample (zoo/sample_data/monuseg; LICENSE.md beside it)."""
    if not os.path.isfile(os.path.join(SAMPLE_DIR, "sources.csv")):
        from zoo.errors import DataError

        raise DataError(SAMPLE_DIR, "the packaged sample is missing (reinstall histozoo)")
    return SAMPLE_DIR


def held_out_tiles(sample: str) -> list[str]:
    """The sample's held-out (test split) image files, from its sources.csv."""
    import csv

    with open(os.path.join(sample, "sources.csv")) as fh:
        names = [r["image"] for r in csv.DictReader(fh) if r["split"] == "test"]
    return [os.path.join(sample, "images", n + ".png") for n in sorted(names)]


def run(out: str = "runs/quickstart", steps: int = 120, model: str = "", progress: bool = True,
        tfx: bool = False) -> dict:
    """Run the quickstart into ``out`` and return its summary (also written to ``out/quickstart.json``).
    steps: fine-tuning steps (rounded up to whole epochs of 10); model: the shipped model to start from
    (default zoo.pretrained.DEFAULT)."""
    from zoo import pretrained
    from zoo.atomic import check_output_dir, write_json
    from zoo.errors import ConfigError

    if steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}")
    check_output_dir(out)
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    p = _Progress(progress, 1 if tfx else STEPS)
    sample = sample_dir()
    name = model or pretrained.DEFAULT
    base = pretrained.load(name)  # sha256-checked; its spec carries the post-processing tuned on training images

    from zoo.training import ExperimentConfig

    spe = 10
    cfg = ExperimentConfig.load(CONFIG).replace(
        epochs=max(1, -(-steps // spe)), steps_per_epoch=spe,
        init_weights=pretrained.PREFIX + name, postprocess=base.spec.postprocess.to_dict())
    if tfx:
        return _run_tfx(cfg, out, p, sample)

    p.step(f"records from the packaged sample ({sample})")
    from zoo.data.build import build

    records = os.path.join(out, "records")
    if os.path.isdir(records):
        shutil.rmtree(records)
    build("folder", sample, records, progress=progress, sources="sources.csv")
    cfg = cfg.replace(data_dir=records)

    p.step(f"fine-tune {pretrained.PREFIX}{name} for {cfg.epochs * spe} steps (the one training core; MLflow run, "
           f"registered as {cfg.tracking['register_as']!r})")
    from zoo.training import train

    run_dir = os.path.join(out, "run")
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)
    t_train = time.perf_counter()
    result = train(cfg, output_dir=run_dir, verbose=2 if progress else 0)
    t_train = time.perf_counter() - t_train

    p.step(f"score the {len(held_out_tiles(sample))} held-out tiles beside the classical baseline ({BASELINE})")
    from zoo.evaluation import evaluate, evaluate_classical

    from zoo.atomic import read_json

    ours = read_json(os.path.join(run_dir, "evaluation.json"))  # the core scored the val split (= held-out tiles)
    shipped = evaluate(base.model, records, split="test", spec=base.spec)
    baseline = evaluate_classical(BASELINE, records, split="test")
    write_json(os.path.join(out, "evaluation.json"), {"fine_tuned": ours, "shipped": shipped, "baseline": baseline},
               indent=2)

    p.step("export a versioned SavedModel (with its inference spec)")
    from serving.export import export

    export_base = os.path.join(out, "export")
    if os.path.isdir(export_base):
        shutil.rmtree(export_base)
    version_dir = export(result.model, export_base, version=1, spec=result.spec)

    p.step("serve it with the local PredictionService (gRPC, 127.0.0.1) and predict a held-out tile")
    from serving.client import PredictClient, predict_files
    from serving.config import ModelEntry
    from serving.local_server import LocalModelServer

    tile = held_out_tiles(sample)[0]
    pred_dir = os.path.join(out, "predictions")
    with LocalModelServer([ModelEntry("nuclei", export_base)], host="127.0.0.1", port=0) as server:
        address = f"127.0.0.1:{server.port}"
        client = PredictClient(address, timeout=120.0)
        served = predict_files(client, "nuclei", [tile], pred_dir, progress=False)
    p.step("server stopped; check the served instances equal the in-process ones")
    from zoo.data.imageio import read_label, read_rgb
    from zoo.inference import predict

    local = predict(result.model, result.spec, read_rgb(tile)).instances
    stem = os.path.splitext(os.path.basename(tile))[0]
    served_map = read_label(os.path.join(pred_dir, stem + "_instances.png"))
    same = bool(np.array_equal(served_map.astype(np.int64), local.astype(np.int64)))
    if not same:
        raise ConfigError(f"the served instance map of {tile} differs from the in-process one "
                          f"({int(np.sum(served_map != local))} pixels): please report this")

    from zoo.training.tracking import tracking_uri

    summary = {
        "model": f"{pretrained.PREFIX}{name}", "steps": cfg.epochs * spe, "train_seconds": round(t_train, 1),
        "seconds": round(time.perf_counter() - p.t0, 1), "held_out_images": ours["images"],
        "fine_tuned": {k: ours["mean"][k] for k in KEYS}, "shipped": {k: shipped["mean"][k] for k in KEYS},
        "baseline": {k: baseline["mean"][k] for k in KEYS}, "baseline_method": BASELINE,
        "beats_baseline": {k: ours["mean"][k] >= baseline["mean"][k] for k in ("aji", "pq")},
        "mlflow": {"tracking_uri": tracking_uri(), "run_id": result.run_id,
                   "registered_model": cfg.tracking["register_as"], "version": result.registered_version},
        "paths": {"records": records, "run": run_dir, "export": version_dir, "predictions": pred_dir,
                  "overlay": os.path.join(pred_dir, stem + "_overlay.png"),
                  "geojson": os.path.join(pred_dir, stem + ".geojson"),
                  "csv": os.path.join(pred_dir, stem + "_nuclei.csv")},
        "served": {"address": address, "instances": int(served["total_instances"]), "equal_to_in_process": same},
    }
    write_json(os.path.join(out, "quickstart.json"), summary, indent=2)
    p.step("done")
    if progress:
        print(report(summary))
    return summary


def report(s: dict) -> str:
    """The summary as the terminal shows it."""
    lines = [f"\nheld-out sample tiles ({s['held_out_images']} MoNuSeg test crops, never trained on):",
             f"  {'':24s}" + "".join(f"{k:>11s}" for k in KEYS)]
    for label, key in ((f"fine-tuned ({s['steps']} steps)", "fine_tuned"), ("shipped model", "shipped"),
                       (f"classical ({s['baseline_method']})", "baseline")):
        lines.append(f"  {label:24s}" + "".join(f"{s[key][k]:11.3f}" for k in KEYS))
    ok = all(s["beats_baseline"].values())
    lines.append(f"  AJI and PQ at or above the classical baseline: {'yes' if ok else 'NO'}")
    m, pth = s["mlflow"], s["paths"]
    lines += [f"\nfinished in {s['seconds']:.0f} s (fine-tuning {s['train_seconds']:.0f} s)",
              f"  run:         {pth['run']}",
              f"  SavedModel:  {pth['export']}",
              f"  served:      {s['served']['instances']} nuclei over gRPC at {s['served']['address']} "
              f"(equal to in process: {s['served']['equal_to_in_process']})",
              f"  overlay:     {pth['overlay']}",
              f"  QuPath:      {pth['geojson']}  (File > Import objects)",
              f"  per nucleus: {pth['csv']}",
              f"  MLflow:      {m['registered_model']} v{m['version']}, run {m['run_id']}",
              f"               mlflow ui --backend-store-uri {m['tracking_uri']}",
              "  next: histozoo predict YOUR_TILES/ --out preds/   (the shipped model, in process)"]
    return "\n".join(lines)


def _run_tfx(cfg, out: str, p: _Progress, sample: str) -> dict:
    """The same flow through the TFX pipeline (ingest -> Trainer -> Evaluator -> Pusher), where TFX is installed."""
    from pipelines import require_tfx

    require_tfx()
    from pipelines.local_runner import format_outcome, run_local
    p.step("TFX pipeline: records -> Trainer (the one training core) -> Evaluator -> Pusher")
    cfg_path = os.path.join(out, "quickstart_tfx.yaml")
    cfg.replace(data_dir="").save(cfg_path)
    result = run_local(cfg_path, "folder", sample, name="quickstart", home=os.path.join(out, "tfx_root"),
                       reader_options={"sources": "sources.csv"}, quiet=True)
    print(format_outcome(result))
    return {"tfx": True, "home": os.path.join(out, "tfx_root"), "outcome": result.get("outcome")}


def main(args) -> int:
    summary = run(out=args.out, steps=args.steps, model=args.model, progress=not args.quiet, tfx=args.tfx)
    if not summary.get("tfx") and not all(summary["beats_baseline"].values()):
        print("histozoo quickstart: the fine-tuned model is below the classical baseline on the held-out tiles "
              "(see evaluation.json)", file=sys.stderr)
    return 0
