"""THE record schema (DESIGN.md): one ``tf.train.Example`` per image, GZIP TFRecord shards.

Everything that writes or reads records goes through this module: ``encode`` / ``to_sample`` on the numpy
side, ``decode`` inside tf.data graphs, ``write_shards`` / ``read_samples`` / ``list_shards`` for files.

| key | type | meaning |
|---|---|---|
| image/encoded | bytes | PNG, RGB uint8 |
| image/height, image/width | int64 | pixels |
| label/instances | bytes | PNG, uint16 instance map, 0 = background (absent if unlabelled) |
| label/class_map | bytes | PNG, uint8 per-pixel class, 0 = background (optional) |
| label/instance_ids, label/instance_classes | int64 lists | class of each instance (optional) |
| label/points_yx, label/point_classes | float / int64 lists | centre annotations (optional) |
| label/point_attrs | int64 list | extra per-point values kept as given |
| image/tissue_class | int64 | image-level class, -1 if unknown |
| meta/dataset, meta/image_id, meta/source_id, meta/site, meta/organ | bytes | provenance |
| meta/mpp | float | microns per pixel, 0 if unknown |
| meta/class_names | bytes | JSON list of class names |
| meta/split | bytes | the split the reader assigned (train/val/test/all); also the shard-name prefix |
"""

from __future__ import annotations

import glob
import json
import os
from typing import Iterable, Iterator

import numpy as np

from zoo import atomic
from zoo.data.sample import Sample
from zoo.errors import DataError

SHARD_SUFFIX = ".tfrecord.gz"
COMPRESSION = "GZIP"
MAX_INSTANCE_ID = np.iinfo(np.uint16).max
#: zlib level of the PNGs inside records: 1 encodes a 1000x1000 RGB tile ~5x faster than the default (6) for ~9 %
#: more bytes (measured on MoNuSeg: 0.27 s vs 1.34 s, 1.82 MB vs 1.67 MB); decoding speed is the same
PNG_COMPRESSION = 1


def _tf():
    import tensorflow as tf  # imported lazily: readers and CLI help must not pay TF's import

    return tf


def _png(arr: np.ndarray) -> bytes:
    tf = _tf()
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return tf.io.encode_png(arr, compression=PNG_COMPRESSION).numpy()


def encode(sample: Sample) -> bytes:
    """Serialize a Sample to a ``tf.train.Example`` (bytes) in the schema above."""
    tf = _tf()
    f = tf.train.Feature
    b = lambda v: f(bytes_list=tf.train.BytesList(value=[v if isinstance(v, bytes) else str(v).encode()]))
    i = lambda v: f(int64_list=tf.train.Int64List(value=np.asarray(v, np.int64).ravel().tolist()))
    fl = lambda v: f(float_list=tf.train.FloatList(value=np.asarray(v, np.float32).ravel().tolist()))
    feat = {
        "image/encoded": b(_png(np.ascontiguousarray(sample.image, np.uint8))),
        "image/height": i([sample.height]),
        "image/width": i([sample.width]),
        "image/tissue_class": i([sample.tissue_class]),
        "meta/dataset": b(sample.dataset),
        "meta/image_id": b(sample.image_id),
        "meta/source_id": b(sample.source_id),
        "meta/site": b(sample.site),
        "meta/organ": b(sample.organ),
        "meta/split": b(sample.split),
        "meta/mpp": fl([sample.mpp]),
        "meta/class_names": b(json.dumps(list(sample.class_names))),
    }
    if sample.instances is not None:
        inst = np.asarray(sample.instances)
        if inst.size and (inst.min() < 0 or inst.max() > MAX_INSTANCE_ID):
            raise DataError(sample.image_id, f"instance ids must lie in 0..{MAX_INSTANCE_ID}, "
                            f"got {inst.min()}..{inst.max()}")
        feat["label/instances"] = b(_png(inst.astype(np.uint16)))
    if sample.class_map is not None:
        feat["label/class_map"] = b(_png(np.asarray(sample.class_map).astype(np.uint8)))
    if sample.instance_ids is not None:
        feat["label/instance_ids"] = i(sample.instance_ids)
        feat["label/instance_classes"] = i(sample.instance_classes)
    if sample.points_yx is not None:
        pts = np.asarray(sample.points_yx, np.float32).reshape(-1, 2)
        feat["label/points_yx"] = fl(pts)
        n = len(pts)
        pc = sample.point_classes if sample.point_classes is not None else np.zeros(n, np.int64)
        feat["label/point_classes"] = i(pc)
        if sample.point_attrs is not None:
            feat["label/point_attrs"] = i(sample.point_attrs)
    return tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString()


