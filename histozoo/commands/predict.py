"""``histozoo predict``: segment images (files or folders) with a model in this process (``--model``: a run
folder, .keras file, run id, MLflow URI or ``pretrained:NAME``; default: the shipped nuclei model) or through a TF
Serving / ``histozoo serve`` endpoint (``--server``). Either way the images go through the one inference function ``zoo.inference.predict`` with the model's own InferenceSpec,
and ``zoo.inference.outputs`` writes, per image, the instance map, an overlay PNG, a QuPath GeoJSON and a per-nucleus
CSV, plus ``summary.json``."""

from __future__ import annotations

import os

from histozoo.commands import check_out


def _cmd_predict(args) -> int:
    check_out(args.out)  # a file or a read-only folder fails here, before any work (issue 16)
    if args.server:
        if not args.model:
            from zoo.errors import ConfigError

            raise ConfigError("--server needs --model NAME (the served model's name)")
        from serving.client import PredictClient, RestClient, predict_files

        if args.rest:
            client = RestClient(args.server, timeout=args.timeout, retries=args.retries)
        else:
            client = PredictClient(args.server, timeout=args.timeout, retries=args.retries,
                                   max_message_bytes=args.max_message_mb * 1024 * 1024)
        summary = predict_files(client, args.model, args.images, args.out, signature=args.signature,
                                version=args.version, label=args.label, progress=not args.quiet, mpp=args.mpp)
    else:
        from zoo.inference.outputs import predict_files
        from zoo.pretrained import DEFAULT
        from zoo.training.tracking import load

        loaded = load(args.model or "pretrained:" + DEFAULT)
        summary = predict_files(loaded.model, loaded.spec, args.images, args.out, mpp=args.mpp,
                                progress=not args.quiet, extra={"model": loaded.source})
    width = max([len(os.path.basename(r["image"])) for r in summary["images"]] + [5])
    print(f"{'image':{width}s} {'nuclei':>7s}  by type")
    for row in summary["images"]:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(row["by_class"].items()))
        print(f"{os.path.basename(row['image']):{width}s} {row['instances']:7d}  {kinds}")
    print(f"{summary['total_instances']} instances in {len(summary['images'])} images -> "
          f"{os.path.join(os.path.abspath(args.out), 'summary.json')} (+ per image: _instances.png, _overlay.png, "
          ".geojson for QuPath, _nuclei.csv)")
    return 0


def add(sub) -> None:
    p = sub.add_parser("predict", help="segment images with a model (in process) or a TF Serving endpoint; writes "
                                       "overlays, QuPath GeoJSON and per-nucleus CSV")
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files or folders (PNG/JPEG/TIFF/BMP)")
    p.add_argument("--model", default="", help="in process: a run folder, .keras file, run id, runs:/ or models:/ "
                                               "URI, or pretrained:NAME (default: the shipped nuclei model, "
                                               "histozoo models list); with --server: the served model name")
    p.add_argument("--server", default=None, help="HOST:PORT of a gRPC endpoint (REST: with --rest); default: run "
                                                  "the model in this process")
    p.add_argument("--signature", default="predict_images",
                   choices=["predict_bytes", "predict_images", "serving_default"],
                   help="with --server: wire form of the images (the spec's post-processing runs here either way)")
    p.add_argument("--mpp", type=float, default=None,
                   help="the images' microns per pixel (default: the model's own); other resolutions are resampled "
                        "to the model's and the outputs back")
    v = p.add_mutually_exclusive_group()
    v.add_argument("--version", type=int, default=None, help="with --server: the served version")
    v.add_argument("--label", default=None, help="with --server: a version label, e.g. stable or canary")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--rest", action="store_true", help="with --server: the REST API (:8501) instead of gRPC")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request attempt")
    p.add_argument("--retries", type=int, default=3, help="retries on UNAVAILABLE / DEADLINE_EXCEEDED")
    p.add_argument("--max-message-mb", type=int, default=256, help="gRPC message size limit (MiB)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)
