"""``histozoo pipeline run | compile | cycle``: the TFX pipeline (``cycle``: the annotation cycle's pipeline).
``pipelines`` (the only package that imports tfx) is
imported inside the commands, so every other command runs where tfx is not installed."""

from __future__ import annotations

import os
import sys

from histozoo.commands import parse_key_values


def _pipeline_kwargs(args) -> dict:
    kw = {"reader_options": parse_key_values(args.option), "eval_max_images": args.eval_max_images,
          "mlflow_tracking_uri": args.mlflow_tracking_uri or "", "promote_metric": args.promote_metric or ""}
    if args.threshold:
        kw["thresholds"] = {k: float(v) for k, v in parse_key_values(args.threshold).items()}
    if args.compare_metric:
        kw["compare_metric"] = args.compare_metric
    if args.min_improvement is not None:
        kw["min_improvement"] = args.min_improvement
    if args.registered_model:
        kw["registered_model_name"] = args.registered_model
    if args.synth_images:  # HistoSynthGen in front of the Trainer: train on synthetic images only (issue 22)
        kw["synth"] = {"images": args.synth_images, "n": args.synth_n, "seed": args.synth_seed,
                       "options": parse_key_values(args.synth_option, "--synth-option"),
                       "refiner": args.synth_refiner or ""}
    return kw


def _cmd_run(args) -> int:
    from pipelines import configs, require_tfx

    require_tfx()
    from pipelines.local_runner import format_failure, format_outcome, run_local

    verbose = bool(getattr(args, "verbose", False))
    beam = list(args.beam_arg or []) or configs.direct_beam_args(args.workers, args.direct_mode)
    try:
        result = run_local(args.config, args.dataset, args.data_root, name=args.name, home=args.home, beam_args=beam,
                           quiet=not verbose, **_pipeline_kwargs(args))
    except BaseException:
        line = format_failure(args.name, configs.local_paths(args.name, args.home).metadata_path)
        if line:
            print(line, file=sys.stderr)
        raise
    print(format_outcome(result, verbose=verbose))
    return 0


def _cmd_cycle(args) -> int:
    """The annotation cycle as a TFX pipeline (pipelines/cycle_pipeline.py); ends with the per-cycle table."""
    from pipelines import configs, require_tfx

    require_tfx()
    from pipelines.cycle_pipeline import run_cycle_local
    from pipelines.local_runner import format_failure

    verbose = bool(getattr(args, "verbose", False))
    try:
        result = run_cycle_local(args.config, args.name, home=args.home, cycles=args.cycles, quiet=not verbose,
                                 eval_max_images=args.eval_max_images,
                                 mlflow_tracking_uri=args.mlflow_tracking_uri or "")
    except BaseException:
        line = format_failure(args.name, configs.local_paths(args.name, args.home).metadata_path)
        if line:
            print(line, file=sys.stderr)
        raise
    states = [s["state"] for s in result["steps"]]
    print(f"pipeline {result['pipeline_name']}: {len(states)} steps ({states.count('COMPLETE')} ran, "
          f"{states.count('CACHED')} cached) in {result['wall_s']} s")
    print("cycle  images  clicks  dice    aji     pq      model")
    for r in result["rows"]:
        print(f"{r['cycle']:>5}  {r['images_annotated']:>6}  {r['clicks']:>6}  {r['dice']:.4f}  {r['aji']:.4f}  "
              f"{r['pq']:.4f}  {configs.host_path(r['run_dir'])}")
    print(f"artifacts: {configs.host_path(result['paths'].pipeline_root)}")
    return 0


def _cmd_compile(args) -> int:
    from pipelines import configs, require_tfx

    # before tfx: a spec that could not run on the cluster is refused here too
    configs.check_cluster_paths(args.data_root, args.pipeline_root, args.mlflow_tracking_uri or "", args.allow_local)
    require_tfx()
    from pipelines.kubeflow_runner import compile_pipeline, dag_tasks

    spec = compile_pipeline(args.config, args.dataset, args.data_root, args.out, target=args.target,
                            pipeline_root=args.pipeline_root, image=args.image or configs.PIPELINE_IMAGE,
                            name=args.name, beam_args=list(args.beam_arg or []) or None,
                            allow_local=args.allow_local, **_pipeline_kwargs(args))
    print(f"wrote {args.target} pipeline spec {configs.host_path(os.path.abspath(args.out))} "
          f"({len(dag_tasks(spec))} tasks)")
    return 0


