"""Fixtures of the data tests: real datasets built once per session, and tiny synthetic dataset folders."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image


def _build(shared_data, tmp_path_factory, dataset: str, folder: str) -> pathlib.Path:
    from zoo.data.build import build

    out = tmp_path_factory.mktemp(f"{dataset}_records")
    build(dataset, str(shared_data / folder), str(out), progress=False)
    return out


@pytest.fixture(scope="session")
def monuseg_records(shared_data, tmp_path_factory) -> pathlib.Path:
    """MoNuSeg 2018 built once per session (44 images, ~30 s on 2 cores)."""
    return _build(shared_data, tmp_path_factory, "monuseg2018", "monuseg2018")


@pytest.fixture(scope="session")
def crc_records(shared_data, tmp_path_factory) -> pathlib.Path:
    return _build(shared_data, tmp_path_factory, "crchistophenotypes", "crchistophenotypes")


@pytest.fixture(scope="session")
def bone_marrow_records(shared_data, tmp_path_factory) -> pathlib.Path:
    return _build(shared_data, tmp_path_factory, "bone_marrow", "bone_marrow_kainz2015")


def write_tnbc(root: pathlib.Path, patients=("01", "02"), per_patient: int = 2, size: int = 32,
               nuclei: int = 3, seed: int = 0) -> pathlib.Path:
    """A tiny TNBC-layout folder: Slide_XX/XX_N.png (RGBA) + GT_XX/XX_N.png (binary {0,255}) with ``nuclei``
    separate 3x3 squares per mask (so each image has exactly ``nuclei`` instances)."""
    rng = np.random.default_rng(seed)
    for p in patients:
        (root / f"Slide_{p}").mkdir(parents=True, exist_ok=True)
        (root / f"GT_{p}").mkdir(parents=True, exist_ok=True)
        for n in range(1, per_patient + 1):
            img = np.concatenate([rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                                  np.full((size, size, 1), 255, np.uint8)], axis=2)
            Image.fromarray(img, "RGBA").save(root / f"Slide_{p}" / f"{p}_{n}.png")
            mask = np.zeros((size, size), np.uint8)
            for k in range(nuclei):
                mask[2 + 6 * k: 5 + 6 * k, 2:5] = 255
            Image.fromarray(mask, "L").save(root / f"GT_{p}" / f"{p}_{n}.png")
    return root


@pytest.fixture
def tiny_tnbc(tmp_path) -> pathlib.Path:
    """2 patients x 2 images of 32x32, 3 nuclei each."""
    return write_tnbc(tmp_path / "tnbc")


@pytest.fixture
def tnbc_writer():
    """The ``write_tnbc(root, patients, per_patient, size, nuclei, seed)`` function (importlib mode cannot import
    conftest modules by name)."""
    return write_tnbc
