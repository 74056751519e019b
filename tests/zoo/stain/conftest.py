"""Fixtures of the stain tests: real H&E crops from the shared datasets (MoNuSeg, TNBC, CRCHistoPhenotypes; the
Kather/NCT tiles named in the issue are not in shared/data, see its README) and the benchmark's plain numpy
reference implementations."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def np_ref():
    """benchmarks/stain.py: the plain numpy implementations (one definition, shared with the benchmark)."""
    spec = importlib.util.spec_from_file_location("_bench_stain", REPO / "benchmarks" / "stain.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def tiles(shared_data):
    """Four 256x256 crops: two MoNuSeg test images (target, source), a TNBC tile and a CRCHistoPhenotypes tile."""
    from zoo.data.imageio import read_rgb

    mon = sorted((shared_data / "monuseg2018" / "MoNuSegTestData").glob("*.png"))
    tn = shared_data / "tnbc" / "TNBC_NucleiSegmentation" / "Slide_03" / "03_1.png"
    crc = shared_data / "crchistophenotypes" / "CRCHistoPhenotypes_2016_04_28" / "img4" / "img4.png"
    return {"target": read_rgb(str(mon[0]))[300:556, 300:556], "monuseg": read_rgb(str(mon[5]))[100:356, 400:656],
            "tnbc": read_rgb(str(tn))[:256, :256], "crc": read_rgb(str(crc))[:256, :256]}


@pytest.fixture(scope="session")
def blank_tiles() -> dict[str, np.ndarray]:
    """Synthetic tiles a stain method must survive: white, near-white with noise, black-free grey background,
    and background with a 3x3 speck of tissue (far below the 1% tissue rule)."""
    rng = np.random.default_rng(0)
    speck = np.full((128, 128, 3), 242, np.uint8)
    speck[60:63, 60:63] = (120, 60, 150)
    return {"white": np.full((128, 128, 3), 255, np.uint8),
            "near_white": rng.integers(228, 256, (128, 128, 3)).astype(np.uint8),
            "grey_flat": np.full((128, 128, 3), 235, np.uint8),
            "speck": speck}
