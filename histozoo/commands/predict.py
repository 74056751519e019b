"""``histozoo predict``: segment images through a TF Serving / ``histozoo serve`` endpoint (serving.client): the
served model's probabilities and its own InferenceSpec, through the one inference function ``zoo.inference.predict``."""

from __future__ import annotations

import os

from histozoo.commands import check_out


def _cmd_predict(args) -> int:
    check_out(args.out)  # a file or a read-only folder fails here, before any request (issue 16)
    from serving.client import PredictClient, RestClient, predict_files

    if args.rest:
        client = RestClient(args.server, timeout=args.timeout, retries=args.retries)
    else:
        client = PredictClient(args.server, timeout=args.timeout, retries=args.retries,
                               max_message_bytes=args.max_message_mb * 1024 * 1024)
    summary = predict_files(client, args.model, args.images, args.out, signature=args.signature,
                            version=args.version, label=args.label, progress=not args.quiet, mpp=args.mpp)
    for row in summary["images"]:
        print(f"{os.path.basename(row['image'])}: {row['instances']} instances")
    print(f"{summary['total_instances']} instances in {len(summary['images'])} images -> "
          f"{os.path.join(os.path.abspath(args.out), 'summary.json')}")
    return 0


def add(sub) -> None:
    p = sub.add_parser("predict", help="segment images through a TF Serving / histozoo serve endpoint")
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files (PNG/JPEG/TIFF...)")
    p.add_argument("--server", required=True, help="HOST:PORT of the gRPC endpoint (REST: with --rest)")
    p.add_argument("--model", required=True, help="served model name")
    p.add_argument("--signature", default="predict_images",
                   choices=["predict_bytes", "predict_images", "serving_default"],
                   help="wire form of the images (the spec's post-processing runs here either way)")
    p.add_argument("--mpp", type=float, default=None,
                   help="the images' microns per pixel (default: the model's own); other resolutions are resampled "
                        "to the model's and the outputs back")
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
