"""``histozoo cycle``: Bhatia's annotation cycle (zoo.interactive.cycle): propose with the automatic model, correct
with the interactive model under simulated clicks, write records, retrain through the one training core, score on
MoNuSeg test; one table row per cycle. Resumable: run it again with the same ``--out``."""

from __future__ import annotations

import os

from histozoo.commands import check_out


def _cmd_cycle(args) -> int:
    check_out(args.out)
    from zoo.interactive.cycle import TABLE_CSV, CycleConfig, run_cycles

    config = CycleConfig.load(args.config)
    rows = run_cycles(config, args.out, cycles=args.cycles, progress=not args.quiet, verbose=0 if args.quiet else 2)
    print("cycle  images  clicks  dice    aji     pq      run")
    for r in rows:
        print(f"{r['cycle']:>5}  {r['images_annotated']:>6}  {r['clicks']:>6}  {r['dice']:.4f}  {r['aji']:.4f}  "
              f"{r['pq']:.4f}  {r['run_dir']}")
    print(f"table: {os.path.abspath(os.path.join(args.out, TABLE_CSV))}")
    return 0


def add(sub) -> None:
    p = sub.add_parser("cycle", help="the annotation cycle (Bhatia ch. 4): interactive labels -> retrain -> score")
    p.add_argument("--config", required=True, help="cycle config, YAML or JSON (zoo.interactive.cycle.CycleConfig)")
    p.add_argument("--out", required=True, help="output folder (table, records and runs per cycle; resumable)")
    p.add_argument("--cycles", type=int, help="run cycles 1..N only (default: all the config has)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_cycle)
