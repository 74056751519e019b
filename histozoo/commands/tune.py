"""``histozoo tune``: choose a model's post-processing on held-out (never test) images and record it in the model's
InferenceSpec (zoo.evaluation.tune), so evaluation, export and serving use it from then on."""

from __future__ import annotations

import os

from histozoo.commands import parse_key_values


def _cmd_tune(args) -> int:
    from zoo.atomic import write_json
    from zoo.errors import ConfigError
    from zoo.evaluation.tune import tune_postprocess
    from zoo.inference import SPEC_FILE
    from zoo.training.tracking import load

    loaded = load(args.model)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    grids = None
    if args.grid:
        grids = {loaded.spec.postprocess.method if not methods else methods[0]: {
            k: v if isinstance(v, list) else [v] for k, v in parse_key_values(args.grid, "--grid").items()}}
    res = tune_postprocess(loaded.model, loaded.spec, args.data, args.split, args.fold, metric=args.metric,
                           methods=methods, grids=grids, max_images=args.max_images, progress=True)
    m = res["metric"]
    rows = res["table"][: args.top]
    pps = [", ".join(f"{k}={v}" for k, v in row["postprocess"].items()) for row in rows]
    width = max(len("postprocess"), *(len(p) for p in pps))
    cols = [m] + [k for k in ("aji", "pq", "det_f1") if k != m]
    print(f"{'postprocess':{width}s} " + " ".join(f"{k:>8s}" for k in cols) + f" {'nuclei':>8s}")
    for pp, row in zip(pps, rows):
        print(f"{pp:{width}s} " + " ".join(f"{row[k]:8.4f}" for k in cols) + f" {row['instances']:8.1f}")
    best, before = res["table"][0], res["before"]
    print(f"best on {len(res['images'])} {args.split} images: {best['postprocess']} ({m} {best[m]:.4f}; the spec's own "
          f"{before['postprocess']}: {before[m]:.4f})")
    if args.write:
        spec_path = os.path.join(os.path.dirname(os.path.abspath(loaded.source)), SPEC_FILE)
        if not os.path.isfile(loaded.source):
            raise ConfigError(f"--write: {args.model} is not a local checkpoint; tune a run folder or .keras file")
        res["best"].save(spec_path)
        write_json(os.path.join(os.path.dirname(spec_path), "tuning.json"),
                   {k: (v.to_dict() if k == "best" else v) for k, v in res.items()})
        print(f"wrote {spec_path} (and tuning.json beside it)")
    return 0


def add(sub) -> None:
    p = sub.add_parser("tune", help="choose the post-processing on held-out images and record it in the model's "
                                    "spec")
    p.add_argument("model", help="a run folder or .keras file (with spec.json beside it), or an MLflow URI")
    p.add_argument("--data", required=True, help="a built data folder")
    p.add_argument("--split", required=True, help="a training or validation split (never test)")
    p.add_argument("--fold", type=int)
    p.add_argument("--metric", default="aji", help="higher-is-better metric to rank by (aji, pq, dq, det_f1, ...)")
    p.add_argument("--methods", help="comma-separated methods to try (default: the spec's)")
    p.add_argument("--grid", action="append", metavar="KEY=JSON",
                   help="values of an option to try, e.g. min_size=[0,20,40] (repeatable; default grid otherwise)")
    p.add_argument("--max-images", type=int, default=0)
    p.add_argument("--top", type=int, default=10, help="rows of the table to print")
    p.add_argument("--write", action="store_true", help="write the best setting into the checkpoint's spec.json")
    p.set_defaults(func=_cmd_tune)
