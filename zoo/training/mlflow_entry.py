"""Entry point for ``mlflow run . -e train``: MLflow starts a run and exports MLFLOW_RUN_ID; ``train`` logs into it.

Empty-string parameters mean "keep the config's value" (MLproject parameters cannot be optional).
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo.training.mlflow_entry")
    p.add_argument("--config", required=True)
    for k in ("data", "epochs", "steps-per-epoch", "fold"):
        p.add_argument(f"--{k}", default="")
    a = p.parse_args(argv)
    from zoo.errors import ZooError
    from zoo.training import ExperimentConfig, train

    try:
        cfg = ExperimentConfig.load(a.config)
        changes = {}
        if a.data:
            changes["data_dir"] = a.data
        for key, val in (("epochs", a.epochs), ("steps_per_epoch", a.steps_per_epoch), ("fold", a.fold)):
            if val:
                try:
                    changes[key] = int(val)
                except ValueError:
                    from zoo.errors import ConfigError

                    raise ConfigError(f"{key}: expected an integer, got {val!r}") from None
        res = train(cfg.replace(**changes))
    except ZooError as e:
        print(f"histozoo: error: {e}", file=sys.stderr)
        return 2
    print(f"run {res.run_id}: " + ", ".join(f"{k}={v:.4f}" for k, v in res.metrics.items()
                                          if k.endswith(("_pixel_dice", "_aji", "_pq"))))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
