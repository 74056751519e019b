"""``histozoo evaluate``: score a model on a split of a built data folder (zoo.evaluation), through the model's own
InferenceSpec (flags override a field of it, said in one line). A split with instance maps gets the segmentation
metrics; a split with typed centres only (CRCHistoPhenotypes) gets the centre scores (Qu et al.'s Table 2, HoVer-Net's
F_d / F_c: ``zoo.evaluation.evaluate_centres``)."""

from __future__ import annotations


def _cmd_evaluate(args) -> int:
    from histozoo.commands.export import spec_overrides
    from zoo.evaluation import evaluate, evaluate_centres, format_centres, format_table, iter_eval_samples
    from zoo.training.tracking import load

    loaded = load(args.model)
    spec = loaded.spec.override(spec_overrides(args))
    centres = next(iter_eval_samples(args.data, args.split, args.fold, max_images=1), None) is None
    run = evaluate_centres if centres else evaluate
    res = run(loaded.model, args.data, split=args.split, fold=args.fold, spec=spec, progress=True)
    if args.out:  # the result first: nothing computed is lost to a display problem
        from zoo.atomic import write_json

        write_json(args.out, res)
    print(format_centres(res) if centres else format_table(res, args.keys.split(",") if args.keys else None))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def add(sub) -> None:
    from histozoo.commands.export import add_spec_flags

    p = sub.add_parser("evaluate", help="score a model (.keras file, run folder, run id, runs:/ or models:/ URI) "
                                        "on a split")
    p.add_argument("model", help="a .keras file, a run folder, an MLflow run id, runs:/<id>/model or "
                                 "models:/<name>@champion")
    p.add_argument("--data", required=True, help="a built data folder")
    p.add_argument("--split", default="test")
    p.add_argument("--fold", type=int)
    add_spec_flags(p)
    p.add_argument("--keys", help="comma-separated metric columns for the table (default: all)")
    p.add_argument("--out", help="write the full result JSON here")
    p.set_defaults(func=_cmd_evaluate)
