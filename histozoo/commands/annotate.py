"""``histozoo annotate``: the local browser annotation tool (histozoo/annotate, issue 23), or, with ``--export``,
the saved annotations into training records."""

from __future__ import annotations

import ipaddress
import sys


def _cmd_annotate(args) -> int:
    from histozoo.annotate.workspace import Workspace
    from zoo.errors import ConfigError

    if args.export is None and not args.model:
        raise ConfigError("annotate: give --model URI (the interactive model), or --export RECORDS_DIR")
    segmenter = auto = None
    if args.export is None:
        from histozoo.cli import quiet_tensorflow

        quiet_tensorflow(getattr(args, "verbose", False))
        from zoo.interactive import load as load_interactive

        segmenter = load_interactive(args.model)
        if args.auto_model:
            from zoo.training.tracking import load

            auto = load(args.auto_model)
    ws = Workspace(args.images, args.out, segmenter=segmenter, auto=auto, mpp=args.mpp,
                   model_uri=args.model or "", auto_uri=args.auto_model or "")
    if args.export is not None:
        from histozoo.annotate.export import export_records

        s = export_records(ws, args.export, mpp=args.mpp, progress=True, holdout=args.holdout)
        counts = ", ".join(f"{k} {v['images']} image(s) / {v['nuclei']} nuclei" for k, v in s["splits"].items())
        print(f"exported to {args.export}: {counts} ({len(s['not_saved'])} image(s) never saved"
              + (f"; unsaved changes left out in {', '.join(s['unsaved'])}" if s["unsaved"] else "") + ")")
        return 0
    from histozoo.annotate.server import AnnotateServer

    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(f"histozoo annotate: warning: serving on {args.host}, reachable from other machines; the tool has "
              "no log-in", file=sys.stderr)
    try:
        server = AnnotateServer(ws, args.host, args.port, verbose=args.verbose_http)
    except OSError as e:
        raise ConfigError(f"annotate: cannot listen on {args.host}:{args.port} ({e.strerror or e})") from None
    print(f"histozoo annotate: {len(ws.names())} image(s) in {ws.root}; annotations in {ws.out}")
    print(f"open {server.url} in a browser (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def add(sub) -> None:
    p = sub.add_parser("annotate", help="annotate nuclei in a browser: clicks -> interactive model -> instance PNG + "
                                        "GeoJSON; export to training records")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (its top-level PNG/JPEG/TIFF)")
    p.add_argument("--model", metavar="URI", help="the interactive (click) segmentation model (zoo.interactive)")
    p.add_argument("--auto-model", metavar="URI", help="an automatic model whose instances are offered as proposals "
                                                      "(e.g. pretrained:nuclei-unet-monuseg)")
    p.add_argument("--out", metavar="DIR", help="where annotations are saved (default: DIR/annotations)")
    p.add_argument("--mpp", type=float, default=None, help="the images' microns per pixel (default: the model's)")
    p.add_argument("--host", default="127.0.0.1", help="interface (default loopback only)")
    p.add_argument("--port", type=int, default=0, help="port (0 = any free port, printed)")
    p.add_argument("--export", metavar="RECORDS_DIR", default=None,
                   help="write the saved annotations as training records into RECORDS_DIR and exit (no server)")
    p.add_argument("--holdout", type=int, default=0, metavar="N",
                   help="with --export: the last N saved images go to split 'test' (the default validation split)")
    p.add_argument("--verbose-http", action="store_true", help="log every request")
    p.set_defaults(func=_cmd_annotate)
