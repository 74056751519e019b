"""``histozoo synth``: Bhatia's synthetic H&E images with exact instance maps (zoo.synthesis), optionally refined by a
trained SimGAN refiner, written as records (``histozoo train --data OUT`` trains on them)."""

from __future__ import annotations

import os

from histozoo.commands import check_out, parse_key_values


def synthesize_records(images: str, n: int, out: str, options: dict | None = None, seed: int = 0,
                       refiner: str = "", sizes_from: str = "", sizes_split: str = "train",
                       include_real: bool = False, mpp: float = 0.0, progress: bool = True, log=print) -> dict:
    """What ``histozoo synth`` does, as one function (the CLI and the TFX step pipelines.components.synth_gen call
    it): SynthesisConfig from ``options`` (sizes measured from ``sizes_from`` when given), the optional refiner
    loaded from its URI, then zoo.synthesis.dataset.write_synthetic into ``out``; returns its summary dict."""
    from zoo.errors import ConfigError
    from zoo.synthesis import SynthesisConfig, size_ranges_from_records
    from zoo.synthesis.dataset import write_synthetic

    config = SynthesisConfig.from_dict(dict(options or {}))
    if sizes_from:
        stats = size_ranges_from_records(sizes_from, sizes_split)
        config = stats.apply(config)
        log(f"nucleus sizes from {sizes_from} ({stats.nuclei} nuclei in {stats.images} images): radius "
            f"{config.radius_min}..{config.radius_max} px, {config.nuclei_min}..{config.nuclei_max} per tile")
    model = None
    if refiner:
        from zoo.training.tracking import load_model

        model = load_model(refiner)
        if getattr(model, "registry_name", "") != "simgan_refiner":
            raise ConfigError(f"{refiner}: not a SimGAN refiner (model simgan_refiner)")
    return write_synthetic(images, n, out, config, seed=seed, refiner=model, refiner_uri=refiner or "",
                           include_real=include_real, mpp=mpp, progress=progress)


def _cmd_synth(args) -> int:
    check_out(args.out)
    from zoo.data.build import format_summary

    summary = synthesize_records(args.images, args.n, args.out, parse_key_values(args.option), seed=args.seed,
                                 refiner=args.refiner or "", sizes_from=args.sizes_from or "",
                                 sizes_split=args.sizes_split, include_real=args.include_real, mpp=args.mpp,
                                 progress=not args.quiet)
    print(format_summary(summary))
    print(f"{args.n} synthetic images at {summary['images_per_s']:.2f} images/s; wrote {os.path.abspath(args.out)}")
    return 0


def add(sub) -> None:
    p = sub.add_parser("synth", help="synthetic H&E images with exact instance maps (Bhatia ch. 3), as records")
    p.add_argument("--images", required=True, help="folder of real unlabelled images (only their pixels are read)")
    p.add_argument("--n", type=int, default=100, help="number of synthetic images (default 100)")
    p.add_argument("--out", required=True, help="output folder (record shards + summary.json)")
    p.add_argument("--refiner", help="a trained simgan_refiner (.keras file, run folder, MLflow run id, models:/ URI)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a zoo.synthesis.SynthesisConfig option (repeatable), e.g. tile_size=400")
    p.add_argument("--sizes-from", dest="sizes_from", metavar="DATA_DIR",
                   help="measure nucleus radius / count ranges from a built dataset's instance maps")
    p.add_argument("--sizes-split", dest="sizes_split", default="train")
    p.add_argument("--include-real", dest="include_real", action="store_true",
                   help="also write the real images, unlabelled, and put everything in split 'all' (refiner data)")
    p.add_argument("--mpp", type=float, default=0.0, help="microns per pixel of the real images (0 = unknown)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)