def feature_spec() -> dict:
    """The ``tf.io.parse_single_example`` spec of the schema (optional keys get empty defaults)."""
    tf = _tf()
    s = lambda default=b"": tf.io.FixedLenFeature([], tf.string, default_value=default)
    return {
        "image/encoded": s(None),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "image/tissue_class": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        "label/instances": s(),
        "label/class_map": s(),
        "label/instance_ids": tf.io.VarLenFeature(tf.int64),
        "label/instance_classes": tf.io.VarLenFeature(tf.int64),
        "label/points_yx": tf.io.VarLenFeature(tf.float32),
        "label/point_classes": tf.io.VarLenFeature(tf.int64),
        "label/point_attrs": tf.io.VarLenFeature(tf.int64),
        "meta/dataset": s(),
        "meta/image_id": s(),
        "meta/source_id": s(),
        "meta/site": s(),
        "meta/organ": s(),
        "meta/split": s(b"all"),
        "meta/mpp": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
        "meta/class_names": s(b"[]"),
    }


def decode(serialized):
    """Parse one serialized Example into a dict of tensors (graph-safe, for tf.data).

    Keys: image (H, W, 3) uint8; instances (H, W) int32 and class_map (H, W) int32, zeros when absent,
    with boolean has_instances / has_class_map; instance_ids, instance_classes, point_classes, point_attrs (int32);
    points_yx (N, 2) float32; tissue_class int32; mpp float32; the meta strings (dataset, image_id, source_id,
    site, organ, split, class_names as JSON).
    """
    tf = _tf()
    ex = tf.io.parse_single_example(serialized, feature_spec())
    image = tf.io.decode_png(ex["image/encoded"], channels=3, dtype=tf.uint8)
    h = tf.cast(ex["image/height"], tf.int32)
    w = tf.cast(ex["image/width"], tf.int32)
    image = tf.ensure_shape(tf.reshape(image, tf.stack([h, w, 3])), [None, None, 3])

    def label(key, dtype):
        raw = ex[key]
        has = tf.strings.length(raw) > 0
        arr = tf.cond(
            has,
            lambda: tf.cast(tf.io.decode_png(raw, channels=1, dtype=dtype)[:, :, 0], tf.int32),
            lambda: tf.zeros(tf.stack([h, w]), tf.int32),
        )
        return tf.ensure_shape(tf.reshape(arr, tf.stack([h, w])), [None, None]), has

    instances, has_instances = label("label/instances", tf.uint16)
    class_map, has_class_map = label("label/class_map", tf.uint8)
    dense = lambda key, dt=tf.int32: tf.cast(tf.sparse.to_dense(ex[key]), dt)
    return {
        "image": image,
        "instances": instances,
        "has_instances": has_instances,
        "class_map": class_map,
        "has_class_map": has_class_map,
        "instance_ids": dense("label/instance_ids"),
        "instance_classes": dense("label/instance_classes"),
        "points_yx": tf.reshape(dense("label/points_yx", tf.float32), [-1, 2]),
        "point_classes": dense("label/point_classes"),
        "point_attrs": dense("label/point_attrs"),
        "tissue_class": tf.cast(ex["image/tissue_class"], tf.int32),
        "mpp": ex["meta/mpp"],
        "dataset": ex["meta/dataset"],
        "image_id": ex["meta/image_id"],
        "source_id": ex["meta/source_id"],
        "site": ex["meta/site"],
        "organ": ex["meta/organ"],
        "split": ex["meta/split"],
        "class_names": ex["meta/class_names"],
    }


