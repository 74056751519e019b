"""``histozoo serve``: exported models over TF Serving's gRPC (and REST) API, locally (serving.local_server)."""

from __future__ import annotations

import os


LIMITS = ("max_image_pixels", "max_request_pixels", "rest_workers", "rest_queue", "rest_timeout")


def _cmd_serve(args) -> int:
    from zoo.errors import ConfigError

    labels = {}
    if not args.model_config_file:
        if not args.model_dir:
            raise ConfigError("serve: give MODEL_DIR or --model-config-file")
        for pair in args.label or []:
            if "=" not in pair or not pair.split("=", 1)[1].isdigit():
                raise ConfigError(f"--label {pair!r}: expected NAME=VERSION")
            k, v = pair.split("=", 1)
            labels[k] = int(v)
    from serving.config import ModelEntry, read_model_config
    from serving.local_server import LocalModelServer

    if args.model_config_file:
        entries = read_model_config(args.model_config_file)
    else:
        entries = [ModelEntry(args.name or os.path.basename(os.path.abspath(args.model_dir)), args.model_dir,
                              tuple(args.version) if args.version else None, labels)]
    limits = {k: getattr(args, k) for k in LIMITS if getattr(args, k) is not None}  # else the server's defaults
    server = LocalModelServer(entries, host=args.host, port=args.port, rest_port=args.rest_port,
                              max_workers=args.workers, max_message_bytes=args.max_message_mb * 1024 * 1024,
                              **limits)
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


def add(sub) -> None:
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
    p.add_argument("--max-message-mb", type=int, default=256, help="largest request/response or REST body (MiB)")
    p.add_argument("--max-image-pixels", type=int, default=None,
                   help="decoded pixels per image, checked before decoding (default 4096x4096); over: "
                        "RESOURCE_EXHAUSTED / HTTP 413")
    p.add_argument("--max-request-pixels", type=int, default=None,
                   help="decoded pixels per request (default 4 x 4096x4096)")
    p.add_argument("--rest-workers", type=int, default=None, help="REST requests handled at once (default 8)")
    p.add_argument("--rest-queue", type=int, default=None,
                   help="REST connections waiting for a worker (default 32); beyond them: HTTP 503")
    p.add_argument("--rest-timeout", type=float, default=None, help="seconds before an idle or stalled REST "
                                                                    "connection is closed (default 30; 408 mid-body)")
    p.set_defaults(func=_cmd_serve)
