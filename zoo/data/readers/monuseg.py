"""MoNuSeg 2018 (Kumar et al., IEEE TMI 2017 and 2020): 44 H&E 1000x1000 tiles, 30 train / 14 test, nucleus outlines.

Quirks handled (../shared/data/monuseg2018/PROVENANCE.md):
- Layout: ``MoNuSegTrainingData/{Tissue_Images,Annotations}``, ``MoNuSegTestData`` (images and XML side by side),
  ``derived/*/<Organ>_<image id>_label.png``; the official names with spaces (``MoNuSeg 2018 Training Data/
  Tissue Images``) and ``.tif`` images / plain ``.xml`` work too.
- **Test labels** are rasterised from the ImageScope XML (``zoo.data.polygons``): vertices are floats in 1-based
  pixel coordinates, shifted by **(-1, -1)** to 0-based (the shift with the best overlap with the derived maps:
  mean matched IoU 0.970 on the 13 training images with XML, vs 0.916 at (-0.5, -0.5), 0.883 at (0, -1), 0.838
  at (0, 0)); vertices outside the image are clipped; overlaps go to the smaller nucleus; regions with < 3
  vertices are skipped. Every test region becomes one instance: 6,697 test nuclei, per image equal to the XML's
  region count.
- **Train labels** (``train_labels="derived"``, the default when ``derived/`` exists) are the WeakNucleiSeg 16-bit
  instance maps for all 30 images, 16,958 nuclei, ids kept as given (not contiguous). ``train_labels="xml"``
  rasterises the training XMLs instead (only 13 of 30 are in ../shared/data; a missing one is an error).
- organ: training images from the derived file-name prefix (WeakNucleiSeg / Kumar et al.'s names: the "Liver"
  images carry TCGA lung cohort codes), test images from PROVENANCE's organ table; ``tissue_class`` is the index of
  the organ in ``ORGANS``. mpp: the XML's ``MicronsPerPixel`` (0 when the XML or the attribute is absent).
  source_id: the patient (first 12 characters of the TCGA barcode; all 44 images are distinct patients);
  site: the TCGA tissue-source-site code (characters 6-7). Split: the official train / test.

Organ-disjoint split (option ``holdout_organs``, e.g. ``HOLDOUT_ORGANS``; the stain-downstream protocol of issue 21,
docs/results/stain.md): the shards keep the official splits, and ``folds.json`` gets ONE fold whose ``test`` is every
image (official train and test) of the held-out organs and whose ``train`` is every other image (zoo.data.build.select,
``fold: 1`` in a training config). With HOLDOUT_ORGANS (Bladder, Brain, Colon, Stomach) that is 33 train images
(Breast 8, Kidney 9, Liver 6 + Lung 2, Prostate 8) and 11 test images (Bladder 4, Brain 2, Colon 3, Stomach 2).
"Liver" and Lung stay together on the train side: MoNuSeg's "Liver" images carry TCGA lung cohort codes. Every
organ comes from its own TCGA tissue-source sites here, so the split is site-disjoint too. The official test set
alone is site-disjoint from the official training set but shares 5 of its 7 organs (only Brain and, by name,
Lung are new).
"""

from __future__ import annotations

import glob
import os
from typing import Sequence

import numpy as np

from zoo.data.imageio import check_same_size, read_label, read_rgb
from zoo.data.polygons import imagescope_polygons, rasterize, read_imagescope_mpp, read_imagescope_xml
from zoo.data.readers import Reader, register
from zoo.data.sample import Sample
from zoo.errors import ConfigError, DataError