def _common(q) -> None:
    q.add_argument("name", help="pipeline name: its artifacts, MLMD context and serving folder; also the MLflow "
                   "registered-model name, unless --registered-model or the config's tracking.register_as gives one "
                   "(that order: --registered-model, then register_as, then NAME)")
    q.add_argument("--config", required=True, help="experiment config (YAML/JSON) of the model to train")
    q.add_argument("--dataset", required=True, help="dataset reader name (see `histozoo data list`), or 'records': "
                   "DATA_ROOT is a built records folder (histozoo data build / data crops / synth) trained on as it "
                   "is (the config's train_split / val_split)")
    q.add_argument("--data-root", required=True, help="the raw dataset folder, or the records folder with --dataset "
                   "records (an object-store URI, gs://... or s3://..., when compiling)")
    q.add_argument("--option", action="append", metavar="KEY=VALUE", help="reader option (repeatable)")
    q.add_argument("--threshold", action="append", metavar="METRIC=MIN",
                   help="blessing threshold, e.g. aji=0.5 (repeatable; default pixel_dice=0 aji=0, for a GAN "
                        "purity=0)")
    q.add_argument("--compare-metric", default=None, help="metric that must beat the blessed baseline "
                   "(aji; purity for a GAN)")
    q.add_argument("--min-improvement", type=float, default=None, help="margin over the baseline (0)")
    q.add_argument("--eval-max-images", type=int, default=0, help="score only the first N eval images (0 = all)")
    q.add_argument("--registered-model", default=None, help="MLflow registered model name (wins over the "
                   "config's tracking.register_as and over NAME)")
    q.add_argument("--mlflow-tracking-uri", default=None, help="MLflow store (default $MLFLOW_TRACKING_URI "
                   "or mlruns/ under the working directory)")
    q.add_argument("--promote-metric", default=None,
                   help="after registering, promote to champion if it beats it on this run metric (eval_aji)")
    q.add_argument("--synth-images", default=None, metavar="DIR",
                   help="train on synthetic images made from the real images in DIR (histozoo synth as a step "
                        "before the Trainer); the Evaluator still scores the dataset's eval split")
    q.add_argument("--synth-n", type=int, default=100, help="number of synthetic images (default 100)")
    q.add_argument("--synth-seed", type=int, default=0)
    q.add_argument("--synth-option", action="append", metavar="KEY=VALUE",
                   help="a zoo.synthesis.SynthesisConfig option (repeatable), as histozoo synth --option")
    q.add_argument("--synth-refiner", default=None, metavar="URI", help="a trained simgan_refiner (histozoo synth "
                   "--refiner)")
    q.add_argument("--beam-arg", action="append", metavar="ARG",
                   help="Beam pipeline arg, e.g. --beam-arg=--runner=FlinkRunner (repeatable)")


def add(sub) -> None:
    p = sub.add_parser("pipeline", help="TFX pipeline: run locally or compile for Kubeflow / Vertex (needs the "
                       "tfx extra, or scripts/tfx_env.sh)")
    psub = p.add_subparsers(dest="pipeline_cmd", required=True)
    r = psub.add_parser("run", help="run the pipeline with LocalDagRunner + a sqlite MLMD store (cached re-runs)",
                        description="Run the pipeline locally and end with its outcome: blessed or not and why, the "
                        "serving version pushed, the registered model version, the MLflow run, and the paths it "
                        "wrote. Quiet by default: one line per step and any error line on the terminal, the rest "
                        "in <home>/logs/NAME/ (histozoo --verbose pipeline run ... shows everything).")
    _common(r)
    r.add_argument("--home", default=None, help="local root for artifacts, MLMD and serving models "
                   "(default $HISTOZOO_PIPELINE_HOME or ./tfx_root)")
    r.add_argument("--workers", type=int, default=0, help="DirectRunner worker processes (0 = one per CPU)")
    r.add_argument("--direct-mode", default="multi_processing",
                   choices=["in_memory", "multi_threading", "multi_processing"])
    r.set_defaults(func=_cmd_run)
    c = psub.add_parser("compile", help="write a Kubeflow V2 pipeline spec (JSON) for Kubeflow or Vertex")
    _common(c)
    c.add_argument("--target", choices=["kubeflow", "vertex"], default="kubeflow")
    c.add_argument("--out", required=True, help="output JSON file")
    c.add_argument("--pipeline-root", default=None, help="artifact root on the cluster (gs://..., s3://...)")
    c.add_argument("--image", default=None, help="container image with histozoo[tfx], built from "
                   "docker/tfx/Dockerfile (default $HISTOZOO_PIPELINE_IMAGE or histozoo-tfx:latest)")
    c.add_argument("--allow-local", action="store_true", help="accept a local --data-root / --pipeline-root, no "
                   "--pipeline-root (gs://YOUR_BUCKET placeholder) and a local MLflow store (default: refused, "
                   "since the cluster's pods cannot read this machine's disk)")
    c.set_defaults(func=_cmd_compile)
    y = psub.add_parser("cycle", help="the annotation cycle (histozoo cycle) as a TFX pipeline: train on synthetic "
                        "records, then per cycle annotate -> retrain (warm start) -> evaluate",
                        description="Bhatia's annotation cycle as one TFX pipeline (docs/tfx.md): the cycle config "
                        "of `histozoo cycle`; cycle 1 trained by the pipeline on the synthetic records; ends with "
                        "the per-cycle table (Dice, AJI, PQ, clicks).")
    y.add_argument("name", help="pipeline name: its artifacts and MLMD context")
    y.add_argument("--config", required=True, help="cycle config, YAML or JSON (zoo.interactive.cycle.CycleConfig, "
                   "e.g. configs/cycle/monuseg.yaml)")
    y.add_argument("--cycles", type=int, default=None, help="cycles 1..N only (default: all the config has)")
    y.add_argument("--home", default=None, help="local root for artifacts and MLMD (default $HISTOZOO_PIPELINE_HOME "
                   "or ./tfx_root)")
    y.add_argument("--eval-max-images", type=int, default=0, help="score only the first N eval images (0 = all)")
    y.add_argument("--mlflow-tracking-uri", default=None, help="MLflow store of the Trainers' runs (default "
                   "$MLFLOW_TRACKING_URI or mlruns/ under the working directory)")
    y.set_defaults(func=_cmd_cycle)
