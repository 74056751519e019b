"""Export a GAN model's test process (Hu et al. IEEE JBHI 2019, Fig. 3b: Q(c|x) assigns real crops to the k
clusters; sec. IV-C: D's features as an embedding) as a versioned SavedModel that TF Serving serves.

serving.export.export is the segmentation export (per-pixel probabilities, padding, post-processing); a nucleus crop
classifier has none of that, so it has this small sibling with the same layout and conventions (``OUT/<version>/``,
``assets/histozoo.json``, atomic version folders, immutable versions). Signatures:

| signature | input key | input |
|---|---|---|
| ``serving_default`` | ``crops`` | float32 [B, S, S, 3] in [0, 1] |
| ``predict_images`` | ``crops`` | uint8 [B, S, S, 3] |
| ``predict_bytes`` | ``crop_bytes`` | string [B]: encoded PNG/JPEG crops (S x S) |

Outputs: ``probabilities`` float32 [B, k] (Q's softmax), ``cluster`` int32 [B] (argmax), ``embedding`` float32 [B, E]
(D's resblock features max-pooled to 4 x 4, concatenated) -- exactly ``model(crops)``.
"""

from __future__ import annotations

import os
import time

from serving.export import METADATA_ASSET, _decode_image, decode_same_size, new_version_dir
from zoo.errors import ConfigError


def export_cluster_model(model, out_dir: str, version: int | None = None, metadata: dict | None = None) -> str:
    """Write ``model`` (a zoo.models.gan model) as ``out_dir/<version>/`` and return that path (module docstring)."""
    import keras
    import tensorflow as tf

    from zoo.atomic import atomic_dir, write_json

    if not hasattr(model, "output_channel_names") or not hasattr(model, "embedding_dim"):
        raise ConfigError(f"model {getattr(model, 'name', model)!r} is not a zoo.models.gan model (crop -> clusters)")
    s = model.config.image_size
    version, final = new_version_dir(out_dir, version)

    def outputs(crops):
        out = model(crops, training=False)
        return {"probabilities": out["probabilities"], "embedding": out["embedding"],
                "cluster": tf.argmax(out["probabilities"], axis=-1, output_type=tf.int32)}

    def from_uint8(crops):
        return outputs(tf.cast(crops, tf.float32) / 255.0)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", outputs, [tf.TensorSpec([None, s, s, 3], tf.float32, name="crops")])
    archive.add_endpoint("predict_images", from_uint8, [tf.TensorSpec([None, s, s, 3], tf.uint8, name="crops")])
    archive.add_endpoint("predict_bytes", lambda crop_bytes: from_uint8(tf.ensure_shape(
        decode_same_size(crop_bytes, _decode_image, "crops"), [None, s, s, 3])),
        [tf.TensorSpec([None], tf.string, name="crop_bytes")])
    meta = dict(metadata or {})
    meta.update(kind="cluster_classifier", model_name=model.name, model=getattr(model, "registry_name", ""),
                config=model.get_config(), version=version, image_size=s, clusters=list(model.output_channel_names),
                embedding_dim=int(model.embedding_dim), outputs=["probabilities", "cluster", "embedding"],
                exported_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    with atomic_dir(final) as tmp:
        archive.write_out(tmp, verbose=False)
        write_json(os.path.join(tmp, "assets", METADATA_ASSET), meta, indent=2, default=str)
    return final
