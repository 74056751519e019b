#!/usr/bin/env python
"""Write the small real sample that ships in the package (zoo/sample_data/monuseg) from MoNuSeg 2018.

    python scripts/make_sample.py --root ../shared/data/monuseg2018 --out zoo/sample_data/monuseg

Eight 256 x 256 crops, one per image: four from official *training* images (the fine-tuning set of
``histozoo quickstart``) and four from official *test* images (its held-out set: the shipped pretrained models never
trained on any test image). Each crop is the image's centre; its instance map is the reader's (the official XML
polygons for test images, WeakNucleiSeg's derived maps for training images), cut to the crop and renumbered 1..N.
Laid out for the folder reader (docs/own_data.md): images/, labels/ (16-bit instance PNGs), sources.csv (split,
organ, mpp), plus LICENSE.md. Deterministic: the same inputs give byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import io
import os

import numpy as np
from skimage.segmentation import relabel_sequential

TRAIN = ("TCGA-A7-A13E-01Z-00-DX1", "TCGA-B0-5698-01Z-00-DX1", "TCGA-21-5784-01Z-00-DX1", "TCGA-CH-5767-01Z-00-DX1")
TEST = ("TCGA-AC-A2FO-01A-01-TS1", "TCGA-2Z-A9J9-01A-01-TS1", "TCGA-44-2665-01B-06-BS6", "TCGA-A6-6782-01A-01-BS1")
SIZE = 256


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="../shared/data/monuseg2018")
    ap.add_argument("--out", default="zoo/sample_data/monuseg")
    args = ap.parse_args()

    from zoo.atomic import save_image
    from zoo.data.readers import get_reader

    reader = get_reader("monuseg2018")(args.root)
    wanted = {i: "train" for i in TRAIN} | {i: "test" for i in TEST}
    rows = []
    for item in reader.items():
        image_id = os.path.splitext(os.path.basename(item[1]))[0]
        if image_id not in wanted:
            continue
        s = reader.read(item)
        h, w = s.image.shape[:2]
        y, x = (h - SIZE) // 2, (w - SIZE) // 2
        img = s.image[y:y + SIZE, x:x + SIZE]
        inst = relabel_sequential(s.instances[y:y + SIZE, x:x + SIZE].astype(np.int32))[0].astype(np.uint16)
        name = f"{s.split}-{s.organ.lower()}-{image_id[:12]}"
        save_image(os.path.join(args.out, "images", name + ".png"), img)
        save_image(os.path.join(args.out, "labels", name + ".png"), inst)
        rows.append({"image": name, "source": image_id[:12], "split": s.split, "organ": s.organ,
                     "mpp": f"{s.mpp:.4f}" if s.mpp else "0.25", "nuclei": int(inst.max()),
                     "crop_yx": f"{y},{x}", "original": image_id})
    if len(rows) != len(wanted):
        raise SystemExit(f"found {len(rows)} of {len(wanted)} images under {args.root}")
    rows.sort(key=lambda r: r["image"])
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    wr.writeheader()
    wr.writerows(rows)
    with open(os.path.join(args.out, "sources.csv"), "w") as fh:
        fh.write(buf.getvalue())
    for r in rows:
        print(f"{r['image']:40s} {r['split']:5s} {r['nuclei']:4d} nuclei")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
