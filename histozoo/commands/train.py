"""``histozoo train``: the one training core (zoo.training.train), tracked in MLflow."""

from __future__ import annotations

import os

from histozoo.commands import check_out, parse_key_values


def load_experiment(args):
    """The ExperimentConfig of ``--config`` (or the defaults) with the command-line overrides applied."""
    from zoo.errors import ConfigError
    from zoo.training import ExperimentConfig

    cfg = ExperimentConfig.load(args.config) if args.config else ExperimentConfig()
    changes = {"model": args.model} if getattr(args, "model", None) else {}
    if getattr(args, "data", None):
        changes["data_dir"] = args.data
    if getattr(args, "fold", None) is not None:
        changes["fold"] = args.fold
    for k in ("epochs", "steps_per_epoch", "seed"):
        if getattr(args, k, None) is not None:
            changes[k] = getattr(args, k)
    if getattr(args, "name", None):
        changes["name"] = args.name
    if getattr(args, "register_as", None):
        changes["tracking"] = {**cfg.tracking, "enabled": True, "register_as": args.register_as}
    changes.update(parse_key_values(getattr(args, "set", None)))
    try:
        return cfg.from_dict({**cfg.to_dict(), **changes})
    except TypeError as e:
        raise ConfigError(str(e)) from None


def _cmd_train(args) -> int:
    if args.out:
        check_out(args.out)
    from zoo.training import train

    cfg = load_experiment(args)
    res = train(cfg, output_dir=args.out, resume=args.resume, tracking=False if args.no_tracking else None)
    if res.metrics:
        keys = ("pixel_dice", "pixel_jaccard", "pixel_performance", "det_f1", "aji", "aji_pooled", "pq", "dq", "sq")
        shown = {k: v for k, v in res.metrics.items() if k.split("_", 1)[1] in keys}
        print("evaluation (" + os.path.join(res.output_dir, "evaluation.json") + "): "
              + ", ".join(f"{k}={v:.4f}" for k, v in shown.items()))
    print(f"run {res.run_id or '(not tracked)'}; outputs in {os.path.abspath(res.output_dir)}"
          + (f"; registered version {res.registered_version}" if res.registered_version else ""))
    return 0


def add(sub) -> None:
    p = sub.add_parser("train", help="train a zoo model (the one training core; tracked in MLflow)")
    p.add_argument("model", nargs="?", help="registered model name (overrides the config's model)")
    p.add_argument("--data", help="a built data folder (overrides data_dir)")
    p.add_argument("--config", help="experiment config, YAML or JSON (zoo.training.ExperimentConfig)")
    p.add_argument("--fold", type=int, help="cross-validation fold (TNBC: 1..11)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps-per-epoch", dest="steps_per_epoch", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--name", help="run name")
    p.add_argument("--set", action="append", metavar="KEY=JSON", help="override a top-level config key (repeatable)")
    p.add_argument("--out", help="output folder (default runs/<name>)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    p.add_argument("--register-as", help="register the trained model under this name in the MLflow registry")
    p.set_defaults(func=_cmd_train)
