"""Downstream comparison of stain normalisations (issue 21; Bhatia ch. 6 Table 6.1, Yuan & Suh sec. 4.1.1): the same
segmentation recipe trained and scored once per normalisation x seed on an organ-disjoint MoNuSeg split.

    python scripts/stain_downstream.py --normalizations none,reinhard,macenko,vahadane,colorization,colornormnet \\
        --seeds 0,1,2 --budget-steps 3200 --out runs/stain-downstream \\
        --colorization-model runs/stain-colorization-monuseg --colornormnet-model runs/stain-colornormnet-target

Protocol:
1. Data: fold 1 of a MoNuSeg build with ``holdout_organs`` (zoo.data.readers.monuseg.HOLDOUT_ORGANS: Bladder, Brain,
   Colon, Stomach held out; 33 train / 11 test images, organ- and site-disjoint). ``--data`` (default
   build/monuseg-organ) is built from ``--root`` when it holds no build yet.
2. Each normalizer is fitted to ONE target image of the training organs (``--target``, default TCGA-A7-A13E, breast,
   the target of scripts/stain_eval.py) read from the records, and saved as JSON in ``<out>/normalizers``. The neural
   ones need their trained network (``--colorization-model`` / ``--colornormnet-model``: a .keras file or run folder);
   without it the normalisation is skipped with a one-line note.
3. Each (normalisation, seed) trains ``--config`` (default configs/stain/downstream.yaml) through zoo.training.train
   with ``input.stain`` = the normalizer's JSON (recorded in the model's InferenceSpec), seed = the seed, and
   epochs x steps_per_epoch = ``--budget-steps`` (steps_per_epoch = the config's, or N when N is smaller; epochs =
   ceil(N / steps_per_epoch)), into ``<out>/runs/<normalisation>-s<seed>``.
4. The saved model (zoo.training.tracking.load: model + spec, so the spec's normalizer is applied) is scored on the
   held-out organs by zoo.evaluation.evaluate (``--max-test-images``: only the first K; 0 = all) and the result
   written to ``<run>/downstream.json``. A run with that file is finished and skipped; an interrupted one resumes from
   its last checkpoint.
5. ``<out>/table.json`` and ``<out>/table.md``: Dice (pixel Dice, HoVer-Net's DICE), AJI, PQ (per-image means) and
   pooled AJI, mean and sample std over the finished seeds, beside Bhatia's Table 6.1.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
DATA = os.environ.get("HISTOZOO_DATA", os.path.join(REPO, "..", "shared", "data"))
TARGET = "TCGA-A7-A13E-01Z-00-DX1"
NORMALIZATIONS = ("none", "reinhard", "macenko", "vahadane", "colorization", "colornormnet")
NEURAL = ("colorization", "colornormnet")
FOLD = 1
RESULT = "downstream.json"
#: Bhatia Table 6.1 (HoVer-Net on MoNuSeg, their 20 / 5 / 5 split, 5 runs): (Dice, AJI, PQ)
PAPER = {"none": (0.78, 0.52, 0.55), "reinhard": (0.81, 0.53, 0.54), "macenko": (0.66, 0.39, 0.46),
         "vahadane": (0.74, 0.40, 0.49), "colornormnet": (0.80, 0.53, 0.56)}
#: table columns: (heading, evaluation key)
COLUMNS = (("Dice", "pixel_dice"), ("AJI", "aji"), ("PQ", "pq"), ("AJI pooled", "aji_pooled"))
LABELS = {"none": "none", "reinhard": "Reinhard", "macenko": "Macenko", "vahadane": "Vahadane",
          "colorization": "colorization (Yuan & Suh)", "colornormnet": "ColorNormNet"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--normalizations", default=",".join(NORMALIZATIONS),
                   help=f"comma-separated, from {', '.join(NORMALIZATIONS)}")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument("--budget-steps", type=int, default=3200, help="optimizer steps per run (default 3200: 80 x 40)")
    p.add_argument("--out", default="runs/stain-downstream")
    p.add_argument("--config", default=os.path.join(REPO, "configs", "stain", "downstream.yaml"))
    p.add_argument("--data", default="build/monuseg-organ", help="MoNuSeg records with the organ-holdout fold")
    p.add_argument("--root", default=os.path.join(DATA, "monuseg2018"), help="MoNuSeg folder (to build --data)")
    p.add_argument("--target", default=TARGET, help="image id of the normalizers' target (a training-organ image)")
    p.add_argument("--colorization-model", default="", metavar="URI", help="trained colorization network")
    p.add_argument("--colornormnet-model", default="", metavar="URI", help="trained ColorNormNet")
    p.add_argument("--max-test-images", type=int, default=0, help="score only the first K held-out images (0 = all)")
    p.add_argument("--quiet", action="store_true", help="no Keras / evaluation progress (the run bar stays)")
    a = p.parse_args(argv)
    a.normalizations = [n.strip() for n in a.normalizations.split(",") if n.strip()]
    bad = [n for n in a.normalizations if n not in NORMALIZATIONS]
    if bad or not a.normalizations:
        p.error(f"--normalizations: unknown {bad[0]!r} (choose from {', '.join(NORMALIZATIONS)})" if bad
                else "--normalizations: none given")
    try:
        a.seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds: expected comma-separated integers, got {a.seeds!r}")
    if not a.seeds or min(a.seeds) < 0:
        p.error("--seeds: give at least one seed, each >= 0")
    if a.budget_steps < 1:
        p.error(f"--budget-steps: must be >= 1, got {a.budget_steps}")
    if a.max_test_images < 0:
        p.error(f"--max-test-images: must be >= 0, got {a.max_test_images}")
    return a


def ensure_data(data: str, root: str, quiet: bool = False) -> str:
    """``data`` as a MoNuSeg build with the organ-holdout fold; built from ``root`` when it holds no build."""
    from zoo.data.build import FOLDS, SUMMARY, build, select
    from zoo.data.readers.monuseg import HOLDOUT_ORGANS
    from zoo.errors import DataError

    if not os.path.isfile(os.path.join(data, SUMMARY)):
        print(f"building {data} from {root} (holdout_organs={list(HOLDOUT_ORGANS)})")
        build("monuseg2018", root, data, progress=not quiet, holdout_organs=list(HOLDOUT_ORGANS))
    from zoo.atomic import read_json

    folds = os.path.join(data, FOLDS)
    if not os.path.isfile(folds) or read_json(folds, "folds file").get("scheme") != "organ-holdout":
        raise DataError(data, "not a MoNuSeg build with the organ-holdout fold (build it with --option "
                        "'holdout_organs=[...]', or give a new --data folder)")
    select(data, "train", FOLD)  # fold 1 exists
    return data


def target_image(data: str, image_id: str) -> np.ndarray:
    """The target image, read from the records; it must be on the training side of the fold."""
    from zoo.data import records
    from zoo.data.build import select
    from zoo.errors import DataError

    paths, train_ids = select(data, "train", FOLD)
    if image_id not in train_ids:
        raise DataError(data, f"target {image_id} is not a training-organ image of fold {FOLD}")
    for s in records.read_samples(paths):
        if s.image_id == image_id:
            return s.image
    raise DataError(data, f"target {image_id} not found in the records")


def fit_normalizers(args, target: np.ndarray) -> dict[str, str]:
    """{normalisation: saved JSON path ("" for none)}; neural ones without a model are left out with a note. A JSON
    already in ``<out>/normalizers`` is reused (so every seed and a resumed call use the same fit)."""
    from zoo.stain.base import get_normalizer, load

    import zoo.stain  # noqa: F401  (registers every method, the neural ones included)

    out = os.path.join(args.out, "normalizers")
    os.makedirs(out, exist_ok=True)
    paths = {}
    for name in args.normalizations:
        if name == "none":
            paths[name] = ""
            continue
        path = os.path.join(out, f"{name}.json")
        if os.path.isfile(path):
            if load(path, jit=False).name != name:
                from zoo.errors import DataError

                raise DataError(path, f"holds another method's parameters, not {name}")
            paths[name] = os.path.abspath(path)
            continue
        config = {}
        if name in NEURAL:
            model = getattr(args, f"{name}_model")
            if not model:
                print(f"note: {name} skipped (no --{name}-model given: train it first, see docs/results/stain.md)")
                continue
            config["model"] = model
        get_normalizer(name, **config).fit(target).save(path)
        paths[name] = os.path.abspath(path)
    return paths


def schedule(config, budget_steps: int) -> tuple[int, int]:
    """(epochs, steps_per_epoch) for a budget of N steps: the config's steps per epoch (N when N is smaller),
    ceil(N / steps_per_epoch) epochs."""
    spe = min(config.steps_per_epoch, budget_steps)
    return math.ceil(budget_steps / spe), spe


def run_one(args, base, data: str, name: str, stain: str, seed: int) -> dict:
    """Train (or resume) and score one (normalisation, seed); return its result (also written to downstream.json)."""
    import keras

    import zoo.training
    from zoo.atomic import write_json
    from zoo.evaluation import evaluate
    from zoo.training.tracking import load

    run_dir = os.path.join(args.out, "runs", f"{name}-s{seed}")
    epochs, spe = schedule(base, args.budget_steps)
    config = base.replace(name=f"stain-downstream-{name}-s{seed}", seed=seed, epochs=epochs, steps_per_epoch=spe,
                          data_dir=os.path.abspath(data), fold=FOLD, input={**base.input, "stain": stain})
    t0 = time.time()
    keras.backend.clear_session()
    zoo.training.train(config, output_dir=run_dir, resume=True, tracking=False, verbose=0 if args.quiet else 1)
    train_s = time.time() - t0
    t1 = time.time()
    loaded = load(run_dir)  # the saved model and its InferenceSpec (which carries the normalizer)
    res = evaluate(loaded.model, os.path.abspath(data), split="test", fold=FOLD, spec=loaded.spec,
                   max_images=args.max_test_images, progress=not args.quiet, hausdorff=False)
    result = {"normalization": name, "seed": seed, "steps": epochs * spe, "epochs": epochs, "steps_per_epoch": spe,
              "stain": stain, "spec_stain": (loaded.spec.stain or {}).get("method", "none"),
              "train_wall_s": round(train_s, 1), "eval_wall_s": round(time.time() - t1, 1),
              "images": res["images"], "mean": res["mean"], "per_image": res["per_image"]}
    write_json(os.path.join(run_dir, RESULT), result)
    return result


def finished(args, base, name: str, seed: int) -> dict | None:
    """The result of a finished run, or None; a finished run of another budget is an error (use another --out)."""
    from zoo.atomic import read_json
    from zoo.errors import ConfigError

    path = os.path.join(args.out, "runs", f"{name}-s{seed}", RESULT)
    if not os.path.isfile(path):
        return None
    res = read_json(path, "downstream result")
    epochs, spe = schedule(base, args.budget_steps)
    if res.get("steps") != epochs * spe:
        raise ConfigError(f"{path}: finished with {res.get('steps')} steps, not {epochs * spe} (--budget-steps "
                          f"{args.budget_steps}): give another --out")
    return res


def table(results: list[dict], args) -> dict:
    """Per normalisation: mean and sample std (ddof 1; 0 with one seed) over seeds of each column."""
    rows = []
    for name in args.normalizations:
        rs = [r for r in results if r["normalization"] == name]
        row = {"normalization": name, "seeds": [r["seed"] for r in rs], "paper": PAPER.get(name)}
        for _, key in COLUMNS:
            v = np.array([r["mean"][key] for r in rs if key in r["mean"]], float)
            row[key] = ({"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
                        if len(v) else None)
        if rs:
            row.update(steps=rs[0]["steps"], images=rs[0]["images"],
                       train_wall_s=float(np.mean([r["train_wall_s"] for r in rs])))
        rows.append(row)
    return {"protocol": "organ-disjoint MoNuSeg (fold 1 of holdout_organs), one target image", "target": args.target,
            "budget_steps": args.budget_steps, "config": os.path.relpath(args.config, REPO), "rows": rows}


def markdown(tab: dict) -> str:
    head = "| normalisation | seeds | " + " | ".join(c for c, _ in COLUMNS) + " | paper Dice / AJI / PQ |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for r in tab["rows"]:
        cells = [f"{r[k]['mean']:.3f} ± {r[k]['std']:.3f}" if r.get(k) else "" for _, k in COLUMNS]
        paper = " / ".join(f"{v:.2f}".lstrip("0") for v in r["paper"]) if r["paper"] else "(not reported)"
        seeds = ",".join(map(str, r["seeds"])) or "not run"
        lines.append(f"| {LABELS[r['normalization']]} | {seeds} | " + " | ".join(cells) + f" | {paper} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    from tqdm import tqdm

    from zoo.atomic import write_json, write_text
    from zoo.training import ExperimentConfig

    base = ExperimentConfig.load(args.config)
    data = ensure_data(args.data, args.root, args.quiet)
    os.makedirs(args.out, exist_ok=True)
    done = {(n, s): finished(args, base, n, s) for n in args.normalizations for s in args.seeds}
    todo = [k for k, v in done.items() if v is None]
    stains = fit_normalizers(args, target_image(data, args.target)) if todo else {
        n: "" for n in args.normalizations}
    results = [v for v in done.values() if v is not None]
    skipped = len(results)
    bar = tqdm([k for k in todo if k[0] in stains], desc="stain downstream", unit="run", dynamic_ncols=True)
    for name, seed in bar:
        bar.set_postfix_str(f"{name} seed {seed}")
        results.append(run_one(args, base, data, name, stains[name], seed))
    print(f"{len(results) - skipped} run(s) trained, {skipped} finished run(s) skipped")
    tab = table(results, args)
    write_json(os.path.join(args.out, "table.json"), tab)
    write_text(os.path.join(args.out, "table.md"), markdown(tab))
    print(markdown(tab), end="")
    return tab


if __name__ == "__main__":
    from zoo.errors import ZooError

    try:
        main()
    except ZooError as e:
        sys.exit(f"stain_downstream: {e}")
