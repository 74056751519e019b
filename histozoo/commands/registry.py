"""``histozoo registry list | promote``: the MLflow model registry (zoo.training.tracking)."""

from __future__ import annotations

import json


def _cmd_promote(args) -> int:
    from zoo.training.tracking import promote

    d = promote(args.name, args.metric, margin=args.margin, version=args.version,
                greater_is_better=not args.lower_is_better)
    print(("PROMOTED: " if d["promoted"] else "kept champion: ") + d["reason"])
    print(json.dumps(d, indent=1))
    return 0


def _cmd_list(args) -> int:
    from zoo.training.tracking import _mlflow

    client = _mlflow().MlflowClient()
    aliases = {}
    for rm in client.search_registered_models(f"name='{args.name}'"):
        aliases = {str(v): a for a, v in (rm.aliases or {}).items()}
    for v in sorted(client.search_model_versions(f"name='{args.name}'"), key=lambda v: int(v.version)):
        run = client.get_run(v.run_id) if v.run_id else None
        val = run.data.metrics.get(args.metric) if (run and args.metric) else None
        print(f"v{v.version:<4} {aliases.get(str(v.version), ''):10s} run {v.run_id}"
              + (f"  {args.metric}={val:.4f}" if val is not None else "")
              + f"  {v.tags.get('promotion.decision', '')}")
    return 0


def add(sub) -> None:
    p = sub.add_parser("registry", help="MLflow model registry: list versions, promote a challenger")
    rsub = p.add_subparsers(dest="registry_cmd", required=True)
    pr = rsub.add_parser("promote", help="move the champion alias to a challenger only if it wins on a metric")
    pr.add_argument("name", help="registered model name")
    pr.add_argument("--metric", required=True, help="run metric to compare, e.g. test_aji")
    pr.add_argument("--margin", type=float, default=0.0, help="required improvement (default 0)")
    pr.add_argument("--version", help="challenger version (default: newest)")
    pr.add_argument("--lower-is-better", action="store_true")
    pr.set_defaults(func=_cmd_promote)
    ls = rsub.add_parser("list", help="list versions, aliases and a metric")
    ls.add_argument("name")
    ls.add_argument("--metric", default="")
    ls.set_defaults(func=_cmd_list)
