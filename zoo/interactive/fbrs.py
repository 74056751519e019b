"""f-BRS (Sofiiuk et al., "f-BRS: Rethinking Backpropagating Refinement for Interactive Segmentation", CVPR 2020,
eq. 3-4; Bhatia section 3.2): at inference, re-parameterise an intermediate feature F as ``s * F + b`` (channel-wise
scale ``s`` and bias ``b``, f-BRS-B: on the backbone's output) and minimise

    L(s, b) = L_clicks(f(x; s, b)) + lambda * (||s - 1||^2 + ||b||^2)

with L-BFGS-B (scipy.optimize, as the report; f-BRS caps it at 20 function evaluations, scipy may overrun the cap by
the few evaluations of one line search). ``L_clicks`` is f-BRS's mask
loss on the clicked pixels (the click disks): the mean squared error of the object probability against 1 on positive
disks plus against 0 on negative disks, each averaged over its disks. Only the head (OCR) runs per iteration; the
backbone runs once.
"""

from __future__ import annotations

import dataclasses
import weakref

import numpy as np
import tensorflow as tf


def click_loss(prob, maps):
    """f-BRS's loss on clicked pixels: prob [..., H, W] object probability, maps [H, W, 2] positive / negative disks."""
    pos, neg = maps[..., 0], maps[..., 1]
    eps = 1e-6
    return (tf.reduce_sum((1.0 - prob) ** 2 * pos) / (tf.reduce_sum(pos) + eps)
            + tf.reduce_sum(prob ** 2 * neg) / (tf.reduce_sum(neg) + eps))


@dataclasses.dataclass
class FBRSResult:
    """Optimised ``scale`` and ``bias`` [C]; ``loss_before`` / ``loss_after`` the click loss at (1, 0) and at the
    optimum; ``evaluations`` of the objective; ``prob`` the object probability [H, W] with the optimised parameters."""

    scale: np.ndarray
    bias: np.ndarray
    loss_before: float
    loss_after: float
    evaluations: int
    prob: np.ndarray


_STEPS = weakref.WeakKeyDictionary()  # model -> its traced objective (one trace for every crop size)


def _objective(model):
    """The traced f-BRS objective of ``model``: (features, padded size, h, w, maps, params, lambda) -> (total loss,
    its gradient in params, click loss, object probability)."""
    if model not in _STEPS:
        c = model.feature_channels

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, c], tf.float32), tf.TensorSpec([2], tf.int32),
                                      tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32),
                                      tf.TensorSpec([None, None, 2], tf.float32), tf.TensorSpec([2 * c], tf.float32),
                                      tf.TensorSpec([], tf.float32)])
        def step(feats, padded, h, w, maps, params, lam):
            with tf.GradientTape() as tape:
                tape.watch(params)
                s, b = params[:c], params[c:]
                prob = model.probabilities(feats, padded, h, w, s, b, training=False)[0, ..., 1]
                clicks = click_loss(prob, maps)
                total = clicks + lam * (tf.reduce_sum((s - 1.0) ** 2) + tf.reduce_sum(b ** 2))
            return total, tape.gradient(total, params), clicks, prob

        _STEPS[model] = step
    return _STEPS[model]


def refine(model, x, maps, iterations: int = 20, lam: float = 1e-3) -> FBRSResult:
    """Run f-BRS-B on one input ``x`` [H, W, C] (a zoo.models.interactive.InteractiveNet input) whose click disks are
    ``maps`` [H, W, 2]; ``iterations`` caps L-BFGS-B's function evaluations (module doc)."""
    from scipy.optimize import minimize

    feats, padded, h, w = model.features(tf.constant(x[None], tf.float32), training=False)
    step = _objective(model)
    args = (tf.stop_gradient(feats), tf.cast(padded, tf.int32), tf.cast(h, tf.int32), tf.cast(w, tf.int32),
            tf.constant(maps, tf.float32))
    lam = tf.constant(lam, tf.float32)
    c = model.feature_channels

    def objective(p):
        total, grad, _, _ = step(*args, tf.constant(p, tf.float32), lam)
        return float(total), np.asarray(grad, np.float64)

    start = np.concatenate([np.ones(c), np.zeros(c)])
    _, _, before, _ = step(*args, tf.constant(start, tf.float32), lam)
    res = minimize(objective, start, jac=True, method="L-BFGS-B",
                   options={"maxiter": iterations, "maxfun": iterations})
    best = res.x.astype(np.float32)
    _, _, after, prob = step(*args, tf.constant(best), lam)
    return FBRSResult(best[:c], best[c:], float(before), float(after), int(res.nfev), np.asarray(prob))
