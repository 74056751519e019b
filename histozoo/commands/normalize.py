"""``histozoo normalize``: stain-normalize a folder of H&E images (zoo.stain.folder.normalize_folder)."""

from __future__ import annotations

import sys


def _cmd_normalize(args) -> int:
    from tqdm import tqdm

    from zoo.stain.folder import normalize_folder

    summary = normalize_folder(args.input, args.output, method=args.method, target=args.target, params=args.params,
                               save_params=args.save_params, jit=not args.no_jit, progress=not args.quiet,
                               model=args.model,
                               on_error=lambda msg: tqdm.write(f"histozoo normalize: {msg}", file=sys.stderr))
    failed = len(summary["failed"])
    print(f"normalized {summary['normalized']}/{summary['images']} images with {summary['method']} into "
          f"{summary['output']}" + (f"; {failed} failed" if failed else ""))
    for why, names in summary["fallbacks"].items():
        shown = ", ".join(names[:10]) + (f", ... (+{len(names) - 10})" if len(names) > 10 else "")
        print(f"fallback {why}: {len(names)} image(s) copied unchanged: {shown}")
    if summary["params_saved"]:
        print(f"fitted parameters saved to {summary['params_saved']}")
    return 1 if failed else 0


def add(sub) -> None:
    p = sub.add_parser("normalize", help="stain-normalize a folder of H&E images (Reinhard, Macenko, Vahadane, neural)")
    p.add_argument("input", metavar="IN", help="an image or a folder of images (searched recursively)")
    p.add_argument("output", metavar="OUT", help="output folder (same relative names and formats)")
    p.add_argument("--method", choices=["reinhard", "macenko", "vahadane", "colorization", "colornormnet"],
                   default=None, help="stain method (default macenko; with --params, the saved method)")
    p.add_argument("--model", metavar="URI", help="the trained network of colorization / colornormnet (.keras file "
                                                  "or training run folder)")
    p.add_argument("--target", metavar="REF", help="reference image to fit the target stain to")
    p.add_argument("--params", metavar="F", help="fitted parameters written earlier with --save-params")
    p.add_argument("--save-params", metavar="F", help="write the fitted parameters (JSON) to F")
    p.add_argument("--no-jit", action="store_true",
                   help="no XLA compilation (faster when every image has a different size)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_normalize)
