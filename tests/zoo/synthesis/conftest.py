"""Fixtures of the synthesis tests: small H&E-like images made in code (pink eosin background, dark purple
hematoxylin blobs), written as PNGs, for tests that need no real data."""

import numpy as np
import pytest


def he_like(size: int = 160, seed: int = 0) -> np.ndarray:
    """An RGB uint8 image: pink background with texture and ~12 dark purple discs (radius 6-9 px)."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3), np.float32)
    img[:] = (236, 170, 205)
    img += rng.normal(0, 6, img.shape)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(12):
        cy, cx, r = rng.uniform(10, size - 10), rng.uniform(10, size - 10), rng.uniform(6, 9)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[disc] = (95, 60, 140) + rng.normal(0, 5, (disc.sum(), 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session", name="he_like")
def he_like_fixture():
    """The ``he_like`` image maker (test modules cannot import this conftest under --import-mode=importlib)."""
    return he_like


@pytest.fixture(scope="session")
def real_folder(tmp_path_factory):
    """A folder of 3 H&E-like PNGs (and a .txt file that must be ignored)."""
    from zoo.atomic import save_image, write_text

    folder = tmp_path_factory.mktemp("real_images")
    for i in range(3):
        save_image(folder / f"img{i}.png", he_like(seed=i))
    write_text(folder / "notes.txt", "not an image")
    return folder
