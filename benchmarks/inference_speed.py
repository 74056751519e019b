"""Inference speed of the zoo's nuclei models side by side on the MoNuSeg test images: the forward pass and the
post-processing timed separately, as megapixels per second of the input images (issues 17 and 18: the Qu model and
HoVer-Net beside the U-Net, in one run).

    python benchmarks/inference_speed.py \\
        --model unet=pretrained:nuclei-unet-monuseg \\
        --model qu=configs/qu/no_transfer.yaml \\
        --model hovernet=configs/hovernet/monuseg.yaml \\
        --model hovernet-narrow=configs/hovernet/mixed.yaml --images 4 --json OUT.json

A model is ``NAME=URI`` (anything ``zoo.training.tracking.load`` takes: a trained model with its spec) or
``NAME=CONFIG.yaml`` (the experiment config's model, random weights, and the spec the training core would write:
``zoo.training.train.make_spec``). Both go through the one inference function: the image is resampled to the spec's
µm/px (``to_model_resolution``, timed with the forward pass), ``forward_image`` (the spec's tiling and padding) is
the forward time, and ``zoo.inference.predict(..., probabilities=...)`` (post-processing, per-instance types, the
resampling back) is the post-processing time. Speed does not depend on the weights for the forward pass, but it
does for post-processing: for a random-weight model the post-processing is timed on the GROUND TRUTH's ideal maps
for its method (``--ideal``: what a well-trained model would output; the default for configs), said in each row.
The first image of each model is an untimed warm-up (tracing). The load guard (benchmarks/_common.py) applies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import add_load_argument, start_guard  # noqa: E402  (benchmarks/_common.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODELS = ("unet=pretrained:nuclei-unet-monuseg", "qu=configs/qu/no_transfer.yaml",
                  "hovernet=configs/hovernet/monuseg.yaml", "hovernet-narrow=configs/hovernet/mixed.yaml")


def ideal_maps(spec, instances):
    """The output a perfect model of ``spec``'s channels would give for a ground-truth instance map (at the model's
    resolution): one-hot class maps of the training target (three_class / inner_contour, untyped nuclei given the
    first type) or HoVer-Net's NP / HV (/ TP, first type) maps."""
    import numpy as np
    import tensorflow as tf

    from zoo.data import targets

    ch = list(spec.channels)
    inst = np.asarray(instances, np.int32)
    fg = (inst > 0).astype(np.float32)
    out = np.zeros(inst.shape + (len(ch),), np.float32)
    if "hv:x" in ch:
        hv = targets.hv_maps(inst)
        out[..., ch.index("background")], out[..., ch.index("nucleus")] = 1 - fg, fg
        out[..., ch.index("hv:x")], out[..., ch.index("hv:y")] = hv[..., 0], hv[..., 1]
        types = [i for i, c in enumerate(ch) if c.startswith("type:")]
        if types:
            out[..., ch.index("tp:background")], out[..., types[0]] = 1 - fg, fg
        return out
    target = "inner_contour" if any(c.startswith("inner") for c in ch) else "three_class"
    y = targets.segmentation_target(tf.constant(inst), target, 2).numpy()  # 0 background, 1 inner, 2 contour
    inner = [i for i, c in enumerate(ch) if c.startswith("inner")] or [1]
    contour = ch.index("contour") if "contour" in ch else 2
    out[..., 0] = y == 0
    out[..., inner[0]] = y == 1
    out[..., contour] = y == 2
    return out


def load_model(ref: str):
    """(model, spec, trained) for ``NAME=`` a URI or an experiment config YAML (random weights)."""
    if ref.endswith((".yaml", ".yml")):
        import keras

        from zoo import models
        from zoo.training import ExperimentConfig
        from zoo.training.train import make_spec

        cfg = ExperimentConfig.load(ref if os.path.isabs(ref) else os.path.join(REPO, ref))
        keras.utils.set_random_seed(0)
        model = models.build(cfg.model, cfg.model_config)
        data = cfg.data_dir if os.path.isabs(cfg.data_dir) else os.path.join(REPO, cfg.data_dir)
        return model, make_spec(cfg.replace(data_dir=data), model), False
    from zoo.training.tracking import load

    loaded = load(ref)
    return loaded.model, loaded.spec, True


