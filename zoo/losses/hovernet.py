"""HoVer-Net's loss (Graham et al. 2019, section 3.3):

    L = lambda_a L_a + lambda_b L_b + lambda_c L_c + lambda_d L_d + lambda_e L_e + lambda_f L_f

- HV branch: L_a = MSE of the HV maps over every pixel; L_b = MSGE, the mean squared error of the Sobel gradients
  (d/dx of the horizontal map, d/dy of the vertical map) over the nucleus pixels M only:
  L_b = 1/m sum_{i in M} (dx p_x - dx G_x)^2 + 1/m sum_{i in M} (dy p_y - dy G_y)^2;
- NP branch: L_c = cross-entropy, L_d = Dice (background and nucleus);
- TP branch (only with ``num_types`` K >= 1): L_e = cross-entropy, L_f = Dice over the K + 1 classes.

Weights: the paper sets lambda_b = 2 and the others to 1 (the defaults here); the public reference code
(vqdang/hover_net models/hovernet/opt.py) trains with msge 1. The Sobel kernel is the reference's 5 x 5 one,
k_x(dy, dx) = dx / (dx^2 + dy^2) (k_y its transpose), zero-padded; Dice = 1 - (2 sum p t + s) / (sum p + sum t + s)
per class with s = 1e-3, summed over the classes (the reference's dice_loss); cross-entropy with probabilities
clipped to [EPSILON, 1].

Inputs (Keras ``loss(y_true, y_pred, sample_weight)``):
- ``y_true`` float32 [B, H, W, 3] = NP label (0 / 1), HV x, HV y (zoo.data.targets.hovernet_target); [B, H, W, 4]
  adds the type label 0..K (0 = background, or a nucleus of unknown type: weighted 0 in the TP terms);
- ``y_pred`` the model's concatenated output [B, H, W, 4 (+ K + 1)] (zoo.models.hovernet): NP softmax, HV, TP softmax;
- ``sample_weight`` [B, H, W] per-pixel weights (0 = ignore the pixel in every term).

Mixed supervision (issue 18, after Qu et al.'s formulation in zoo.losses.mixed): ``y_true`` [B, H, W, 5] = NP, HV x,
HV y, type code, supervised (zoo.data.targets ``mixed_hovernet_*_target``), so one batch can mix untyped instance maps
(MoNuSeg, TNBC) with typed centres (CRCHistoPhenotypes):

| pixel | NP, HV terms (L_a..L_d) | TP cross-entropy q_i (L_e) | TP Dice (L_f) |
|---|---|---|---|
| instance data, background (code 0) | yes | p_0 | yes |
| instance data, nucleus of known type k (code k) | yes | p_k | yes |
| instance data, nucleus of unknown type (code K + 1) | yes | sum_{j=1..K} p_j (merged classes) | no |
| centre data, disc of a type-k centre (code k, weight 1) | no (supervised = 0) | p_k | yes |
| centre data elsewhere (weight 0) | no | no | no |

so the TP branch learns background vs nucleus from the instance maps and the type from the discs, and NP / HV never
see the centre images (nothing is known there about a nucleus' extent).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from zoo.errors import ConfigError
from zoo.losses.pixel import EPSILON, pixel_weights, replica_share
from zoo.losses.registry import register_loss

SOBEL_SIZE = 5


def sobel_kernels(size: int = SOBEL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(k_x, k_y) float32 [size, size]: k_x[i, j] = dx / (dx^2 + dy^2) with dy = i - size // 2, dx = j - size // 2
    (0 at the centre); k_y = k_x transposed. Cross-correlation with k_x grows with f increasing along x."""
    r = np.arange(size, dtype=np.float64) - size // 2
    dy, dx = np.meshgrid(r, r, indexing="ij")
    d2 = dx * dx + dy * dy
    d2[size // 2, size // 2] = 1.0
    kx = (dx / d2).astype(np.float32)
    return kx, np.ascontiguousarray(kx.T)


def hv_gradients(hv, size: int = SOBEL_SIZE):
    """[B, H, W, 2] HV maps -> [B, H, W, 2]: d/dx of channel 0 (horizontal), d/dy of channel 1 (vertical)."""
    kx, ky = sobel_kernels(size)
    hv = tf.cast(hv, tf.float32)
    gx = tf.nn.conv2d(hv[..., 0:1], tf.constant(kx)[:, :, None, None], 1, "SAME")
    gy = tf.nn.conv2d(hv[..., 1:2], tf.constant(ky)[:, :, None, None], 1, "SAME")
    return tf.concat([gx, gy], axis=-1)


def msge(true_hv, pred_hv, focus):
    """L_b: sum over both maps of the mean squared gradient error over the pixels where ``focus`` [B, H, W] > 0
    (the nucleus pixels; focus values weight them). 0 when no pixel is in focus."""
    err = tf.square(hv_gradients(pred_hv) - hv_gradients(true_hv))
    f = tf.cast(focus, tf.float32)
    return tf.reduce_sum(err * f[..., None]) / tf.maximum(tf.reduce_sum(f), EPSILON)


def weighted_mse(true_hv, pred_hv, weights):
    """L_a: mean over the pixels (weighted; both maps) of the squared HV error."""
    err = tf.reduce_mean(tf.square(tf.cast(pred_hv, tf.float32) - tf.cast(true_hv, tf.float32)), axis=-1)
    return tf.reduce_sum(err * weights) / tf.maximum(tf.reduce_sum(weights), EPSILON)


def cross_entropy(labels, probs, weights):
    """Weighted mean of -log p(label) (probabilities clipped to [EPSILON, 1])."""
    p = tf.gather(probs, labels, axis=-1, batch_dims=3)
    ce = -tf.math.log(tf.clip_by_value(p, EPSILON, 1.0))
    return tf.reduce_sum(ce * weights) / tf.maximum(tf.reduce_sum(weights), EPSILON)


def dice(labels, probs, weights, smooth: float = 1e-3):
    """Sum over classes of 1 - (2 sum w p t + s) / (sum w p + sum w t + s), over every pixel of the batch."""
    onehot = tf.one_hot(labels, tf.shape(probs)[-1], dtype=tf.float32)
    w = weights[..., None]
    inter = tf.reduce_sum(w * probs * onehot, axis=[0, 1, 2])
    denom = tf.reduce_sum(w * probs, axis=[0, 1, 2]) + tf.reduce_sum(w * onehot, axis=[0, 1, 2])
    return tf.reduce_sum(1.0 - (2.0 * inter + smooth) / (denom + smooth))


def _number(option: str, value) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok:
        raise ConfigError(f"loss 'hovernet': {option} must be a finite number >= 0, got {value!r}")
    return float(value)


@register_loss("hovernet")
class HoVerNetLoss(keras.losses.Loss):
    """HoVer-Net's six-term loss (module docstring).

    num_types: K (0 = NP + HV only; the model then has 4 outputs, else 5 + K).
    hv_mse, hv_msge, np_ce, np_dice, tp_ce, tp_dice: lambda_a .. lambda_f (paper: 1, 2, 1, 1, 1, 1).
    smooth: the Dice smoothing constant (reference: 1e-3).
    """

    def __init__(self, num_types: int = 0, hv_mse: float = 1.0, hv_msge: float = 2.0, np_ce: float = 1.0,
                 np_dice: float = 1.0, tp_ce: float = 1.0, tp_dice: float = 1.0, smooth: float = 1e-3,
                 name: str = "hovernet", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(num_types, bool) or not isinstance(num_types, int) or num_types < 0:
            raise ConfigError(f"loss 'hovernet': num_types must be an integer >= 0, got {num_types!r}")
        self.num_types = int(num_types)
        self.hv_mse, self.hv_msge = _number("hv_mse", hv_mse), _number("hv_msge", hv_msge)
        self.np_ce, self.np_dice = _number("np_ce", np_ce), _number("np_dice", np_dice)
        self.tp_ce, self.tp_dice = _number("tp_ce", tp_ce), _number("tp_dice", tp_dice)
        self.smooth = _number("smooth", smooth)

    def _check(self, y_true, y_pred):
        c, t = y_pred.shape[-1], y_true.shape[-1]
        want = 4 + (self.num_types + 1 if self.num_types else 0)
        if c is not None and c != want:
            raise ConfigError(f"loss 'hovernet': num_types {self.num_types} needs a model with {want} outputs "
                              f"(NP 2, HV 2{', TP K + 1' if self.num_types else ''}), got {c}")
        if t == 5 and not self.num_types:
            raise ConfigError("loss 'hovernet': mixed-supervision targets (5 channels) need num_types >= 1")
        if t is not None and t < (4 if self.num_types else 3):
            raise ConfigError(f"loss 'hovernet': targets must be [B, H, W, {4 if self.num_types else 3}] "
                              f"(NP label, HV x, HV y{', type' if self.num_types else ''}), got {t} channels "
                              f"(input target 'hovernet')")

    def terms(self, y_true, y_pred, sample_weight=None) -> dict:
        """Every term (unweighted) as a dict of float32 scalars: hv_mse, hv_msge, np_ce, np_dice[, tp_ce, tp_dice]."""
        self._check(y_true, y_pred)
        y_true = tf.cast(y_true, tf.float32)
        y_pred = tf.cast(y_pred, tf.float32)
        nucleus = tf.cast(tf.round(y_true[..., 0]), tf.int32)
        w = pixel_weights(sample_weight, nucleus)
        mixed = y_true.shape[-1] == 5
        ws = w * y_true[..., 4] if mixed else w  # NP / HV weights: pixels whose extent is supervised
        out = {"hv_mse": weighted_mse(y_true[..., 1:3], y_pred[..., 2:4], ws),
               "hv_msge": msge(y_true[..., 1:3], y_pred[..., 2:4], ws * tf.cast(nucleus, tf.float32)),
               "np_ce": cross_entropy(nucleus, y_pred[..., 0:2], ws),
               "np_dice": dice(nucleus, y_pred[..., 0:2], ws, self.smooth)}
        if self.num_types:
            k = self.num_types
            probs = y_pred[..., 4:]
            if mixed:  # module docstring's table
                code = tf.clip_by_value(tf.cast(tf.round(y_true[..., 3]), tf.int32), 0, k + 1)
                types = tf.minimum(code, k)
                any_type = tf.reduce_sum(probs[..., 1:], axis=-1)
                q = tf.where(code == k + 1, any_type, tf.gather(probs, types, axis=-1, batch_dims=3))
                ce = -tf.math.log(tf.clip_by_value(q, EPSILON, 1.0))
                out["tp_ce"] = tf.reduce_sum(ce * w) / tf.maximum(tf.reduce_sum(w), EPSILON)
                known = w * tf.cast(code <= k, tf.float32)
            else:
                types = tf.clip_by_value(tf.cast(tf.round(y_true[..., 3]), tf.int32), 0, k)
                known = w * (1.0 - tf.cast((nucleus > 0) & (types == 0), tf.float32))  # unknown-type nuclei: ignored
                out["tp_ce"] = cross_entropy(types, probs, known)
            out["tp_dice"] = dice(types, probs, known, self.smooth)
        return out

    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            terms = self.terms(y_true, y_pred, sample_weight)
            return replica_share(tf.add_n([getattr(self, k) * v for k, v in terms.items()]))

    def call(self, y_true, y_pred):  # Keras' abstract hook; unused because __call__ is overridden
        raise NotImplementedError("HoVerNetLoss is used through __call__(y_true, y_pred, sample_weight)")

    def get_config(self):
        return {"name": self.name, "num_types": self.num_types, "hv_mse": self.hv_mse, "hv_msge": self.hv_msge,
                "np_ce": self.np_ce, "np_dice": self.np_dice, "tp_ce": self.tp_ce, "tp_dice": self.tp_dice,
                "smooth": self.smooth}