XML_SHIFT = (-1.0, -1.0)  # ImageScope vertex (x, y), 1-based -> 0-based pixel centre
ORGANS = ("Bladder", "Brain", "Breast", "Colon", "Kidney", "Liver", "Lung", "Prostate", "Stomach")
#: organ of each image by patient id: train as named in the derived file names, test from PROVENANCE's table
ORGAN_OF = {
    "TCGA-18-5592": "Liver", "TCGA-21-5784": "Liver", "TCGA-21-5786": "Liver", "TCGA-38-6178": "Liver",
    "TCGA-49-4488": "Liver", "TCGA-50-5931": "Liver", "TCGA-A7-A13E": "Breast", "TCGA-A7-A13F": "Breast",
    "TCGA-AR-A1AK": "Breast", "TCGA-AR-A1AS": "Breast", "TCGA-E2-A14V": "Breast", "TCGA-E2-A1B5": "Breast",
    "TCGA-AY-A8YK": "Colon", "TCGA-NH-A8F7": "Colon", "TCGA-B0-5698": "Kidney", "TCGA-B0-5710": "Kidney",
    "TCGA-B0-5711": "Kidney", "TCGA-HE-7128": "Kidney", "TCGA-HE-7129": "Kidney", "TCGA-HE-7130": "Kidney",
    "TCGA-CH-5767": "Prostate", "TCGA-G9-6336": "Prostate", "TCGA-G9-6348": "Prostate", "TCGA-G9-6356": "Prostate",
    "TCGA-G9-6362": "Prostate", "TCGA-G9-6363": "Prostate", "TCGA-DK-A2I6": "Bladder", "TCGA-G2-A2EK": "Bladder",
    "TCGA-KB-A93J": "Stomach", "TCGA-RD-A8N9": "Stomach",
    # test (MoNuSeg 2018 challenge test composition)
    "TCGA-AC-A2FO": "Breast", "TCGA-AO-A0J2": "Breast", "TCGA-2Z-A9J9": "Kidney", "TCGA-GL-6846": "Kidney",
    "TCGA-IZ-8196": "Kidney", "TCGA-44-2665": "Lung", "TCGA-69-7764": "Lung", "TCGA-EJ-A46H": "Prostate",
    "TCGA-HC-7209": "Prostate", "TCGA-CU-A0YN": "Bladder", "TCGA-ZF-A9R5": "Bladder", "TCGA-A6-6782": "Colon",
    "TCGA-FG-A4MU": "Brain", "TCGA-HT-8564": "Brain",
}
_IMAGE_EXTS = (".png", ".tif", ".tiff")
#: the held-out organs of the organ-disjoint split (option ``holdout_organs``; see the module docstring)
HOLDOUT_ORGANS = ("Bladder", "Brain", "Colon", "Stomach")


def _first_dir(root: str, names: tuple) -> str | None:
    for n in names:
        if os.path.isdir(os.path.join(root, n)):
            return os.path.join(root, n)
    return None


def _find(folder: str, stem: str, exts: tuple) -> str | None:
    for e in exts:
        p = os.path.join(folder, stem + e)
        if os.path.isfile(p):
            return p
    return None


def xml_instances(path: str, shape: tuple, shift: tuple = XML_SHIFT) -> tuple[np.ndarray, int, float]:
    """Rasterise a MoNuSeg ImageScope XML: (instance map, number of regions drawn, microns per pixel or 0)."""
    regions, mpp = read_imagescope_xml(path)
    polys, _ = imagescope_polygons(regions, shift)
    r = rasterize(polys, shape, overlap="smaller")
    return r.instances, len(polys) - len(r.skipped), mpp


