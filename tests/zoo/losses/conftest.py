"""Shared fixtures of the loss tests."""

from __future__ import annotations

import numpy as np
import pytest


def _typed_record(folder):
    """A CoNSeP / PanNuke-style record written to ``folder``: a 64x64 image with three nuclei, each with a type
    (1, 2, 4 of the four classes a..d); returns its Sample."""
    from zoo.data import records
    from zoo.data.sample import Sample

    inst = np.zeros((64, 64), np.uint16)
    inst[4:20, 4:20], inst[30:50, 8:28], inst[10:30, 36:60] = 1, 2, 3
    rng = np.random.default_rng(0)
    sample = Sample(image=rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), image_id="typed-0", dataset="fixture",
                    source_id="s0", split="train", instances=inst, instance_ids=np.array([1, 2, 3]),
                    instance_classes=np.array([1, 2, 4]), class_names=("a", "b", "c", "d"))
    records.write_shards([sample], str(folder), "train")
    return sample


@pytest.fixture
def typed_record():
    """``typed_record(folder) -> Sample``: writes the typed fixture record into ``folder``."""
    return _typed_record


@pytest.fixture(scope="session")
def built(shared_data, tmp_path_factory):
    """MoNuSeg 2018 (untyped instance maps) and CRCHistoPhenotypes (typed centres) built into a temporary folder
    (the mixed-supervision tests of Qu's loss and HoVer-Net's)."""
    from zoo.data.build import build

    out = tmp_path_factory.mktemp("mixed_records")
    for name in ("monuseg2018", "crchistophenotypes"):
        build(name, str(shared_data / name), str(out / name), progress=False)
    return out
