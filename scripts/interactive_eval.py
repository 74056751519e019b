"""NoC@85 / NoC@90 and mean IoU after k clicks of an interactive model on real MoNuSeg test nuclei (issue 23), with
and without f-BRS: the f-BRS protocol (zoo.interactive.simulate) drives zoo.interactive's Segmenter one nucleus at a
time, each click at the deepest point of the current error regions, up to 20 clicks.

    python scripts/interactive_eval.py --model runs/interactive-hrnet-monuseg/checkpoints/last.keras \
        --data build/monuseg --split test --max-nuclei 200 --out runs/interactive_eval.json

The nuclei are a seeded uniform sample of the split's instances (every nucleus with ``--max-nuclei 0``); the ground
truth is used only to place the simulated clicks and to score. Prints a markdown table and writes a JSON of every
figure with the command, the model, the data and the load average at start and end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

K_REPORTED = (1, 2, 3, 5, 10, 20)


def _nuclei(data_dir: str, split: str, max_nuclei: int, seed: int):
    """[(sample, instance id)] of the split: all, or a seeded uniform sample of ``max_nuclei``."""
    from zoo.data import records

    samples = [s for s in records.read_samples(records.list_shards(data_dir, split)) if s.instances is not None]
    if not samples:
        raise SystemExit(f"interactive_eval: {data_dir}: no '{split}' records with instance maps")
    pairs = [(i, int(k)) for i, s in enumerate(samples) for k in np.unique(s.instances) if k > 0]
    if max_nuclei and max_nuclei < len(pairs):
        rng = np.random.default_rng(seed)
        pairs = [pairs[j] for j in sorted(rng.choice(len(pairs), max_nuclei, replace=False))]
    return samples, pairs


def evaluate(seg, samples, pairs, fbrs: bool, max_clicks: int, progress: bool = True) -> dict:
    """Simulated sessions on every (sample, nucleus) -> NoC@85 / @90 and mean IoU after k clicks."""
    from tqdm import tqdm

    from zoo.interactive import simulate

    curves, seconds = [], 0.0
    for i, k in tqdm(pairs, desc=f"f-BRS {'on' if fbrs else 'off'}", disable=not progress):
        image, gt = samples[i].image, samples[i].instances == k
        t = time.perf_counter()
        _, ious = simulate.simulate(lambda clicks, prev: seg.segment(image, clicks, prev, fbrs=fbrs), gt, max_clicks)
        seconds += time.perf_counter() - t
        curves.append(ious)
    clicks = sum(len(c) for c in curves)
    return {"fbrs": fbrs, "nuclei": len(curves),
            "noc85": float(np.mean([simulate.noc(c, 0.85, max_clicks) for c in curves])),
            "noc90": float(np.mean([simulate.noc(c, 0.90, max_clicks) for c in curves])),
            "failed90": int(sum(simulate.noc(c, 0.90, max_clicks) == max_clicks and max(c, default=0) < 0.90
                                for c in curves)),
            "miou_at": {str(k): simulate.mean_iou_at(curves, k) for k in K_REPORTED if k <= max_clicks},
            "seconds_per_click": seconds / max(clicks, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="an interactive_hrnet model (anything zoo.interactive.load takes)")
    p.add_argument("--data", default="build/monuseg", help="a built data folder (histozoo data build)")
    p.add_argument("--split", default="test")
    p.add_argument("--max-nuclei", type=int, default=200, help="seeded uniform sample of nuclei (0 = all)")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--crop-size", type=int, default=64, help="smallest zoom-in crop (the training patch size)")
    p.add_argument("--fbrs", choices=("both", "off", "on"), default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="write the figures as JSON here")
    a = p.parse_args(argv)

    from zoo import interactive
    from zoo import atomic

    load_start = os.getloadavg()
    seg = interactive.load(a.model, crop_size=a.crop_size)
    samples, pairs = _nuclei(a.data, a.split, a.max_nuclei, a.seed)
    mpps = {round(float(s.mpp), 3) for s in samples if s.mpp}
    if seg.mpp and mpps and any(abs(m / seg.mpp - 1) > 0.1 for m in mpps):
        print(f"interactive_eval: note: images at {sorted(mpps)} um/px, the model works at {seg.mpp:.3f}",
              file=sys.stderr)
    modes = {"both": (False, True), "off": (False,), "on": (True,)}[a.fbrs]
    rows = [evaluate(seg, samples, pairs, m, a.max_clicks) for m in modes]
    result = {"command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
              "model": str(a.model), "data": a.data, "split": a.split, "images": len({i for i, _ in pairs}),
              "max_clicks": a.max_clicks, "crop_size": a.crop_size, "seed": a.seed,
              "load_average": {"start": load_start[0], "end": os.getloadavg()[0]}, "rows": rows}
    ks = [k for k in K_REPORTED if k <= a.max_clicks]
    print("| f-BRS | nuclei | NoC@85 | NoC@90 | " + " | ".join(f"mIoU@{k}" for k in ks) + " | s / click |")
    print("|---|---|---|---|" + "---|" * len(ks) + "---|")
    for r in rows:
        print(f"| {'on' if r['fbrs'] else 'off'} | {r['nuclei']} | {r['noc85']:.2f} | {r['noc90']:.2f} | "
              + " | ".join(f"{r['miou_at'][str(k)]:.3f}" for k in ks) + f" | {r['seconds_per_click']:.3f} |")
    if a.out:
        atomic.write_json(a.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
