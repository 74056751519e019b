#!/usr/bin/env python
"""Turn a training run into a model that ships in the package: zoo/pretrained/<name>/ (see zoo.pretrained).

    python scripts/ship_pretrained.py runs/pretrained-unet-tuned --name nuclei-unet-monuseg \\
        --evaluation runs/pretrained-unet-tuned/test_evaluation.json \\
        --baseline runs/pretrained-unet-tuned/classical_hu_otsu_test.json \\
        --card-notes configs/pretrained/nuclei_unet_monuseg.card.json

Writes model.keras (the run's weights in a freshly built, uncompiled model: no optimizer state, so a third of
the checkpoint's size), spec.json (the run's inference spec, with its tuned post-processing), card.json and
MODEL_CARD.md. The card's numbers come only from files: ``--evaluation`` (the ``histozoo evaluate`` JSON of
held-out images), the run's history.json / state.json / config.yaml, and ``--card-notes`` (a JSON of the facts a
run cannot know: the command that trained it, the commit, wall time, plateau evidence, the data licence and the
classical baseline's name) and ``--baseline`` (``zoo.evaluation.evaluate_classical`` on the same images). No metric
is typed into the card by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

KEYS = ("pixel_dice", "aji", "aji_plus", "pq", "dq", "sq", "det_f1")


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def render(card: dict) -> str:
    """MODEL_CARD.md from card.json (the one source of the card's facts)."""
    t, m, s = card["training"], card["metrics"], card["spec"]
    pp = s.get("postprocess", {})
    rows = "\n".join(f"| {k} | {_fmt(m['model'].get(k, '-'))} | {_fmt(m.get('baseline', {}).get(k, '-'))} |"
                     for k in KEYS)
    lines = [
        f"# Model card: {card['name']}", "",
        card["summary"], "",
        "## Use", "",
        "```bash", f"histozoo predict tiles/ --model pretrained:{card['name']} --out preds/",
        "```", "```python", "from zoo import models, inference",
        f"m = models.pretrained({card['name']!r})", "pred = inference.predict(m.model, m.spec, rgb_uint8, mpp=0.25)",
        "```", "",
        "## Model", "",
        f"- Architecture: `{card['model']}` {json.dumps(card['model_config'])}; {card['params']:,} parameters; "
        f"model.keras {card['size_bytes'] / 2**20:.1f} MiB (sha256 `{card['sha256'][:16]}...`).",
        f"- Inference spec: {s.get('mpp') or 'unknown'} µm/px input, output channels {', '.join(s.get('channels', []))}; "
        f"post-processing `{pp.get('method')}` {json.dumps({k: v for k, v in pp.items() if k != 'method'})} "
        f"({card.get('postprocess_note', '')}).", "",
        "## Training", "",
        f"- Data: {t['data']}. Split: {t['split']}.",
        f"- Recipe: `{t['config']}` — {t['recipe']}.",
        f"- Budget: {t['steps']:,} steps, {t['wall_min']:.1f} min of epoch wall time on {t['machine']}; {t['plateau']}.",
        f"- Code: {t['commit']}; {t['date']}. Commands:", "", "```bash", t["command"], "```", "",
        "## Held-out metrics", "",
        f"{m['images']} (never seen in training or in tuning). Mean over images; the baseline is {m['baseline_name']} "
        "on the same images.", "",
        "| metric | this model | baseline |", "|---|---|---|", rows, "",
        "## Licence of the training data", "", card["data_licence"], "",
        "## Intended use and limits", "", card["intended_use"], "", card["limits"], "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a training run folder (checkpoints/last.keras + spec.json)")
    ap.add_argument("--name", required=True)
    ap.add_argument("--evaluation", required=True, help="histozoo evaluate JSON of held-out images")
    ap.add_argument("--baseline", required=True, help="zoo.evaluation.evaluate_classical JSON on the same images")
    ap.add_argument("--card-notes", required=True, help="JSON: command, commit, date, machine, wall_min, plateau, "
                                                      "data, split, recipe, data_licence, intended_use, limits, "
                                                      "summary, baseline {name, metrics}, images, postprocess_note")
    ap.add_argument("--replace", action="store_true", help="replace a shipped model of the same name")
    ap.add_argument("--dest", default=os.path.join(os.path.dirname(__file__), "..", "zoo", "pretrained"))
    args = ap.parse_args()

    import zoo.models
    from zoo import pretrained
    from zoo.atomic import atomic_dir, write_json
    from zoo.training import ExperimentConfig
    from zoo.training.tracking import load

    loaded = load(args.run)
    cfg = ExperimentConfig.load(os.path.join(args.run, "config.yaml"))
    clean = zoo.models.build(cfg.model, cfg.model_config)
    clean(np.zeros((1, 256, 256, 3), "float32"))  # builds the variables (subclassed models build on call)
    clean.set_weights(loaded.model.get_weights())
    with open(args.evaluation) as fh:
        ev = json.load(fh)
    with open(args.card_notes) as fh:
        notes = json.load(fh)
    with open(args.baseline) as fh:
        base = json.load(fh)
    state = json.load(open(os.path.join(args.run, "checkpoints", "state.json")))
    steps = state["epochs_done"] * cfg.steps_per_epoch + state.get("steps_done", 0)
    out = os.path.join(os.path.abspath(args.dest), args.name)
    with atomic_dir(out, overwrite=args.replace) as tmp:
        model_file = os.path.join(tmp, pretrained.MODEL_FILE)
        clean.save(model_file)
        loaded.spec.save(os.path.join(tmp, pretrained.SPEC_FILE))
        card = {
            "name": args.name, "model": cfg.model, "model_config": cfg.model_config,
            "params": int(clean.count_params()), "size_bytes": os.path.getsize(model_file),
            "sha256": pretrained.sha256(model_file), "spec": loaded.spec.to_dict(),
            "summary": notes["summary"], "postprocess_note": notes.get("postprocess_note", ""),
            "training": {"data": notes["data"], "split": notes["split"], "recipe": notes["recipe"],
                         "config": notes["config"], "steps": steps, "wall_min": notes["wall_min"],
                         "machine": notes["machine"], "plateau": notes["plateau"], "commit": notes["commit"],
                         "date": notes["date"], "command": notes["command"]},
            "metrics": {"images": notes["images"], "model": {k: ev["mean"][k] for k in KEYS if k in ev["mean"]},
                        "baseline_name": notes["baseline"]["name"], "baseline": {k: base["mean"][k] for k in KEYS if k in base["mean"]}},
            "data_licence": notes["data_licence"], "intended_use": notes["intended_use"], "limits": notes["limits"],
        }
        write_json(os.path.join(tmp, pretrained.CARD_JSON), card, indent=2)
        with open(os.path.join(tmp, pretrained.CARD_MD), "w") as fh:
            fh.write(render(card))
    print(f"wrote {out} ({card['size_bytes'] / 2**20:.1f} MiB model, {card['params']:,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
