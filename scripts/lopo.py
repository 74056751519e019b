"""Leave-one-patient-out experiments (Naylor et al.) through the one training core, and the results table.

    python scripts/lopo.py run configs/tnbc/pangnet.yaml configs/tnbc/unet.yaml --folds 9,10,11 \
        --set epochs=6 --set steps_per_epoch=50 --out runs/lopo
    python scripts/lopo.py run --ensemble fcn8s,deconvnet --folds 9,10,11 --out runs/lopo
    python scripts/lopo.py table --out runs/lopo --md docs/results/tnbc_lopo.md

``run`` trains every config on every fold (``runs/lopo/<model>/fold<k>``; a finished fold is skipped and an
interrupted one resumes from its last checkpoint), ``--ensemble a,b`` averages the posteriors of already trained
members fold by fold (Naylor et al.: FCN + DeconvNet), ``table`` averages each model's per-fold means over the
folds and writes a Markdown table beside Naylor et al.'s Table 1.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from histozoo.cli import parse_key_values

# Naylor et al. (ISBI 2017) Table 1, averaged over left-out patients (33 images of their TNBC release).
PAPER = {
    "pangnet": {"accuracy": 0.936, "iu": 0.759, "recall": 0.744, "precision": 0.741, "f1": 0.742, "performance": 0.853},
    "deconvnet": {"accuracy": 0.968, "iu": 0.856, "recall": 0.856, "precision": 0.858, "f1": 0.856, "performance": 0.918},
    "fcn8s": {"accuracy": 0.958, "iu": 0.857, "recall": 0.855, "precision": 0.878, "f1": 0.866, "performance": 0.916},
    "ensemble": {"accuracy": 0.968, "iu": 0.861, "recall": 0.876, "precision": 0.851, "f1": 0.863, "performance": 0.928},
}
# (column, evaluation key). Naylor et al.'s "IU" is the mean IU over background and nucleus (FCN's mean IU; see
# zoo.metrics.pixel), so it sits beside our pixel_mean_iou; the nucleus-only Jaccard has no column in their table.
COLUMNS = [("accuracy", "pixel_accuracy"), ("iu", "pixel_mean_iou"), ("recall", "pixel_recall"),
           ("precision", "pixel_precision"), ("f1", "pixel_dice"), ("performance", "pixel_performance"),
           ("nucleus jaccard", "pixel_jaccard"), ("aji", "aji"), ("pq", "pq"), ("dq", "dq"), ("sq", "sq")]


def _fold_dir(out, model, fold):
    return os.path.join(out, model, f"fold{fold}")


def run(args) -> None:
    from zoo.training import ExperimentConfig, train

    folds = [int(f) for f in args.folds.split(",")]
    sets, msets, isets = parse_key_values(args.set), parse_key_values(args.model_set), parse_key_values(args.input_set)
    for path in args.configs:
        base = ExperimentConfig.load(path)
        d = base.to_dict()
        d.update(sets)
        d["model_config"] = {**d["model_config"], **msets}
        d["input"] = {**d["input"], **isets}
        if args.data:
            d["data_dir"] = args.data
        for fold in folds:
            out = _fold_dir(args.out, base.model, fold)
            if os.path.isfile(os.path.join(out, "evaluation.json")):
                print(f"{base.model} fold {fold}: done, skipping")
                continue
            cfg = ExperimentConfig.from_dict({**d, "fold": fold, "name": f"{base.name}-fold{fold}"})
            print(f"=== {base.model} fold {fold} -> {out}", flush=True)
            train(cfg, output_dir=out, resume=True, verbose=2)
    if args.ensemble:
        ensemble(args, folds)


def ensemble(args, folds) -> None:
    from zoo.atomic import write_json
    from zoo.evaluation import evaluate
    from zoo.models.naylor import Ensemble
    from zoo.training.tracking import load

    names = args.ensemble.split(",")
    for fold in folds:
        out = _fold_dir(args.out, "ensemble", fold)
        members = [load(_fold_dir(args.out, n, fold)) for n in names]  # the one loader: model + its spec
        data = args.data or _config_of(args.out, names[0], fold)["data_dir"]
        # the members' probabilities are averaged; the first member's spec (resolution, post-processing) applies
        res = evaluate(Ensemble.from_members([m.model for m in members]), data, split="test", fold=fold,
                       spec=members[0].spec, progress=True)
        os.makedirs(out, exist_ok=True)
        write_json(os.path.join(out, "evaluation.json"), res)
        print(f"ensemble({','.join(names)}) fold {fold}: aji {res['mean']['aji']:.4f}")


def _config_of(out, model, fold):
    import yaml

    return yaml.safe_load(open(os.path.join(_fold_dir(out, model, fold), "config.yaml")))


def _mean_iou_of_image(accuracy: float, jaccard: float) -> float:
    """Mean IU of one image from its pixel accuracy A and nucleus Jaccard J (exact, per image): with fractions of
    the N pixels, TP + FP + FN = TP / J and TN = A - TP give TP = (1 - A) J / (1 - J); background IU =
    TN / (TN + FP + FN) = (A - TP) / (1 - TP). J = 1 means no error at all: mean IU 1."""
    if jaccard >= 1.0:
        return 1.0
    tp = (1.0 - accuracy) * jaccard / (1.0 - jaccard)
    bg = (accuracy - tp) / (1.0 - tp) if tp < 1.0 else 1.0
    return 0.5 * (jaccard + bg)


def _with_mean_iou(result: dict) -> dict:
    """An evaluation's means, with ``pixel_mean_iou`` derived from its per-image accuracy and Jaccard when it was
    written before that metric existed (the same per-image mean as the evaluation's own)."""
    mean = dict(result["mean"])
    rows = result.get("per_image") or []
    if "pixel_mean_iou" not in mean and rows and all("pixel_accuracy" in r and "pixel_jaccard" in r for r in rows):
        mean["pixel_mean_iou"] = sum(_mean_iou_of_image(r["pixel_accuracy"], r["pixel_jaccard"])
                                     for r in rows) / len(rows)
    return mean


def table(args) -> None:
    rows = {}
    only = {int(k) for k in args.folds.split(",")} if args.folds else set()
    for model in sorted(os.listdir(args.out)):
        folds = {}
        mdir = os.path.join(args.out, model)
        for f in sorted(os.listdir(mdir)):
            p = os.path.join(mdir, f, "evaluation.json")
            if os.path.isfile(p) and (not only or int(f[4:]) in only):
                folds[int(f[4:])] = _with_mean_iou(json.load(open(p)))
        if folds:
            rows[model] = folds
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = ["| model | folds (left-out patients) | " + " | ".join(c for c, _ in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for model, folds in rows.items():
        # a metric missing from an evaluation.json (and not derivable) shows "n/a": re-run that evaluation
        mean = {k: sum(f[k] for f in folds.values()) / len(folds) for _, k in COLUMNS
                if all(k in f for f in folds.values())}
        lines.append(f"| **{model}** (ours) | {','.join(str(k) for k in sorted(folds))} | "
                     + " | ".join(f"{mean[k]:.3f}" if k in mean else "n/a" for _, k in COLUMNS) + " |")
        if model in PAPER:
            lines.append(f"| {model} (Naylor et al. Table 1) | all | "
                         + " | ".join(f"{PAPER[model][c]:.3f}" if c in PAPER[model] else "–" for c, _ in COLUMNS) + " |")
    text = "\n".join(lines)
    print(text)
    print(f"(commit {commit})")
    if args.md:
        from zoo.atomic import write_text

        write_text(args.md + ".table", text + "\n")
        print(f"wrote {args.md}.table (paste it into {args.md})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("configs", nargs="*")
    r.add_argument("--folds", default="1,2,3,4,5,6,7,8,9,10,11")
    r.add_argument("--out", default="runs/lopo")
    r.add_argument("--data", default="")
    r.add_argument("--set", action="append", help="top-level config override KEY=JSON")
    r.add_argument("--model-set", action="append", help="model_config override KEY=JSON")
    r.add_argument("--input-set", action="append", help="input config override KEY=JSON")
    r.add_argument("--ensemble", default="", help="comma-separated trained member models to average")
    r.set_defaults(func=run)
    t = sub.add_parser("table")
    t.add_argument("--out", default="runs/lopo")
    t.add_argument("--md", default="")
    t.add_argument("--folds", default="", help="only these folds (e.g. 9 to compare every model on one patient)")
    t.set_defaults(func=table)
    args = p.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
