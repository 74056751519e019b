"""The model's contract (``InferenceSpec``) and THE inference function (``predict``).

Every consumer of a trained model goes through here: ``zoo.evaluation.evaluate``, ``serving.export`` (which writes the
spec into the SavedModel), ``serving.client`` / ``histozoo predict`` (which run ``predict`` with the served model's
probabilities), the TFX evaluator and, later, whole slides. What is served is therefore exactly what was scored.

The spec (TIAToolbox's IOConfig and StarDist's Config play the same role there) says:

- ``mpp``: the microns per pixel the model works at. An image of another known resolution is resampled to it, the
  instances are made at the model's resolution (post-processing parameters are in the model's pixels), and the outputs
  are resampled back to the image's own grid (probabilities bilinear, instances and classes nearest). 0 = unknown:
  images are used as they come.
- ``divisor``: inputs are padded at the bottom/right to a multiple of it (``zoo.models.base.pad_to_multiple``:
  symmetric reflection, white for images smaller than the padding) and the outputs cropped back.
- ``channels``: the name of each output channel (``background``, ``nucleus`` | ``interior``, ``boundary`` |
  ``inner:<type>``..., ``contour``) and ``class_names``: the nucleus type names 1..K from the records'
  ``meta/class_names`` (``()`` = untyped).
- ``stain``: the fitted stain normalizer the model was trained with (``StainNormalizer.to_json()``) or None.
- ``postprocess``: the typed :class:`zoo.postprocess.config.PostprocessConfig` (``auto`` is resolved when the spec is
  made, so the spec states the method that runs).

It is written at training time into ``<run>/checkpoints/spec.json`` (beside ``last.keras``), into the logged MLflow
model's metadata (``histozoo_spec``) and into the SavedModel (``assets/histozoo.json`` and the ``histozoo_spec``
signature). ``zoo.training.tracking.load`` is the one model loader (a ``.keras`` file, a run folder, an MLflow run
id, ``runs:/`` or ``models:/`` URI -> model + spec); its local half is :func:`load_local`.
"""

from zoo.inference.forward import (KerasForward, as_forward, forward_image, forward_tf, stain_normalizer,
                                   tile, untile)
from zoo.inference.core import LoadedModel, Prediction, load_local, predict, resample_factor, resize
from zoo.inference.spec import (MLFLOW_METADATA_KEY, MPP_TOLERANCE, SPEC_FILE, SPEC_FORMAT, SPEC_VERSION,
                                InferenceSpec, channel_names, default_spec, describe_data, model_channels,
                                model_divisor)

__all__ = ["InferenceSpec", "Prediction", "LoadedModel", "KerasForward", "predict", "forward_image", "forward_tf",
           "as_forward", "stain_normalizer", "tile", "untile", "resample_factor", "resize", "load_local",
           "channel_names", "default_spec", "describe_data", "model_channels", "model_divisor", "SPEC_FILE",
           "SPEC_FORMAT", "SPEC_VERSION", "MLFLOW_METADATA_KEY", "MPP_TOLERANCE"]
