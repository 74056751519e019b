"""``histozoo slide batch --slides GLOB --model URI --out DIR``: many slides through ``zoo.slides.beam.run_batch``
(an Apache Beam pipeline: DirectRunner here, Dataflow / Flink / Spark with --beam-arg; docs/scale.md). A subcommand
of ``histozoo slide``: ``histozoo.commands.slide.add`` registers it with ``_slide_batch.add(subparsers)``."""

from __future__ import annotations

from histozoo.commands import check_out


def _cmd_batch(args) -> int:
    check_out(args.out)
    from zoo.slides.beam import run_batch

    report = run_batch(args.slides, args.model, args.out, beam_args=beam_args_of(args) or None,
                       workers=args.direct_num_workers, running_mode=args.direct_running_mode, mpp=args.mpp,
                       tile_size=args.tile_size, overlap=args.overlap, batch=args.batch, progress=not args.quiet)
    c = report["counts"]
    print(f"{len(report['slides'])} slides: {c['done']} predicted, {c['skipped']} already complete (skipped), "
          f"{c['failed']} failed -> {args.out}")
    for r in report["slides"]:
        if r["status"] == "failed":
            print(f"  failed: {r['slide']}: {r['error']}")
    return 1 if c["failed"] else 0


def add(ss) -> None:
    """Register ``batch`` on the ``histozoo slide`` subparsers ``ss``."""
    b = ss.add_parser("batch", help="many slides through an Apache Beam pipeline (idempotent: finished slides are "
                                    "skipped)",
                      description="Predict every slide into OUT/<slide name>/ (the files of `slide predict`) with an "
                      "Apache Beam pipeline: the model is loaded once per worker; slides whose summary.json is "
                      "complete are skipped, so rerunning the command does only what is missing; OUT/batch.json "
                      "lists each slide's status. Beam comes with TFX: run it through scripts/tfx_env.sh run or "
                      "the docker/tfx image where this environment lacks apache-beam.")
    b.add_argument("--slides", required=True, action="append", metavar="GLOB",
                   help="slide files or globs (quote them), or a .txt file listing one a line (repeatable)")
    b.add_argument("--model", required=True, help="a run folder, .keras file, MLflow URI (runs:/, models:/) or an "
                                                  "exported SavedModel folder (histozoo export --out)")
    b.add_argument("--out", required=True, help="output folder: one subfolder per slide, and batch.json")
    b.add_argument("--runner", default=None, help="Beam runner (default DirectRunner); the same as "
                                                  "--beam-arg=--runner=NAME")
    b.add_argument("--direct-num-workers", type=int, default=0,
                   help="DirectRunner worker processes (0 = one per CPU)")
    b.add_argument("--direct-running-mode", default="multi_processing",
                   choices=["in_memory", "multi_threading", "multi_processing"])
    b.add_argument("--beam-arg", action="append", metavar="ARG",
                   help="a Beam pipeline option, e.g. --beam-arg=--project=P (repeatable; docs/scale.md)")
    b.add_argument("--mpp", type=float, default=None, help="µm per pixel of level 0 of every slide (overrides "
                                                           "their metadata)")
    b.add_argument("--tile-size", type=int, default=None, help="tile size in model pixels")
    b.add_argument("--overlap", type=int, default=None, help="overlap between tiles in model pixels")
    b.add_argument("--batch", type=int, default=4, help="tiles per model call")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_cmd_batch)


def beam_args_of(args) -> list:
    """The --beam-arg values with --runner folded in (DirectRunner's own options come from the --direct-* flags
    unless --beam-arg names them)."""
    out = list(args.beam_arg or [])
    if args.runner:
        out.insert(0, f"--runner={args.runner}")
    return out
