"""Fixtures of the serving tests: tiny Keras segmentation models built here (no zoo.models dependency), their
exports (built once per session) and one local gRPC + REST server over loopback."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi

DIVISOR = 4


def tiny_model(num_classes: int = 2, seed: int = 0):
    """A small U-Net-ish functional model honouring the zoo contract (float [B,H,W,3] in [0,1] -> softmax
    [B,H,W,C]) whose class-1 logit rises with darkness, so H&E nuclei come out as blobs: a random conv/pool/upsample
    branch (small weights) plus a fixed 1x1 branch l0 = 30 (m - 0.6), l1 = 30 (0.4 - m), l2 = 0, m = mean RGB."""
    import keras

    keras.utils.set_random_seed(seed)
    x = keras.Input((None, None, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    d = keras.layers.MaxPooling2D(2)(h)
    d = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(d)
    d = keras.layers.MaxPooling2D(2)(d)
    u = keras.layers.UpSampling2D(4)(d)
    rnd = keras.layers.Conv2D(num_classes, 1, name="random_head")(keras.layers.Concatenate()([h, u]))
    fixed = keras.layers.Conv2D(num_classes, 1, name="darkness_head")
    logits = keras.layers.Add()([rnd, fixed(x)])
    y = keras.layers.Softmax()(logits)
    model = keras.Model(x, y, name=f"tiny{num_classes}_s{seed}")
    w = np.zeros((1, 1, 3, num_classes), np.float32)
    b = np.zeros(num_classes, np.float32)
    w[..., 0], b[0] = 10.0, -18.0
    w[..., 1], b[1] = -10.0, 12.0
    fixed.set_weights([w, b])
    return model


def reference(model, images_float: np.ndarray, divisor: int = DIVISOR) -> np.ndarray:
    """In-process probabilities of ``model`` on float images, padded (symmetric) to ``divisor`` and cropped back
    exactly as the export does."""
    b, h, w, _ = images_float.shape
    ph, pw = (-h) % divisor, (-w) % divisor
    x = np.pad(images_float, [(0, 0), (0, ph), (0, pw), (0, 0)], mode="symmetric")
    return np.asarray(model(x, training=False))[:, :h, :w, :]


def reference_instances(probs: np.ndarray) -> np.ndarray:
    """The numpy ``threshold`` post-processing (zoo.postprocess.config) of each image: components of
    P(nucleus) > 0.5, what the exports below compute in the graph."""
    from zoo.postprocess.config import nucleus_probability, threshold_components

    return np.stack([threshold_components(nucleus_probability(p), 0.5) for p in probs])


THRESHOLD = {"method": "threshold", "threshold": 0.5}


def spec_of(model, **fields):
    """The InferenceSpec the exports below use: divisor 4, in-graph ``threshold`` instances."""
    from zoo.inference import default_spec

    return default_spec(model, THRESHOLD, divisor=DIVISOR, **fields)


def he_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A uint8 [H, W, 3] image with dark purple blobs on a pink background (nuclei-like, several per tile)."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.random((h, w)), 2.0)
    dark = field > np.quantile(field, 0.8)
    img = np.empty((h, w, 3), np.float32)
    img[:] = (235, 180, 210)
    img[dark] = (70, 40, 120)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def models():
    """{"binary_v1", "binary_v2", "three"} -> tiny Keras models (min_divisor = 4)."""
    out = {"binary_v1": tiny_model(2, 0), "binary_v2": tiny_model(2, 1), "three": tiny_model(3, 2)}
    for m in out.values():
        m.min_divisor = DIVISOR
    return out


@pytest.fixture(scope="session")
def exported(models, tmp_path_factory):
    """Base paths: binary/1 (v1), binary/2 (v2), three/1."""
    from serving.export import export

    root = tmp_path_factory.mktemp("exports")
    export(models["binary_v1"], str(root / "binary"), spec=spec_of(models["binary_v1"], mpp=0.25))
    export(models["binary_v2"], str(root / "binary"), spec=spec_of(models["binary_v2"]))
    export(models["three"], str(root / "three"), spec=spec_of(models["three"]))
    return {"binary": root / "binary", "three": root / "three"}


@pytest.fixture(scope="session")
def server(exported):
    from serving.config import ModelEntry
    from serving.local_server import LocalModelServer

    entries = [ModelEntry("binary", str(exported["binary"]), (1, 2), {"stable": 1, "canary": 2}),
               ModelEntry("three", str(exported["three"]))]
    with LocalModelServer(entries, rest_port=0, max_workers=4) as srv:
        yield srv


@pytest.fixture()
def client(server):
    from serving.client import PredictClient

    with PredictClient(server.target, timeout=30, retries=0) as c:
        yield c


@pytest.fixture(scope="session")
def sv():
    """The helpers above, for test modules (pytest's importlib mode cannot import conftest by name)."""
    import types

    return types.SimpleNamespace(tiny_model=tiny_model, reference=reference, reference_instances=reference_instances,
                                 he_like=he_like, spec_of=spec_of, DIVISOR=DIVISOR)
