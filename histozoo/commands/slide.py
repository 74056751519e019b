"""``histozoo slide``: whole-slide images. ``slide info SLIDE`` prints the reader, levels and resolution;
``slide predict SLIDE --model URI --out DIR`` runs ``zoo.slides.predict_slide`` (tiles over tissue, seamless nuclei,
progress bar with ETA, resumable: rerun the same command after an interruption) and writes QuPath GeoJSON,
per-nucleus CSV / Parquet, an overlay and summary.json (docs/slides.md)."""

from __future__ import annotations

import os

from histozoo.commands import check_out


def _cmd_info(args) -> int:
    from zoo.slides import open_slide

    with open_slide(args.slide, args.mpp) as s:
        d = s.describe()
    print(f"{d['path']}: {d['format']}, {d['levels'][0]['shape'][1]} x {d['levels'][0]['shape'][0]} px, "
          f"mpp {d['mpp'] if d['mpp'] else 'unknown'} ({d['mpp_source']})")
    print(f"{'level':>5s} {'width':>8s} {'height':>8s} {'downsample':>11s} {'µm/px':>8s}")
    for i, lv in enumerate(d["levels"]):
        mpp = f"{lv['mpp']:.4f}" if lv["mpp"] else "-"
        print(f"{i:5d} {lv['shape'][1]:8d} {lv['shape'][0]:8d} {lv['downsample']:11.3f} {mpp:>8s}")
    return 0


def _cmd_predict(args) -> int:
    check_out(args.out)
    from zoo.slides import predict_slide
    from zoo.training.tracking import load

    loaded = load(args.model)
    s = predict_slide(args.slide, loaded.model, loaded.spec, args.out, mpp=args.mpp, tile_size=args.tile_size,
                      overlap=args.overlap, batch=args.batch, progress=not args.quiet)
    kinds = ", ".join(f"{k} {v}" for k, v in s["nuclei_by_class"].items())
    dens = f", {s['nuclei_per_mm2']:.0f} per mm² of tissue" if s["nuclei_per_mm2"] else ""
    print(f"{s['nuclei']} nuclei ({kinds}){dens}; {s['tiles_run']} of {s['tiles']} tiles run (level {s['level']}, "
          f"{s['tiles_background']} background), {s['run']['tiles_reused']} reused from an earlier run")
    print(f"-> {os.path.abspath(args.out)}: {', '.join(s['files'].values())}")
    return 0


def add(sub) -> None:
    p = sub.add_parser("slide", help="whole-slide images: info, and tiled prediction to QuPath GeoJSON / CSV")
    ss = p.add_subparsers(dest="slide_command", required=True, metavar="{info,predict,batch}")
    i = ss.add_parser("info", help="levels, size and resolution of a slide file")
    i.add_argument("slide", metavar="SLIDE", help="pyramidal TIFF / OME-TIFF / SVS (OpenSlide formats with the "
                                                  "[slides] extra) or PNG / JPEG")
    i.add_argument("--mpp", type=float, default=None, help="µm per pixel of level 0 (overrides the metadata)")
    i.set_defaults(func=_cmd_info)
    r = ss.add_parser("predict", help="segment (and classify) every nucleus of a slide, tile by tile")
    r.add_argument("slide", metavar="SLIDE", help="the slide file")
    r.add_argument("--model", default="pretrained:nuclei-unet-monuseg",
                   help="a run folder, .keras file, run id, runs:/ or models:/ URI, or pretrained:NAME (default: the "
                        "shipped nuclei model)")
    r.add_argument("--out", required=True, help="output folder (rerun with the same folder to resume)")
    r.add_argument("--mpp", type=float, default=None, help="µm per pixel of level 0 (overrides the metadata)")
    r.add_argument("--tile-size", type=int, default=None, help="tile size in model pixels (default: the spec's, "
                                                               "else 512)")
    r.add_argument("--overlap", type=int, default=None, help="overlap between tiles in model pixels (default: "
                                                             "enough for nuclei up to 24 µm across)")
    r.add_argument("--batch", type=int, default=4, help="tiles per model call")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_predict)
    from histozoo.commands import _slide_batch

    _slide_batch.add(ss)
