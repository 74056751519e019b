"""Shared by the tests under tests/zoo (pytest runs with --import-mode=importlib, so test modules cannot import their
neighbours): the model harness tests/zoo/models/harness.py as the ``harness`` fixture, and ``toy_crops``, a folder of
centre-point crops of hand-drawn two-type nuclei for the GAN / clustering scripts."""

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

_HARNESS = "histozoo_tests_model_harness"


def load_harness():
    if _HARNESS not in sys.modules:
        path = pathlib.Path(__file__).parent / "models" / "harness.py"
        spec = importlib.util.spec_from_file_location(_HARNESS, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_HARNESS] = module
        spec.loader.exec_module(module)
    return sys.modules[_HARNESS]


@pytest.fixture(scope="session")
def harness():
    return load_harness()


@pytest.fixture
def toy_crops(tmp_path) -> str:
    """4 images of 48 x 48 px (2 train, 2 test), each with 6 discs of two colours = types a / b at jittered centres
    (seed 0), written as records and cut into 16-px centre crops (zoo.data.crops); returns the crops folder."""
    from zoo.data.build import DatasetWriter
    from zoo.data.crops import CropConfig, write_crops
    from zoo.data.sample import Sample

    rng = np.random.default_rng(0)
    src = str(tmp_path / "src")
    with DatasetWriter(src, ("a", "b")) as w:
        for i in range(4):
            img = np.full((48, 48, 3), 235, np.uint8)
            pts, cls = [], []
            for k in range(6):
                y, x = 8 + (k // 3) * 24 + rng.integers(0, 4), 8 + (k % 3) * 14 + rng.integers(0, 4)
                yy, xx = np.ogrid[:48, :48]
                img[(yy - y) ** 2 + (xx - x) ** 2 <= 9] = (70, 30, 120) if k % 2 else (170, 90, 150)
                pts.append((y, x))
                cls.append(1 + k % 2)
            w.add(Sample(image=img, image_id=f"img{i}", dataset="toy", source_id=f"s{i}",
                         split="test" if i % 2 else "train", points_yx=np.array(pts, np.float32),
                         point_classes=np.array(cls), class_names=("a", "b")))
        w.commit("toy", "synthetic", {})
    crops = str(tmp_path / "crops")
    write_crops(src, crops, CropConfig(size=16), progress=False)
    return crops
