"""``histozoo data build | info | list | crops``: record shards of a dataset."""

from __future__ import annotations

import os
import sys

from histozoo.commands import check_out, parse_key_values

_FOLDER_FLAGS = ("images", "labels", "geojson", "binary", "classes", "instance_classes", "class_maps", "sources",
                 "source_pattern", "split_pattern", "test_fraction", "val_fraction", "seed")


def _cmd_build(args) -> int:
    from zoo.errors import ConfigError

    options = parse_key_values(args.option)
    folder = {k: v for k, v in ((k, getattr(args, k)) for k in _FOLDER_FLAGS) if v is not None and v is not False}
    if folder and args.dataset != "folder":
        raise ConfigError(f"--{next(iter(folder)).replace('_', '-')} is an option of the 'folder' reader, "
                          f"not of {args.dataset!r}")
    options.update(folder)
    if args.root is None and args.dataset != "folder":
        raise ConfigError(f"--root is required for dataset {args.dataset!r}")
    check_out(args.out)
    from zoo.data.build import build, format_summary

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


def _cmd_info(args) -> int:
    from zoo.data.build import format_summary, load_summary

    print(format_summary(load_summary(args.data)))
    if args.fold is not None:
        _print_fold(args.data, args.fold)
    return 0


def _cmd_list(args) -> int:
    from zoo.data.readers import available, get_reader

    for name in available():
        doc = (get_reader(name).__module__ and sys.modules[get_reader(name).__module__].__doc__ or "").strip()
        print(f"{name:20s} {doc.splitlines()[0] if doc else ''}")
    return 0


def _cmd_crops(args) -> int:
    check_out(args.out)
    from zoo.data.build import format_summary
    from zoo.data.crops import CropConfig, write_crops

    cfg = CropConfig(size=args.size, source=args.source, min_pixels=args.min_pixels)
    rename = parse_key_values(args.rename_split, "--rename-split")
    summary = write_crops(args.data, args.out, cfg, split=args.split, per_shard=args.per_shard,
                          progress=not args.quiet, rename_splits=rename)
    print(format_summary(summary))
    n = sum(s["images"] for s in summary["splits"].values())
    print(f"wrote {n} crops of {summary['options']['parent_images']} images to {os.path.abspath(args.out)}  "
          f"(wall {summary['wall_s']:.1f} s)")
    return 0


def add(sub) -> None:
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
    b.set_defaults(func=_cmd_build)
    i = dsub.add_parser("info", help="print the summary of a built data folder")
    i.add_argument("data", help="a folder written by `histozoo data build`")
    i.add_argument("--fold", type=int, default=None)
    i.set_defaults(func=_cmd_info)
    lst = dsub.add_parser("list", help="list the dataset readers")
    lst.set_defaults(func=_cmd_list)
    c = dsub.add_parser("crops", help="cut one crop per nucleus (instance box or centre point) into new record shards")
    c.add_argument("data", nargs="+", help="a folder written by `histozoo data build`; several: their crops in one "
                   "folder (each image keeps its split; typed ones must share their type names)")
    c.add_argument("--out", required=True, help="output folder for the crop shards + summary.json")
    c.add_argument("--size", type=int, default=32, help="crop side in pixels (default 32, Hu et al.; 40 for Yuan & Suh)")
    c.add_argument("--source", choices=["auto", "instances", "points"], default="auto",
                   help="crop from instance boxes or centre points (auto: instances when present, else points)")
    c.add_argument("--min-pixels", dest="min_pixels", type=int, default=1,
                   help="skip nuclei with fewer pixels (instances only)")
    c.add_argument("--split", default=None, help="only this split's shards (default: every split)")
    c.add_argument("--per-shard", type=int, default=4096, help="crops per shard (default 4096)")
    c.add_argument("--rename-split", action="append", metavar="FROM=TO", help="write the crops of split FROM as "
                   "split TO, e.g. all=train for a dataset without splits (repeatable)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_cmd_crops)
