"""Fixtures of the pipeline tests: a small raw TNBC folder (real images of two patients) and a tiny experiment."""

from __future__ import annotations

import pytest

# two patients, two images each: TNBC fold 1 (leave patient 01 out) -> eval = 01_*, train = 02_*
SMALL_TNBC = {"01": ["01_1", "01_2"], "02": ["02_1", "02_2"]}


@pytest.fixture(scope="session")
def tnbc_small(copy_real, tmp_path_factory):
    """A raw TNBC folder (Slide_XX/ + GT_XX/) holding copies of 4 real TNBC images and their masks."""
    return copy_real("tnbc", tmp_path_factory.mktemp("tnbc_small"), SMALL_TNBC)


@pytest.fixture(scope="session")
def small_tnbc_ids() -> dict:
    return SMALL_TNBC


@pytest.fixture(scope="session")
def tiny_experiment():
    """A function returning the tiny experiment dict (a fresh copy each call)."""
    return _tiny_experiment


def _tiny_experiment(name: str = "tfx-e2e") -> dict:
    """A U-Net small enough to train two steps on CPU in seconds (fold 1 of the small TNBC folder)."""
    return {
        "name": name, "model": "unet",
        "model_config": {"num_classes": 3, "base_filters": 4, "depth": 2},
        "fold": 1,
        "input": {"patch_size": 64, "batch_size": 2, "target": "three_class", "patches_per_image": 1,
                  "shuffle_buffer": 1},
        "loss": "weighted_ce", "epochs": 1, "steps_per_epoch": 2,
        # two steps leave p ~ 1/3 per class: threshold 0.5 gives no instances, so scoring stays instant (the
        # default postprocess turns the untrained output into ~8000 specks per image, ~15 s of metrics each)
        "postprocess": {"method": "threshold", "threshold": 0.5},
        "tracking": {"enabled": True, "experiment": "histozoo-tfx-test", "register_as": "", "log_model": True},
    }


# CRCHistoPhenotypes images for the GAN pipeline: image numbers divisible by 4 are its test split (PROVENANCE.md)
SMALL_CRC = {"train": ["img1", "img2"], "test": ["img4", "img8"]}


@pytest.fixture(scope="session")
def crc_crops_small(copy_real, tmp_path_factory):
    """32 x 32 nucleus crops (histozoo data crops) of 4 real CRCHistoPhenotypes images (SMALL_CRC), built through
    the dataset's reader: typed centres (epithelial / inflammatory / fibroblast / others), split by image."""
    from zoo.data.build import build
    from zoo.data.crops import CropConfig, write_crops

    root = tmp_path_factory.mktemp("crc_small")
    copy_real("crchistophenotypes", root / "raw", [i for ids in SMALL_CRC.values() for i in ids])
    build("crchistophenotypes", str(root / "raw"), str(root / "records"), progress=False)
    write_crops(str(root / "records"), str(root / "crops"), CropConfig(size=32), progress=False)
    return root / "crops"
