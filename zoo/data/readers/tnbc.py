"""TNBC (Naylor et al. 2018/2019): 50 H&E 512x512 tiles from 11 patients, binary nucleus masks.

Quirks handled (../shared/data/tnbc/PROVENANCE.md): 47 RGBA + 3 RGB slides (alpha dropped); masks are binary
{0, 255}, so instances are connected components, **8-connected by default** (4,028 nuclei; 4,056 with
``connectivity=4``; the paper reports ~4,022); patient id from the ``Slide_XX`` folder. There is no official
split: every image gets split "all", and ``folds()`` gives Naylor et al.'s 11 leave-one-patient-out folds.
"""

from __future__ import annotations

import glob
import os

import numpy as np
from scipy import ndimage

from zoo.data.imageio import check_same_size, read_label, read_rgb
from zoo.data.readers import Reader, register
from zoo.data.sample import Sample
from zoo.errors import ConfigError, DataError


def binary_to_instances(mask: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """Label the connected components of ``mask > 0`` (4- or 8-connected) as instances 1..N."""
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels, _ = ndimage.label(mask > 0, structure=structure)
    return labels.astype(np.int32)


@register("tnbc")
class TNBCReader(Reader):
    class_names = ()

    def __init__(self, root: str, connectivity: int = 8, **options):
        # accept either the dataset folder or the TNBC_NucleiSegmentation folder inside it
        if os.path.isdir(os.path.join(root, "TNBC_NucleiSegmentation")):
            root = os.path.join(root, "TNBC_NucleiSegmentation")
        super().__init__(root, **options)
        if not glob.glob(os.path.join(self.root, "Slide_*")):
            raise DataError(root, "not a TNBC dataset folder (no Slide_XX folders inside it)")
        if connectivity not in (4, 8):
            raise ConfigError(f"dataset 'tnbc': option 'connectivity' must be 4 or 8, got {connectivity!r}")
        self.connectivity = int(connectivity)

    def items(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.root, "Slide_*", "*.png")))

    def read(self, path: str) -> Sample:
        slide_dir = os.path.basename(os.path.dirname(path))
        patient = slide_dir.split("_", 1)[1]
        gt = os.path.join(self.root, f"GT_{patient}", os.path.basename(path))
        if not os.path.isfile(gt):
            raise DataError(path, f"no mask for this image (expected {gt})")
        image = read_rgb(path)
        mask = read_label(gt)
        check_same_size(image, mask, gt)
        stem = os.path.splitext(os.path.basename(path))[0]
        return Sample(image=image, image_id=stem, dataset="tnbc", source_id=patient, split="all",
                      instances=binary_to_instances(mask, self.connectivity), site="", organ="Breast",
                      mpp=0.0, class_names=())

    def folds(self) -> list[dict]:
        ids = [os.path.splitext(os.path.basename(p))[0] for p in self.items()]
        patients = sorted({i.split("_")[0] for i in ids})
        return [{"fold": k + 1, "test_source": pat,
                 "test": [i for i in ids if i.split("_")[0] == pat],
                 "train": [i for i in ids if i.split("_")[0] != pat]}
                for k, pat in enumerate(patients)]