def bench(name: str, ref: str, samples, ideal: bool | None) -> dict:
    from zoo.inference import as_forward, predict
    from zoo.inference.core import resize, to_model_resolution
    from zoo.inference.forward import forward_image

    model, spec, trained = load_model(ref)
    use_ideal = (not trained) if ideal is None else ideal
    forward = as_forward(model, spec)
    t_fwd = t_post = mp = 0.0
    nuclei = 0
    for i, s in enumerate(samples):
        t0 = time.perf_counter()
        x = to_model_resolution(spec, s.image, s.mpp)
        probs = forward_image(forward, spec, x)
        t1 = time.perf_counter()
        if use_ideal:
            gt = s.instances if x.shape[:2] == s.image.shape[:2] else resize(s.instances, x.shape[:2], 0)
            probs = ideal_maps(spec, gt)
        t2 = time.perf_counter()
        pr = predict(None, spec, s.image, mpp=s.mpp, probabilities=probs)
        t3 = time.perf_counter()
        if i == 0:
            continue  # warm-up: tracing, first-call costs
        t_fwd += t1 - t0
        t_post += t3 - t2
        mp += s.image.shape[0] * s.image.shape[1] / 1e6
        nuclei += pr.num_instances
    row = {"model": name, "ref": ref, "params": int(model.count_params()), "mpp": spec.mpp,
           "postprocess": spec.postprocess.method, "post_on": "ideal maps of the ground truth" if use_ideal
           else "the model's output", "images_timed": len(samples) - 1, "megapixels": mp,
           "forward_s": t_fwd, "post_s": t_post, "forward_mp_s": mp / t_fwd, "post_mp_s": mp / t_post,
           "total_mp_s": mp / (t_fwd + t_post), "post_share": t_post / (t_fwd + t_post), "nuclei": nuclei}
    print(f"  {name:<16} {row['params']:>11,} params  {spec.mpp:.2f} um/px  forward {row['forward_mp_s']:.3f} MP/s  "
          f"{spec.postprocess.method} {row['post_mp_s']:.3f} MP/s ({row['post_on']})  total {row['total_mp_s']:.3f} "
          f"MP/s, post-processing {100 * row['post_share']:.0f} % of the time", flush=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", metavar="NAME=URI_OR_CONFIG",
                    help="repeatable; default: " + " ".join(DEFAULT_MODELS))
    ap.add_argument("--data", default=os.path.join(REPO, "build", "monuseg"), help="built MoNuSeg records")
    ap.add_argument("--images", type=int, default=4, help="test images per model (the first is an untimed warm-up)")
    ap.add_argument("--ideal", choices=("auto", "on", "off"), default="auto",
                    help="post-process the ground truth's ideal maps (auto: for random-weight configs only)")
    ap.add_argument("--json", default="", help="write the rows and the load record here")
    add_load_argument(ap)
    args = ap.parse_args(argv)
    if args.images < 2:
        ap.error("--images must be >= 2 (the first one is not timed)")
    guard = start_guard(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from zoo.data import records

    samples = list(records.read_samples(records.list_shards(args.data, "test")))[: args.images]
    print(f"{len(samples)} MoNuSeg test images {sorted({s.image.shape[:2] for s in samples})}, first untimed")
    ideal = {"auto": None, "on": True, "off": False}[args.ideal]
    rows = []
    for item in args.model or DEFAULT_MODELS:
        name, sep, ref = item.partition("=")
        if not sep or not name or not ref:
            ap.error(f"--model {item!r}: expected NAME=URI_OR_CONFIG")
        rows.append(bench(name, ref, samples, ideal))
    if args.json:
        from zoo.atomic import write_json

        write_json(args.json, {"rows": rows, "load": guard.record(), "images": len(samples)})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
