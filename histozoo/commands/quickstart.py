"""``histozoo quickstart``: the README's main job on the sample that ships in the package (histozoo/quickstart.py)."""

from __future__ import annotations


def _cmd_quickstart(args) -> int:
    from histozoo.quickstart import main

    return main(args)


def add(sub) -> None:
    p = sub.add_parser("quickstart", help="the main job on the packaged sample: fine-tune the shipped nuclei model, "
                                          "score it beside the classical baseline, register in MLflow, export, serve "
                                          "over gRPC, predict (overlay, QuPath GeoJSON, CSV)")
    p.add_argument("--out", default="runs/quickstart", help="output folder (default runs/quickstart)")
    p.add_argument("--steps", type=int, default=120, help="fine-tuning steps (default 120; rounded up to whole "
                                                         "epochs of 10)")
    p.add_argument("--model", default="", help="the shipped model to start from (histozoo models list)")
    p.add_argument("--tfx", action="store_true", help="run records -> Trainer -> Evaluator -> Pusher through the "
                                                      "TFX pipeline (needs TFX: scripts/tfx_env.sh)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_quickstart)
