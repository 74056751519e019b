"""Synthetic images written as records of the project's one schema (zoo.data.records, through
zoo.data.build.DatasetWriter: GZIP shards + summary.json, written in a hidden folder and moved into place only when
complete), so ``histozoo train --data OUT`` trains on them like on any built dataset.

Splits (Bhatia sec. 3.2.3: an 80-20 split for training and validation): the first round(n (1 - val_fraction))
synthetic images are "train", the rest "val". With ``include_real`` (the refiner's data, S + U of Shrivastava et al.)
every synthetic image and every real input image, unlabelled, goes into the one split "all", so a segmentation config
(train_split "train") cannot pick up the unlabelled real images by mistake.

Only the real images' pixels are read (image files of ``--images``: .png .tif .tiff .jpg .jpeg .bmp); no annotation.
"""

from __future__ import annotations

import glob
import os
import time

import numpy as np

from zoo.data.build import DatasetWriter, progress_bar
from zoo.data.imageio import read_rgb
from zoo.data.sample import Sample
from zoo.errors import DataError
from zoo.synthesis.compose import synthesize
from zoo.synthesis.config import SynthesisConfig

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
DATASET = "synthetic"


def list_images(folder: str) -> list[str]:
    """Sorted image files directly inside ``folder``; DataError naming it when there are none."""
    if not os.path.isdir(folder):
        raise DataError(folder, "--images is not a folder")
    paths = sorted(p for p in glob.glob(os.path.join(folder, "*")) if p.lower().endswith(IMAGE_EXTENSIONS))
    if not paths:
        raise DataError(folder, f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return paths


def refine(refiner, image: np.ndarray) -> np.ndarray:
    """One image through a trained refiner (zoo.models.simgan.SimGANRefiner: [0, 1] in, [0, 1] out) -> uint8."""
    out = np.asarray(refiner(image[None].astype(np.float32) / 255.0, training=False))[0]
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def write_synthetic(images_dir: str, n: int, out: str, config: SynthesisConfig = SynthesisConfig(), seed: int = 0,
                    refiner=None, refiner_uri: str = "", include_real: bool = False, mpp: float = 0.0,
                    progress: bool = True) -> dict:
    """Synthesize ``n`` images from the real images in ``images_dir`` and write them (module docstring) into ``out``;
    returns the summary dict (with ``images_per_s``: synthesis + refinement + encoding + writing; reading the real
    images and TensorFlow's start-up excluded)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError("--n", f"must be a positive integer, got {n!r}")
    paths = list_images(images_dir)
    images = [read_rgb(p) for p in paths]
    names = [os.path.basename(p) for p in paths]
    n_train = int(round(n * (1.0 - config.val_fraction)))
    from zoo.synthesis.background import hematoxylin

    hematoxylin(images[0][:8, :8])  # TensorFlow's first-call start-up (~8 s) stays out of images_per_s
    t0 = time.perf_counter()
    with DatasetWriter(out, ()) as w:
        for i in progress_bar(range(n), "synth", progress):
            tile = synthesize(images, config, seed=seed, index=i, names=paths)
            image = tile.image if refiner is None else refine(refiner, tile.image)
            split = "all" if include_real else ("train" if i < n_train else "val")
            w.add(Sample(image=image, image_id=f"synthetic-{seed}-{i:05d}", dataset=DATASET,
                         source_id=f"{names[tile.source]}@{tile.corner[0]},{tile.corner[1]}", split=split,
                         instances=tile.instances, mpp=mpp))
        seconds = time.perf_counter() - t0
        if include_real:
            for path, name, image in zip(paths, names, images):
                w.add(Sample(image=image, image_id=name, dataset="real", source_id=name, split="all", mpp=mpp))
        options = {"n": n, "seed": seed, "synthesis": config.to_dict(), "refiner": refiner_uri,
                   "include_real": include_real, "real_images": names, "mpp": mpp}
        summary = w.commit(DATASET, os.path.abspath(images_dir), options)
    summary["images_per_s"] = round(n / seconds, 3) if seconds > 0 else float("inf")
    return summary
