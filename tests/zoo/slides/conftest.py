"""Fixtures for the slide tests: a mosaic of real MoNuSeg and TNBC tiles (through ``shared_data``) beside a white
background band, written as a pyramidal OME-TIFF and as an SVS-like TIFF with tifffile; and a tiny deterministic
nucleus model (one fixed 5x5 convolution: dark red+green = hematoxylin-rich = nucleus, then softmax) saved as a
.keras file with its spec.json, so the one loader and the CLI read it like a trained model."""

from __future__ import annotations

import numpy as np
import pytest

MPP = 0.25          # the mosaic's µm/px (MoNuSeg and TNBC are 40x scans, about 0.25 µm/px)
CROP = 320          # each real tile is cropped to CROP x CROP
WHITE = 512         # width of the white (no tissue) band on the right


def tiny_model():
    """Keras model, uint8-normalised RGB [0, 1] -> (P(background), P(nucleus)); logit = 10 * (0.5 - mean(R, G))
    averaged over 5x5 pixels. Its receptive field is 5 pixels, so a tile's instances away from its cut edges are
    exactly the whole image's."""
    import keras

    inp = keras.Input((None, None, 3))
    conv = keras.layers.Conv2D(2, 5, padding="same", name="darkness")
    model = keras.Model(inp, keras.layers.Softmax()(conv(inp)), name="tiny_darkness")
    k = np.zeros((5, 5, 3, 2), np.float32)
    k[:, :, 0, 1] = k[:, :, 1, 1] = -10.0 / 25
    conv.set_weights([k, np.array([0.0, 5.0], np.float32)])
    return model


def tiny_spec(mpp: float = MPP, **kw):
    from zoo.inference import InferenceSpec

    kw.setdefault("postprocess", {"method": "dynamics_watershed", "min_size": 20})
    return InferenceSpec(channels=("background", "nucleus"), mpp=mpp, divisor=1, tile_size=256, tile_overlap=32,
                         model="tiny_darkness", **kw)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A folder with model.keras + spec.json (what ``zoo.training.tracking.load`` reads)."""
    d = tmp_path_factory.mktemp("tiny_model")
    tiny_model().save(str(d / "model.keras"))
    tiny_spec().save(str(d / "spec.json"))
    return d


@pytest.fixture(scope="session")
def loaded(model_dir):
    from zoo.training.tracking import load

    return load(str(model_dir / "model.keras"))


@pytest.fixture(scope="session")
def mosaic(shared_data) -> np.ndarray:
    """(2 * CROP, 2 * CROP + WHITE, 3) uint8: MoNuSeg test images 1-2 over TNBC slides 01 and 02, white on the
    right."""
    from zoo.data.imageio import read_rgb

    mon = sorted((shared_data / "monuseg2018" / "MoNuSegTestData").glob("*.png"))[:2]
    tnbc = [shared_data / "tnbc" / "TNBC_NucleiSegmentation" / s / f for s, f in
            (("Slide_01", "01_1.png"), ("Slide_02", "02_1.png"))]
    tiles = [read_rgb(str(p))[:CROP, :CROP] for p in [*mon, *tnbc]]
    out = np.full((2 * CROP, 2 * CROP + WHITE, 3), 255, np.uint8)
    out[:, :2 * CROP] = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)
    return out


@pytest.fixture(scope="session")
def slides(mosaic, tmp_path_factory) -> dict:
    """{"ome": path, "svs": path} of the mosaic written as pyramids (2 levels: 1x, 2x) with MPP in the metadata."""
    from zoo.slides import write_pyramid

    d = tmp_path_factory.mktemp("slides")
    return {f: write_pyramid(str(d / f"mosaic.{'ome.tif' if f == 'ome' else 'svs'}"), mosaic, MPP, f, tile=128,
                             min_side=160) for f in ("ome", "svs")}