def to_sample(serialized: bytes) -> Sample:
    """Decode one serialized Example back into a numpy Sample (the inverse of ``encode``)."""
    tf = _tf()
    ex = tf.train.Example.FromString(serialized).features.feature
    has = lambda k: k in ex
    bval = lambda k, d="": ex[k].bytes_list.value[0].decode() if has(k) else d
    ints = lambda k: np.asarray(ex[k].int64_list.value, np.int64)
    png = lambda k, dt: tf.io.decode_png(ex[k].bytes_list.value[0], channels=1, dtype=dt).numpy()[:, :, 0]
    image = tf.io.decode_png(ex["image/encoded"].bytes_list.value[0], channels=3).numpy()
    return Sample(
        image=image,
        image_id=bval("meta/image_id"),
        dataset=bval("meta/dataset"),
        source_id=bval("meta/source_id"),
        split=bval("meta/split", "all"),
        instances=png("label/instances", tf.uint16).astype(np.int32) if has("label/instances") else None,
        class_map=png("label/class_map", tf.uint8) if has("label/class_map") else None,
        instance_ids=ints("label/instance_ids") if has("label/instance_ids") else None,
        instance_classes=ints("label/instance_classes") if has("label/instance_classes") else None,
        points_yx=np.asarray(ex["label/points_yx"].float_list.value, np.float32).reshape(-1, 2)
        if has("label/points_yx") else None,
        point_classes=ints("label/point_classes") if has("label/point_classes") else None,
        point_attrs=ints("label/point_attrs") if has("label/point_attrs") else None,
        tissue_class=int(ex["image/tissue_class"].int64_list.value[0]),
        site=bval("meta/site"),
        organ=bval("meta/organ"),
        mpp=float(ex["meta/mpp"].float_list.value[0]),
        class_names=tuple(json.loads(bval("meta/class_names", "[]"))),
    )


class ShardWriter:
    """Writes serialized Examples into ``{prefix}-{k:05d}.tfrecord.gz`` files, ``per_shard`` records each.

    Every shard is written to a hidden temporary name (``zoo.atomic.temp_sibling``) and renamed when closed, so a
    crash never leaves a partial shard under a real name. ``abort()`` deletes whatever is in progress.
    """

    def __init__(self, out_dir: str, prefix: str, per_shard: int = 64):
        self.out_dir, self.prefix, self.per_shard = out_dir, prefix, per_shard
        self.paths: list[str] = []
        self._writer = None
        self._tmp = None
        self._count = 0
        os.makedirs(out_dir, exist_ok=True)

    def write(self, record: bytes) -> None:
        tf = _tf()
        if self._writer is None:
            final = os.path.join(self.out_dir, f"{self.prefix}-{len(self.paths):05d}{SHARD_SUFFIX}")
            self._tmp = atomic.temp_sibling(final, keep_suffix=False)
            self._writer = tf.io.TFRecordWriter(self._tmp, options=COMPRESSION)
            self.paths.append(final)
        self._writer.write(record)
        self._count += 1
        if self._count == self.per_shard:
            self._finish()

    def _finish(self):
        if self._writer is not None:
            self._writer.close()
            atomic.commit(self._tmp, self.paths[-1])
            self._writer, self._tmp, self._count = None, None, 0

    def close(self) -> list[str]:
        self._finish()
        return self.paths

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            atomic.discard(self._tmp)
            self.paths.pop()
            self._writer = None


def write_shards(samples: Iterable[Sample], out_dir: str, prefix: str, per_shard: int = 64) -> list[str]:
    """Encode and write samples to GZIP shards; returns the shard paths."""
    w = ShardWriter(out_dir, prefix, per_shard)
    try:
        for s in samples:
            w.write(encode(s))
    except BaseException:
        w.abort()
        raise
    return w.close()


def list_shards(data_dir: str, split: str | None = None) -> list[str]:
    """Sorted shard paths of ``split`` (all splits when None) under a built data directory."""
    pattern = f"{split}-*{SHARD_SUFFIX}" if split else f"*{SHARD_SUFFIX}"
    paths = sorted(glob.glob(os.path.join(data_dir, pattern)))
    if not paths:
        raise DataError(data_dir, f"no record shards{' for split ' + repr(split) if split else ''} "
                        f"(expected {pattern}; build them with `histozoo data build`)")
    return paths


def iter_records(paths: Iterable[str]) -> Iterator[bytes]:
    """Yield the serialized Examples of GZIP shards, in order."""
    tf = _tf()
    for p in paths:
        try:
            for rec in tf.data.TFRecordDataset(p, compression_type=COMPRESSION).as_numpy_iterator():
                yield rec
        except tf.errors.OpError as e:
            raise DataError(p, f"unreadable record shard ({e.message.splitlines()[0]})") from None


def read_samples(paths: Iterable[str]) -> Iterator[Sample]:
    """Yield Samples from GZIP shards, in order."""
    for rec in iter_records(paths):
        yield to_sample(rec)
