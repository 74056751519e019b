"""The Segmenter: one object at a time from clicks, with the zoom-in crop (f-BRS section 3.3) and optional f-BRS
(zoo.interactive.fbrs). The contract is in zoo.interactive's docstring."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from zoo.errors import ConfigError
from zoo.interactive import maps as _maps


class Segmenter:
    """Click-conditioned segmentation of one object (zoo.interactive module docstring).

    model: a zoo.models.interactive.InteractiveNet. mpp: µm/px it works at (0 = unknown). crop_size: smallest side of
    the zoom-in crop in pixels (the training patch size). expand: the crop is the bounding box of the clicks and the
    previous mask widened this many times about its centre (f-BRS: 1.4). threshold: on the object probability.
    fbrs_iterations, fbrs_lambda: L-BFGS function evaluations and regularisation weight of f-BRS."""

    def __init__(self, model, *, mpp: float = 0.0, crop_size: int = 64, expand: float = 1.4, threshold: float = 0.5,
                 fbrs_iterations: int = 20, fbrs_lambda: float = 1e-3, source: str = "<memory>"):
        from zoo.models.interactive import InteractiveNet

        if not isinstance(model, InteractiveNet):
            raise ConfigError(f"{source}: not a click-conditioned model (interactive_hrnet), got "
                              f"{type(model).__name__}")
        if crop_size < 1 or expand < 1 or not 0 < threshold < 1:
            raise ConfigError(f"{source}: need crop_size >= 1, expand >= 1, 0 < threshold < 1")
        self.model, self.mpp, self.crop_size, self.expand = model, float(mpp), int(crop_size), float(expand)
        self.threshold, self.fbrs_iterations, self.fbrs_lambda = float(threshold), int(fbrs_iterations), fbrs_lambda
        self.source = source
        self.last_fbrs = None  # the FBRSResult of the last call with fbrs=True
        channels = model.input_channels
        # one trace for every crop size (eager Keras calls cost ~10x more per click on these CPUs)
        self._forward = tf.function(lambda x: model(x, training=False),
                                    input_signature=[tf.TensorSpec([1, None, None, channels], tf.float32)])

    # ------------------------------------------------------------------ checks and the crop
    def _check(self, image, clicks, prev_mask):
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ConfigError(f"segment: image must be uint8 H x W x 3, got {image.dtype} {image.shape}")
        if not clicks:
            raise ConfigError("segment: at least one click is needed")
        h, w = image.shape[:2]
        out = []
        for c in clicks:
            if len(c) != 3:
                raise ConfigError(f"segment: a click is (y, x, positive), got {c!r}")
            y, x, p = int(c[0]), int(c[1]), bool(c[2])
            if not (0 <= y < h and 0 <= x < w):
                raise ConfigError(f"segment: click ({y}, {x}) lies outside the {h} x {w} image")
            out.append((y, x, p))
        if prev_mask is not None:
            prev_mask = np.asarray(prev_mask)
            if prev_mask.shape != (h, w):
                raise ConfigError(f"segment: prev_mask has shape {prev_mask.shape}, the image is {h} x {w}")
            prev_mask = prev_mask.astype(bool)
        return image, out, prev_mask

    def crop_box(self, shape, clicks, prev_mask=None) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) of the zoom-in crop: the bounding box of the positive clicks and the previous mask
        (all clicks when none is positive), widened ``expand`` times, at least ``crop_size`` square, inside the
        image (shifted rather than cut where the image is large enough)."""
        pts = np.array([(y, x) for y, x, p in clicks if p] or [(y, x) for y, x, _ in clicks], float)
        lo, hi = pts.min(0), pts.max(0)
        if prev_mask is not None and prev_mask.any():
            ys, xs = np.nonzero(prev_mask)
            lo = np.minimum(lo, [ys.min(), xs.min()])
            hi = np.maximum(hi, [ys.max(), xs.max()])
        centre = (lo + hi) / 2.0
        side = np.maximum((hi - lo + 1) * self.expand, self.crop_size)
        box = []
        for axis in range(2):
            n = shape[axis]
            s = int(min(np.ceil(side[axis]), n))
            start = int(np.floor(centre[axis] - s / 2.0 + 0.5))
            start = min(max(start, 0), n - s)
            box += [start, start + s]
        return box[0], box[1], box[2], box[3]

    # ------------------------------------------------------------------ prediction
    def probabilities(self, image, clicks, prev_mask=None, fbrs: bool = False) -> np.ndarray:
        """Float32 H x W object probability (0 outside the zoom-in crop); arguments as ``segment``."""
        image, clicks, prev_mask = self._check(image, clicks, prev_mask)
        y0, y1, x0, x1 = self.crop_box(image.shape[:2], clicks, prev_mask)
        crop = image[y0:y1, x0:x1].astype(np.float32) / 255.0
        pts = np.array([(y - y0, x - x0) for y, x, _ in clicks], np.float32)
        pos = np.array([p for _, _, p in clicks], bool)
        # clicks outside the crop (far negative clicks) do not reach the network
        keep = (pts[:, 0] >= 0) & (pts[:, 0] < y1 - y0) & (pts[:, 1] >= 0) & (pts[:, 1] < x1 - x0)
        disks = _maps.click_maps(pts[keep], pos[keep], (y1 - y0, x1 - x0), self.model.config.click_radius).numpy()
        parts = [crop, disks]
        if self.model.config.use_prev_mask:
            prev = np.zeros((y1 - y0, x1 - x0, 1), np.float32) if prev_mask is None else \
                prev_mask[y0:y1, x0:x1, None].astype(np.float32)
            parts.append(prev)
        x = np.concatenate(parts, -1)
        if fbrs:
            from zoo.interactive.fbrs import refine

            self.last_fbrs = refine(self.model, x, disks, self.fbrs_iterations, self.fbrs_lambda)
            prob = self.last_fbrs.prob
        else:
            prob = np.asarray(self._forward(tf.constant(x[None], tf.float32)))[0, ..., 1]
        out = np.zeros(image.shape[:2], np.float32)
        out[y0:y1, x0:x1] = prob
        return out

    def segment(self, image, clicks, prev_mask=None, fbrs: bool = False) -> np.ndarray:
        """Bool H x W mask of the clicked object (zoo.interactive module docstring)."""
        return self.probabilities(image, clicks, prev_mask, fbrs) > self.threshold


