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


def _parse_options(pairs: list[str] | None) -> dict:
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

    options = _parse_options(args.option)
    summary = build(args.dataset, args.root, args.out, per_shard=args.per_shard,
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


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="build and inspect record shards of a dataset")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    b = dsub.add_parser("build", help="read a raw dataset folder and write GZIP TFRecord shards + summary.json")
    b.add_argument("dataset", help="dataset name (see `histozoo data list`)")
    b.add_argument("--root", required=True, help="the raw dataset folder")
    b.add_argument("--out", required=True, help="output folder for shards, summary.json (and folds.json)")
    b.add_argument("--fold", type=int, default=None, help="also print the train/test images of this fold")
    b.add_argument("--per-shard", type=int, default=32, help="records per shard (default 32)")
    b.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="reader option, e.g. connectivity=4 for tnbc (repeatable)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_cmd_data_build)
    i = dsub.add_parser("info", help="print the summary of a built data folder")
    i.add_argument("data", help="a folder written by `histozoo data build`")
    i.add_argument("--fold", type=int, default=None)
    i.set_defaults(func=_cmd_data_info)
    lst = dsub.add_parser("list", help="list the dataset readers")
    lst.set_defaults(func=_cmd_data_list)


# ------------------------------------------------------------------------------------------------- main
_COMMANDS = [_add_data]


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