@register("monuseg2018")
class MoNuSegReader(Reader):
    class_names = ()

    def __init__(self, root: str, train_labels: str = "auto", holdout_organs: Sequence[str] = (), **options):
        super().__init__(root, **options)
        bad = [o for o in holdout_organs if o not in ORGANS]
        if bad:
            raise ConfigError(f"monuseg2018: holdout_organs: unknown organ {bad[0]!r} (organs: {', '.join(ORGANS)})")
        self.holdout_organs = tuple(holdout_organs)
        if self.holdout_organs:
            self.fold_scheme = "organ-holdout"
        self.train_dir = _first_dir(self.root, ("MoNuSegTrainingData", "MoNuSeg 2018 Training Data"))
        self.test_dir = _first_dir(self.root, ("MoNuSegTestData", "MoNuSeg 2018 Test Data"))
        if self.train_dir is None and self.test_dir is None:
            raise DataError(root, "not a MoNuSeg 2018 dataset folder (no MoNuSegTrainingData or MoNuSegTestData "
                            "folder inside it)")
        self.derived = {}
        for p in glob.glob(os.path.join(self.root, "derived", "*", "*_label.png")):
            organ, rest = os.path.basename(p).split("_", 1)
            self.derived[rest[: -len("_label.png")]] = (p, organ)
        if train_labels == "auto":
            train_labels = "derived" if self.derived else "xml"
        if train_labels not in ("derived", "xml"):
            raise ConfigError(f"monuseg2018: train_labels must be 'auto', 'derived' or 'xml', got {train_labels!r}")
        self.train_labels = train_labels

    def _train_dirs(self) -> tuple[str | None, str | None]:
        if self.train_dir is None:
            return None, None
        return (_first_dir(self.train_dir, ("Tissue_Images", "Tissue Images")),
                _first_dir(self.train_dir, ("Annotations",)))

    def items(self) -> list[tuple[str, str]]:
        out = []
        img_dir, _ = self._train_dirs()
        for split, folder in (("train", img_dir), ("test", self.test_dir)):
            if folder:
                files = [p for p in glob.glob(os.path.join(folder, "TCGA-*")) if p.lower().endswith(_IMAGE_EXTS)]
                out += [(split, p) for p in sorted(files)]
        return out

    def folds(self) -> list[dict] | None:
        """With ``holdout_organs``: one fold, test = the images of those organs (both official splits), train = the
        rest (organ of each image: ORGAN_OF by patient id); None otherwise."""
        if not self.holdout_organs:
            return None
        fold = {"fold": 1, "train": [], "test": [], "held_out_organs": list(self.holdout_organs)}
        for _, path in self.items():
            image_id = os.path.splitext(os.path.basename(path))[0]
            organ = ORGAN_OF.get(image_id[:12])
            if organ is None:
                raise DataError(path, "organ unknown (patient not in zoo.data.readers.monuseg.ORGAN_OF): cannot "
                                "place it in the organ-disjoint split")
            fold["test" if organ in self.holdout_organs else "train"].append(image_id)
        return [fold]

    def read(self, item: tuple[str, str]) -> Sample:
        split, path = item
        image_id = os.path.splitext(os.path.basename(path))[0]
        image = read_rgb(path)
        patient = image_id[:12]
        xml_dir = self._train_dirs()[1] if split == "train" else self.test_dir
        xml = _find(xml_dir, image_id, (".xml.gz", ".xml")) if xml_dir else None
        organ = ORGAN_OF.get(patient, "")
        mpp = 0.0
        if split == "train" and self.train_labels == "derived":
            if image_id not in self.derived:
                raise DataError(path, f"no derived instance map for this image (expected "
                                f"derived/*/<Organ>_{image_id}_label.png)")
            label_path, organ = self.derived[image_id]
            instances = read_label(label_path)
            check_same_size(image, instances, label_path)
            if xml:
                mpp = read_imagescope_mpp(xml)
        else:
            if xml is None:
                raise DataError(path, f"no ImageScope XML for this image (expected {image_id}.xml or .xml.gz "
                                f"in {xml_dir})")
            instances, _, mpp = xml_instances(xml, image.shape[:2])
        return Sample(image=image, image_id=image_id, dataset="monuseg2018", source_id=patient, split=split,
                      instances=instances, site=image_id[5:7], organ=organ, mpp=float(mpp),
                      tissue_class=ORGANS.index(organ) if organ in ORGANS else -1, class_names=())