def load(uri, **options) -> Segmenter:
    """A Segmenter around ``uri``: anything zoo.training.tracking.load accepts, or a built InteractiveNet; ``options``
    are Segmenter's keyword arguments (the mpp defaults to the model's inference spec)."""
    import keras

    if isinstance(uri, keras.Model):  # built in memory (Segmenter refuses a model that is not click-conditioned)
        return Segmenter(uri, **options)
    from zoo.training.tracking import load as load_model

    loaded = load_model(uri, default_spec=False)
    spec = loaded.spec
    options.setdefault("mpp", float(getattr(spec, "mpp", 0.0) or 0.0) if spec is not None else 0.0)
    options.setdefault("source", str(uri))
    return Segmenter(loaded.model, **options)


def tiny(seed: int = 0, **options) -> Segmenter:
    """A Segmenter around a tiny random-initialised InteractiveNet (width 4, 2 branches, stem stride 2): for tests.
    Kernels are drawn from ``np.random.default_rng(seed)`` (He-normal), so the global RNGs are left alone."""
    from zoo.models.interactive import InteractiveNet

    model = InteractiveNet({"width": 4, "branches": 2, "stem_downsample": 1})
    model.build((None, None, None, 6))
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if v.path.endswith("kernel"):
            shape = tuple(v.shape)
            fan_in = int(np.prod(shape[:-1]))
            v.assign(rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32))
    options.setdefault("crop_size", 32)
    return Segmenter(model, **options)
