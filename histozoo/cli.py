"""``histozoo`` console script: one subcommand per job, each a thin door into ``zoo`` / ``serving`` / ``pipelines``.

Each subcommand has an ``_add_<name>(subparsers)`` function below that declares its arguments and sets
``func``. Heavy imports (TensorFlow, tfx) happen inside the command functions, so ``histozoo --help`` is quick
and commands that do not need tfx run where it is not installed. A ``ZooError`` (a user's mistake) is
printed as one line, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def parse_key_values(pairs: list[str] | None) -> dict:
    """``--option key=value`` pairs -> dict (values parsed as JSON when they parse, else strings)."""
    out = {}
    for p in pairs or []:
        if "=" not in p:
            from zoo.errors import ConfigError

            raise ConfigError(f"--option {p!r}: expected key=value")
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


# ----------------------------------------------------------------------------------------------------- data
def _cmd_data_build(args) -> int:
    from zoo.data.build import build, format_summary

    options = parse_key_values(args.option)
    folder = {k: v for k, v in ((k, getattr(args, k)) for k in _FOLDER_FLAGS) if v is not None and v is not False}
    if folder and args.dataset != "folder":
        from zoo.errors import ConfigError

        raise ConfigError(f"--{next(iter(folder)).replace('_', '-')} is an option of the 'folder' reader, "
                          f"not of {args.dataset!r}")
    options.update(folder)
    if args.root is None and args.dataset != "folder":
        from zoo.errors import ConfigError

        raise ConfigError(f"--root is required for dataset {args.dataset!r}")
    summary = build(args.dataset, args.root or ".", args.out, per_shard=args.per_shard,
                    progress=not args.quiet, **options)
    print(format_summary(summary))
    if args.fold is not None:
        _print_fold(args.out, args.fold)
    print(f"wrote {os.path.abspath(args.out)}  (wall {summary['wall_s']:.1f} s, peak RSS {summary['peak_rss_mib']:.0f} MiB)")
    return 0


def _print_fold(data_dir: str, fold: int) -> None:
    from zoo.data.build import select

    _, train = select(data_dir, "train", fold)
    _, test = select(data_dir, "test", fold)
    print(f"fold {fold}: train {len(train)} images, test {len(test)} images ({', '.join(sorted(test))})")


def _cmd_data_info(args) -> int:
    from zoo.data.build import format_summary, load_summary

    print(format_summary(load_summary(args.data)))
    if args.fold is not None:
        _print_fold(args.data, args.fold)
    return 0


def _cmd_data_list(args) -> int:
    from zoo.data.readers import available, get_reader

    for name in available():
        doc = (get_reader(name).__module__ and sys.modules[get_reader(name).__module__].__doc__ or "").strip()
        print(f"{name:20s} {doc.splitlines()[0] if doc else ''}")
    return 0


_FOLDER_FLAGS = ("images", "labels", "geojson", "binary", "classes", "instance_classes", "class_maps", "sources",
                 "source_pattern", "split_pattern", "test_fraction", "val_fraction", "seed")


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="build and inspect record shards of a dataset")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    b = dsub.add_parser("build", help="read a raw dataset folder and write GZIP TFRecord shards + summary.json")
    b.add_argument("dataset", help="dataset name (see `histozoo data list`)")
    b.add_argument("--root", help="the raw dataset folder (for 'folder': the base of relative paths, default .)")
    b.add_argument("--out", required=True, help="output folder for shards, summary.json (and folds.json)")
    b.add_argument("--fold", type=int, default=None, help="also print the train/test images of this fold")
    b.add_argument("--per-shard", type=int, default=32, help="records per shard (default 32)")
    b.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="reader option, e.g. connectivity=4 for tnbc (repeatable)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    g = b.add_argument_group("your own data (dataset 'folder'; see docs/own_data.md)")
    g.add_argument("--images", help="images folder (default ROOT/images)")
    g.add_argument("--labels", help="label images / masks / .npy folder, paired by file stem (default ROOT/labels)")
    g.add_argument("--geojson", help="QuPath GeoJSON folder (<stem>.geojson or .json) instead of --labels")
    g.add_argument("--binary", action="store_true", help="labels are binary masks: nuclei = connected components")
    g.add_argument("--classes", help="class names, .txt (one per line) or .json; type i = line i")
    g.add_argument("--instance-classes", dest="instance_classes", help="CSV: image, instance, class (name or index)")
    g.add_argument("--class-maps", dest="class_maps", help="folder of per-pixel class images (majority per instance)")
    g.add_argument("--sources", help="CSV: image, source[, split, organ, site, mpp]")
    g.add_argument("--source-pattern", dest="source_pattern", help="regex on the image key; group 'source'")
    g.add_argument("--split-pattern", dest="split_pattern", help="regex on the image key; group 'split'")
    g.add_argument("--test-fraction", dest="test_fraction", type=float, help="split by source hash (default 0.2)")
    g.add_argument("--val-fraction", dest="val_fraction", type=float, help="split by source hash (default 0)")
    g.add_argument("--seed", type=int, help="seed of the split by source (default 0)")
    b.set_defaults(func=_cmd_data_build)
    i = dsub.add_parser("info", help="print the summary of a built data folder")
    i.add_argument("data", help="a folder written by `histozoo data build`")
    i.add_argument("--fold", type=int, default=None)
    i.set_defaults(func=_cmd_data_info)
    lst = dsub.add_parser("list", help="list the dataset readers")
    lst.set_defaults(func=_cmd_data_list)
    _add_data_crops(dsub)



def _cmd_data_crops(args) -> int:
    from zoo.data.build import format_summary
    from zoo.data.crops import CropConfig, write_crops

    cfg = CropConfig(size=args.size, source=args.source, min_pixels=args.min_pixels)
    summary = write_crops(args.data, args.out, cfg, split=args.split, per_shard=args.per_shard,
                          progress=not args.quiet)
    print(format_summary(summary))
    n = sum(s["images"] for s in summary["splits"].values())
    print(f"wrote {n} crops of {summary['options']['parent_images']} images to {os.path.abspath(args.out)}  "
          f"(wall {summary['wall_s']:.1f} s)")
    return 0


def _add_data_crops(dsub) -> None:
    c = dsub.add_parser("crops", help="cut one crop per nucleus (instance box or centre point) into new record shards")
    c.add_argument("data", help="a folder written by `histozoo data build`")
    c.add_argument("--out", required=True, help="output folder for the crop shards + summary.json")
    c.add_argument("--size", type=int, default=32, help="crop side in pixels (default 32, Hu et al.; 40 for Yuan & Suh)")
    c.add_argument("--source", choices=["auto", "instances", "points"], default="auto",
                   help="crop from instance boxes or centre points (auto: instances when present, else points)")
    c.add_argument("--min-pixels", dest="min_pixels", type=int, default=1,
                   help="skip nuclei with fewer pixels (instances only)")
    c.add_argument("--split", default=None, help="only this split's shards (default: every split)")
    c.add_argument("--per-shard", type=int, default=4096, help="crops per shard (default 4096)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_cmd_data_crops)

# ---------------------------------------------------------------------------------------- train / evaluate
def _load_experiment(args):
    from zoo.training import ExperimentConfig

    cfg = ExperimentConfig.load(args.config) if args.config else ExperimentConfig()
    changes = {"model": args.model} if getattr(args, "model", None) else {}
    if getattr(args, "data", None):
        changes["data_dir"] = args.data
    if getattr(args, "fold", None) is not None:
        changes["fold"] = args.fold
    for k in ("epochs", "steps_per_epoch", "seed"):
        if getattr(args, k, None) is not None:
            changes[k] = getattr(args, k)
    if getattr(args, "name", None):
        changes["name"] = args.name
    if getattr(args, "register_as", None):
        changes["tracking"] = {**cfg.tracking, "enabled": True, "register_as": args.register_as}
    changes.update(parse_key_values(getattr(args, "set", None)))
    try:
        return cfg.from_dict({**cfg.to_dict(), **changes})
    except TypeError as e:
        from zoo.errors import ConfigError

        raise ConfigError(str(e)) from None


def _cmd_train(args) -> int:
    from zoo.training import train

    cfg = _load_experiment(args)
    res = train(cfg, output_dir=args.out, resume=args.resume, tracking=False if args.no_tracking else None)
    if res.metrics:
        keys = ("pixel_dice", "pixel_jaccard", "pixel_performance", "det_f1", "aji", "aji_pooled", "pq", "dq", "sq")
        shown = {k: v for k, v in res.metrics.items() if k.split("_", 1)[1] in keys}
        print("evaluation (" + os.path.join(res.output_dir, "evaluation.json") + "): "
              + ", ".join(f"{k}={v:.4f}" for k, v in shown.items()))
    print(f"run {res.run_id or '(not tracked)'}; outputs in {os.path.abspath(res.output_dir)}"
          + (f"; registered version {res.registered_version}" if res.registered_version else ""))
    return 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a zoo model (the one training core; tracked in MLflow)")
    p.add_argument("model", nargs="?", help="registered model name (overrides the config's model)")
    p.add_argument("--data", help="a built data folder (overrides data_dir)")
    p.add_argument("--config", help="experiment config, YAML or JSON (zoo.training.ExperimentConfig)")
    p.add_argument("--fold", type=int, help="cross-validation fold (TNBC: 1..11)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps-per-epoch", dest="steps_per_epoch", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--name", help="run name")
    p.add_argument("--set", action="append", metavar="KEY=JSON", help="override a top-level config key (repeatable)")
    p.add_argument("--out", help="output folder (default runs/<name>)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    p.add_argument("--register-as", help="register the trained model under this name in the MLflow registry")
    p.set_defaults(func=_cmd_train)


def _cmd_evaluate(args) -> int:
    from zoo.evaluation import evaluate, format_table
    from zoo.training.tracking import load_model

    model = load_model(args.model)
    post = parse_key_values(args.postprocess) or None
    res = evaluate(model, args.data, split=args.split, fold=args.fold, postprocess=post, progress=True)
    print(format_table(res, args.keys.split(",") if args.keys else None))
    if args.out:
        from zoo.atomic import write_json

        write_json(args.out, res)
        print(f"wrote {args.out}")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="score a model (.keras file, run id, runs:/ or models:/ URI) on a split")
    p.add_argument("model", help="a .keras file, an MLflow run id, runs:/<id>/model or models:/<name>@champion")
    p.add_argument("--data", required=True, help="a built data folder")
    p.add_argument("--split", default="test")
    p.add_argument("--fold", type=int)
    p.add_argument("--postprocess", action="append", metavar="KEY=VALUE",
                   help="e.g. method=dynamics_watershed, lam=7 (repeatable)")
    p.add_argument("--keys", help="comma-separated metric columns for the table (default: all)")
    p.add_argument("--out", help="write the full result JSON here")
    p.set_defaults(func=_cmd_evaluate)


# ------------------------------------------------------------------------------------------------ registry
def _cmd_registry_promote(args) -> int:
    from zoo.training.tracking import promote

    d = promote(args.name, args.metric, margin=args.margin, version=args.version,
                greater_is_better=not args.lower_is_better)
    print(("PROMOTED: " if d["promoted"] else "kept champion: ") + d["reason"])
    print(json.dumps(d, indent=1))
    return 0


def _cmd_registry_list(args) -> int:
    from zoo.training.tracking import _mlflow

    client = _mlflow().MlflowClient()
    aliases = {}
    for rm in client.search_registered_models(f"name='{args.name}'"):
        aliases = {str(v): a for a, v in (rm.aliases or {}).items()}
    for v in sorted(client.search_model_versions(f"name='{args.name}'"), key=lambda v: int(v.version)):
        run = client.get_run(v.run_id) if v.run_id else None
        val = run.data.metrics.get(args.metric) if (run and args.metric) else None
        print(f"v{v.version:<4} {aliases.get(str(v.version), ''):10s} run {v.run_id}"
              + (f"  {args.metric}={val:.4f}" if val is not None else "")
              + f"  {v.tags.get('promotion.decision', '')}")
    return 0


def _add_registry(sub) -> None:
    p = sub.add_parser("registry", help="MLflow model registry: list versions, promote a challenger")
    rsub = p.add_subparsers(dest="registry_cmd", required=True)
    pr = rsub.add_parser("promote", help="move the champion alias to a challenger only if it wins on a metric")
    pr.add_argument("name", help="registered model name")
    pr.add_argument("--metric", required=True, help="run metric to compare, e.g. test_aji")
    pr.add_argument("--margin", type=float, default=0.0, help="required improvement (default 0)")
    pr.add_argument("--version", help="challenger version (default: newest)")
    pr.add_argument("--lower-is-better", action="store_true")
    pr.set_defaults(func=_cmd_registry_promote)
    ls = rsub.add_parser("list", help="list versions, aliases and a metric")
    ls.add_argument("name")
    ls.add_argument("--metric", default="")
    ls.set_defaults(func=_cmd_registry_list)


# ------------------------------------------------------------------------------------- export / predict / serve
def _cmd_export(args) -> int:
    from serving.export import export, load_keras_model, load_stain

    model = load_keras_model(args.model)
    stain = load_stain(args.stain) if args.stain else None
    meta = {"source": args.model}
    if args.mpp:
        meta["mpp"] = args.mpp
    if args.class_names:
        meta["class_names"] = [c.strip() for c in args.class_names.split(",")]
    path = export(model, args.out, args.version, stain=stain, instance_mode=args.instance_mode,
                  threshold=args.threshold, max_iters=args.max_iters, metadata=meta)
    print(f"exported {args.model} -> {os.path.abspath(path)}")
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a model as a versioned SavedModel for TF Serving (OUT/<version>/)")
    p.add_argument("model", metavar="MODEL", help="a .keras file, or an MLflow URI (models:/NAME@ALIAS, runs:/ID/model)")
    p.add_argument("--out", required=True, help="model base path; the version folder is created inside it")
    p.add_argument("--version", type=int, default=None, help="version number (default: one more than the largest)")
    p.add_argument("--instance-mode", choices=["inner_cc", "threshold_cc"], default="inner_cc",
                   help="in-graph instances: components of argmax==1 (inner_cc) or of P(class 1) >= threshold")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--max-iters", type=int, default=1024, help="bound on label-propagation iterations")
    p.add_argument("--stain", default=None, help="fitted stain normalizer JSON (zoo.stain) to apply in the graph")
    p.add_argument("--mpp", type=float, default=None, help="microns per pixel the model expects (metadata)")
    p.add_argument("--class-names", default=None, help="comma-separated class names (metadata)")
    p.set_defaults(func=_cmd_export)


def _cmd_predict(args) -> int:
    from serving.client import PredictClient, RestClient, predict_files

    if args.rest:
        client = RestClient(args.server, timeout=args.timeout, retries=args.retries)
    else:
        client = PredictClient(args.server, timeout=args.timeout, retries=args.retries,
                               max_message_bytes=args.max_message_mb * 1024 * 1024)
    summary = predict_files(client, args.model, args.images, args.out, signature=args.signature,
                            version=args.version, label=args.label, progress=not args.quiet)
    for row in summary["images"]:
        print(f"{os.path.basename(row['image'])}: {row['instances']} instances")
    print(f"{summary['total_instances']} instances in {len(summary['images'])} images -> "
          f"{os.path.join(os.path.abspath(args.out), 'summary.json')}")
    return 0


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="segment images through a TF Serving / histozoo serve endpoint")
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files (PNG/JPEG/TIFF...)")
    p.add_argument("--server", required=True, help="HOST:PORT of the gRPC endpoint (REST: with --rest)")
    p.add_argument("--model", required=True, help="served model name")
    p.add_argument("--signature", default="predict_bytes",
                   choices=["predict_bytes", "predict_images", "serving_default"])
    v = p.add_mutually_exclusive_group()
    v.add_argument("--version", type=int, default=None)
    v.add_argument("--label", default=None, help="version label, e.g. stable or canary")
    p.add_argument("--out", required=True, help="folder for <image>_prob.png, <image>_instances.png, summary.json")
    p.add_argument("--rest", action="store_true", help="use the REST API (:8501) instead of gRPC")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request attempt")
    p.add_argument("--retries", type=int, default=3, help="retries on UNAVAILABLE / DEADLINE_EXCEEDED")
    p.add_argument("--max-message-mb", type=int, default=256, help="gRPC message size limit (MiB)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)


def _cmd_serve(args) -> int:
    from serving.config import ModelEntry, read_model_config
    from serving.local_server import LocalModelServer
    from zoo.errors import ConfigError

    if args.model_config_file:
        entries = read_model_config(args.model_config_file)
    else:
        if not args.model_dir:
            raise ConfigError("serve: give MODEL_DIR or --model-config-file")
        labels = {}
        for pair in args.label or []:
            if "=" not in pair or not pair.split("=", 1)[1].isdigit():
                raise ConfigError(f"--label {pair!r}: expected NAME=VERSION")
            k, v = pair.split("=", 1)
            labels[k] = int(v)
        entries = [ModelEntry(args.name or os.path.basename(os.path.abspath(args.model_dir)), args.model_dir,
                              tuple(args.version) if args.version else None, labels)]
    server = LocalModelServer(entries, host=args.host, port=args.port, rest_port=args.rest_port,
                              max_workers=args.workers, max_message_bytes=args.max_message_mb * 1024 * 1024)
    server.start()
    for name, m in server.registry.models.items():
        print(f"serving {name} versions {sorted(m.versions)} labels {m.labels} from {os.path.abspath(m.entry.base_path)}")
    rest = f", REST on {args.host}:{server.rest_port}" if server.rest_port else ""
    print(f"gRPC PredictionService on {server.target}{rest} (Ctrl-C to stop)", flush=True)
    try:
        server.wait()
    finally:
        server.stop()
    return 0


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve exported models over TF Serving's gRPC (and REST) API, locally")
    p.add_argument("model_dir", nargs="?", metavar="MODEL_DIR", help="model base path (holds version folders)")
    p.add_argument("--name", default=None, help="model name (default: MODEL_DIR's folder name)")
    p.add_argument("--version", type=int, action="append", help="serve this version (repeatable; default: latest)")
    p.add_argument("--label", action="append", metavar="NAME=VERSION", help="version label (repeatable)")
    p.add_argument("--model-config-file", default=None, help="a TF Serving model config instead of MODEL_DIR")
    p.add_argument("--host", default="127.0.0.1", help="interface (default loopback only)")
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0 = any free port, printed)")
    p.add_argument("--rest-port", type=int, default=None, help="also serve the REST API on this port")
    p.add_argument("--workers", type=int, default=8, help="gRPC worker threads")
    p.add_argument("--max-message-mb", type=int, default=256, help="largest request/response (MiB)")
    p.set_defaults(func=_cmd_serve)


# ------------------------------------------------------------------------------------------------ pipeline
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
    return kw


def _cmd_pipeline_run(args) -> int:
    from pipelines import configs, require_tfx

    require_tfx()
    from pipelines.local_runner import format_summary, run_local

    beam = list(args.beam_arg or []) or configs.direct_beam_args(args.workers, args.direct_mode)
    result = run_local(args.config, args.dataset, args.data_root, name=args.name, home=args.home, beam_args=beam,
                       **_pipeline_kwargs(args))
    print(format_summary(result))
    return 0


def _cmd_pipeline_compile(args) -> int:
    from pipelines import configs, require_tfx

    require_tfx()
    from pipelines.kubeflow_runner import compile_pipeline, dag_tasks

    spec = compile_pipeline(args.config, args.dataset, args.data_root, args.out, target=args.target,
                            pipeline_root=args.pipeline_root, image=args.image or configs.PIPELINE_IMAGE,
                            name=args.name, beam_args=list(args.beam_arg or []) or None, **_pipeline_kwargs(args))
    print(f"wrote {args.target} pipeline spec {os.path.abspath(args.out)} ({len(dag_tasks(spec))} tasks)")
    return 0


def _add_pipeline(sub) -> None:
    p = sub.add_parser("pipeline", help="TFX pipeline: run locally or compile for Kubeflow / Vertex (needs the "
                       "tfx extra, or scripts/tfx_env.sh)")
    psub = p.add_subparsers(dest="pipeline_cmd", required=True)

    def common(q):
        q.add_argument("name", help="pipeline name (artifacts, MLMD context, default registered-model name)")
        q.add_argument("--config", required=True, help="experiment config (YAML/JSON) of the model to train")
        q.add_argument("--dataset", required=True, help="dataset reader name (see `histozoo data list`)")
        q.add_argument("--data-root", required=True, help="the raw dataset folder (or a gs:// path when compiling)")
        q.add_argument("--option", action="append", metavar="KEY=VALUE", help="reader option (repeatable)")
        q.add_argument("--threshold", action="append", metavar="METRIC=MIN",
                       help="blessing threshold, e.g. aji=0.5 (repeatable; default pixel_dice=0 aji=0)")
        q.add_argument("--compare-metric", default=None, help="metric that must beat the blessed baseline (aji)")
        q.add_argument("--min-improvement", type=float, default=None, help="margin over the baseline (0)")
        q.add_argument("--eval-max-images", type=int, default=0, help="score only the first N eval images (0 = all)")
        q.add_argument("--registered-model", default=None, help="MLflow registered model name")
        q.add_argument("--mlflow-tracking-uri", default=None, help="MLflow store (default $MLFLOW_TRACKING_URI "
                       "or mlruns/ under the working directory)")
        q.add_argument("--promote-metric", default=None,
                       help="after registering, promote to champion if it beats it on this run metric (eval_aji)")
        q.add_argument("--beam-arg", action="append", metavar="ARG",
                       help="Beam pipeline arg, e.g. --beam-arg=--runner=FlinkRunner (repeatable)")

    r = psub.add_parser("run", help="run the pipeline with LocalDagRunner + a sqlite MLMD store (cached re-runs)")
    common(r)
    r.add_argument("--home", default=None, help="local root for artifacts, MLMD and serving models "
                   "(default $HISTOZOO_PIPELINE_HOME or ./tfx_root)")
    r.add_argument("--workers", type=int, default=0, help="DirectRunner worker processes (0 = one per CPU)")
    r.add_argument("--direct-mode", default="multi_processing",
                   choices=["in_memory", "multi_threading", "multi_processing"])
    r.set_defaults(func=_cmd_pipeline_run)
    c = psub.add_parser("compile", help="write a Kubeflow V2 pipeline spec (JSON) for Kubeflow or Vertex")
    common(c)
    c.add_argument("--target", choices=["kubeflow", "vertex"], default="kubeflow")
    c.add_argument("--out", required=True, help="output JSON file")
    c.add_argument("--pipeline-root", default=None, help="artifact root on the cluster (gs://...)")
    c.add_argument("--image", default=None, help="container image with histozoo[tfx] "
                   "(default $HISTOZOO_PIPELINE_IMAGE or histozoo-tfx:latest)")
    c.set_defaults(func=_cmd_pipeline_compile)


# ----------------------------------------------------------------------------------------------- normalize
def _list_images(root: str) -> list[str]:
    """Image files under ``root`` (a folder, recursively, sorted) or ``[root]`` for a single file."""
    from zoo.data.imageio import IMAGE_EXTS
    from zoo.errors import DataError

    if os.path.isfile(root):
        return [root]
    if not os.path.isdir(root):
        raise DataError(root, "no such file or folder")
    found = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        found += [os.path.join(d, f) for f in sorted(files) if os.path.splitext(f)[1].lower() in IMAGE_EXTS]
    return found


def _write_rgb_atomic(path: str, image) -> None:
    """Write uint8 RGB to ``path`` in the format its extension names (temp file + rename)."""
    ext = os.path.splitext(path)[1].lower()
    tmp = f"{path}.tmp{os.getpid()}{ext}"
    try:
        if ext in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, image)
        else:
            from PIL import Image

            Image.fromarray(image).save(tmp, **({"quality": 95} if ext in (".jpg", ".jpeg") else {}))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _cmd_normalize(args) -> int:
    from tqdm import tqdm

    from zoo import stain
    from zoo.data.imageio import read_rgb
    from zoo.errors import ConfigError, DataError, ZooError

    if (args.target is None) == (args.params is None):
        raise ConfigError("normalize: give exactly one of --target REF (fit) or --params FILE (load fitted)")
    if args.params is not None:
        norm = stain.load(args.params, jit=not args.no_jit)
        if args.method is not None and args.method != norm.name:
            raise ConfigError(f"normalize: --method {args.method} but {args.params} holds {norm.name} parameters")
    else:
        norm = stain.get_normalizer(args.method or "macenko", jit=not args.no_jit)
        try:
            norm.fit(read_rgb(args.target))
        except ConfigError as e:
            raise DataError(args.target, str(e)) from None
        if args.save_params:
            norm.save(args.save_params)
    files = _list_images(args.input)
    if not files:
        raise DataError(args.input, "no PNG/JPEG/TIFF/BMP images found")
    single = os.path.isfile(args.input)
    fallbacks: dict[str, list[str]] = {}
    failed = 0
    for path in tqdm(files, desc=f"normalize ({norm.name})", unit="img", disable=args.quiet):
        rel = os.path.basename(path) if single else os.path.relpath(path, args.input)
        out_path = os.path.join(args.output, rel)
        try:
            image = read_rgb(path)
            out, info = norm.transform(image, return_info=True)
            os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
            _write_rgb_atomic(out_path, out)
        except ZooError as e:
            failed += 1
            tqdm.write(f"histozoo normalize: {e}", file=sys.stderr)
            continue
        except Exception as e:  # one bad file must not stop the folder; name it in one line
            failed += 1
            msg = str(e).splitlines()[0] if str(e) else ""
            tqdm.write(f"histozoo normalize: {path}: {type(e).__name__}: {msg}", file=sys.stderr)
            continue
        if info["fallback"]:
            fallbacks.setdefault(info["fallback"], []).append(rel)
    done = len(files) - failed
    print(f"normalized {done}/{len(files)} images with {norm.name} into {os.path.abspath(args.output)}"
          + (f"; {failed} failed" if failed else ""))
    for why, names in sorted(fallbacks.items()):
        shown = ", ".join(names[:10]) + (f", ... (+{len(names) - 10})" if len(names) > 10 else "")
        print(f"fallback {why}: {len(names)} image(s) copied unchanged: {shown}")
    if args.save_params and args.params is None:
        print(f"fitted parameters saved to {os.path.abspath(args.save_params)}")
    return 1 if failed else 0


def _add_normalize(sub) -> None:
    p = sub.add_parser("normalize", help="stain-normalize a folder of H&E images (Reinhard, Macenko, Vahadane)")
    p.add_argument("input", metavar="IN", help="an image or a folder of images (searched recursively)")
    p.add_argument("output", metavar="OUT", help="output folder (same relative names and formats)")
    p.add_argument("--method", choices=["reinhard", "macenko", "vahadane"], default=None,
                   help="stain method (default macenko; with --params, the saved method)")
    p.add_argument("--target", metavar="REF", help="reference image to fit the target stain to")
    p.add_argument("--params", metavar="F", help="fitted parameters written earlier with --save-params")
    p.add_argument("--save-params", metavar="F", help="write the fitted parameters (JSON) to F")
    p.add_argument("--no-jit", action="store_true",
                   help="no XLA compilation (faster when every image has a different size)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_normalize)


# ------------------------------------------------------------------------------------------------- main
_COMMANDS = [_add_data, _add_train, _add_evaluate, _add_registry, _add_export, _add_predict, _add_serve, _add_pipeline, _add_normalize]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="histozoo",
        description="histozoo: H&E histopathology model zoo (data, stain, segmentation, TFX, MLflow, TF Serving).")
    from zoo import __version__

    parser.add_argument("--version", action="version", version=f"histozoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter is not for users
    args = build_parser().parse_args(argv)
    from zoo.errors import ZooError

    try:
        return int(args.func(args) or 0)
    except ZooError as e:
        print(f"histozoo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("histozoo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
