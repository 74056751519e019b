"""``histozoo cluster``: assign nucleus crops to clusters with a trained GAN model's Q (zoo.evaluation.cluster):
a per-nucleus cluster CSV, a contact sheet PNG of random crops per cluster, G's samples per category and, for typed
crops, purity / entropy / F-score (zoo.metrics.clustering)."""

from __future__ import annotations

import os

from histozoo.commands import check_out


def _cmd_cluster(args) -> int:
    check_out(args.out)
    from zoo.errors import ConfigError
    from zoo.evaluation.cluster import cluster_crops
    from zoo.training.tracking import load_model

    model = load_model(args.model)
    if not hasattr(model, "output_channel_names") or not hasattr(model, "sample_grid"):
        raise ConfigError(f"{args.model}: not a GAN model (infowgan_gp, yuan_suh_infogan): it does not cluster crops")
    res = cluster_crops(model, args.crops, args.out, split=args.split, per_cluster=args.per_cluster, seed=args.seed,
                        batch_size=args.batch_size, samples=args.samples, progress=not args.quiet)
    print(f"{res['n']} crops in {len(res['counts'])} clusters: " + ", ".join(
        f"{j}: {n}" for j, n in enumerate(res["counts"])))
    if len(res["by_dataset"]) > 1:
        for d, c in res["by_dataset"].items():
            print(f"  {d}: {sum(c)} crops, per cluster " + ", ".join(str(n) for n in c))
    m = res["metrics"]
    if m is not None:
        print(f"typed crops {m['typed']}: purity {m['purity']:.3f}, entropy {m['entropy']:.3f} bits, "
              f"F-score {m['f1_weighted']:.3f}, accuracy {m['accuracy']:.3f}")
    print("wrote " + ", ".join(os.path.abspath(p) for p in res["files"].values()))
    return 0


def add(sub) -> None:
    p = sub.add_parser("cluster", help="assign nucleus crops to clusters with a GAN model's Q (CSV + contact sheet)")
    p.add_argument("model", metavar="MODEL", help="a GAN model: .keras file, run folder, MLflow run id or models:/ URI")
    p.add_argument("crops", metavar="CROPS", help="a crops folder written by `histozoo data crops` (or shard paths)")
    p.add_argument("--out", required=True, help="output folder (clusters.csv, contact_sheet.png, ...)")
    p.add_argument("--split", help="only this split of the crops folder (default: every split)")
    p.add_argument("--per-cluster", dest="per_cluster", type=int, default=16,
                   help="random crops per cluster on the contact sheet (default 16)")
    p.add_argument("--samples", type=int, default=8, help="rows of generated samples (fixed z per row; 0 = none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the contact sheet's draws and the samples' z")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=256)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_cluster)
