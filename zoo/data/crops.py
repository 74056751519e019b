"""Single-nucleus crops for the GAN models, written as records of the same schema (zoo.data.records).

From instance maps (Hu et al. 2018, section IV.B): the nucleus's bounding box is cut out of the image with every
pixel inside the box kept as it is (neighbouring nuclei included); when its longer edge exceeds the output size the
box is rescaled (aspect kept) so that the longer edge equals it; the box is centred on a white (255, 255, 255)
canvas of the output size (offset (size - h) // 2, (size - w) // 2). The crop's instance map is the nucleus's own
mask (id 1) placed the same way; its type (0 = unknown) goes to instance_classes.

From centre points: a fixed window of the output size centred on the point at the image's native resolution: the
point's pixel (rounded) lands on pixel (size // 2, size // 2); parts outside the image are white. The crop carries the
point (in crop coordinates) and its type.

Output size: 32 x 32 by default (Hu et al.), 40 for Yuan & Suh (section 2.3) through ``CropConfig(size=40)``.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from scipy import ndimage

from zoo.data import records
from zoo.data.sample import Sample
from zoo.errors import ConfigError, DataError, ZooError

SOURCES = ("auto", "instances", "points")
WHITE = 255


@dataclasses.dataclass(frozen=True)
class CropConfig:
    """size: output side in pixels; source: "instances", "points", or "auto" (instances when the image has an
    instance map, else points); min_pixels: skip nuclei with fewer pixels (instances only)."""

    size: int = 32
    source: str = "auto"
    min_pixels: int = 1

    def __post_init__(self):
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 2:
            raise ConfigError(f"CropConfig.size: must be an int >= 2, got {self.size!r}")
        if self.source not in SOURCES:
            raise ConfigError(f"CropConfig.source: must be one of {SOURCES}, got {self.source!r}")
        if not isinstance(self.min_pixels, int) or self.min_pixels < 1:
            raise ConfigError(f"CropConfig.min_pixels: must be an int >= 1, got {self.min_pixels!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CropConfig":
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"CropConfig: unknown option(s) {unknown}")
        return cls(**d)


def _resize(arr: np.ndarray, shape: tuple, order: int) -> np.ndarray:
    from skimage.transform import resize

    out = resize(arr, shape, order=order, preserve_range=True, anti_aliasing=order > 0, mode="edge")
    return np.clip(np.rint(out), 0, np.iinfo(arr.dtype).max).astype(arr.dtype)


def _child(sample: Sample, image: np.ndarray, suffix: str, **labels) -> Sample:
    return Sample(image=image, image_id=f"{sample.image_id}/{suffix}", dataset=sample.dataset,
                  source_id=sample.source_id, split=sample.split, tissue_class=sample.tissue_class,
                  site=sample.site, organ=sample.organ, class_names=sample.class_names, **labels)


def _type_of(sample: Sample) -> dict:
    if sample.instance_ids is None:
        return {}
    return dict(zip(np.asarray(sample.instance_ids).tolist(), np.asarray(sample.instance_classes).tolist()))


def instance_crops(sample: Sample, size: int = 32, min_pixels: int = 1) -> list[Sample]:
    """One crop per nucleus of ``sample.instances`` (module doc), in increasing instance id."""
    inst = np.asarray(sample.instances)
    types = _type_of(sample)
    out = []
    for lab, sl in enumerate(ndimage.find_objects(inst), start=1):
        if sl is None:
            continue
        mask = inst[sl] == lab
        if mask.sum() < min_pixels:
            continue
        box = sample.image[sl]
        h, w = mask.shape
        mpp = sample.mpp
        if max(h, w) > size:
            s = size / max(h, w)
            nh, nw = max(1, min(size, round(h * s))), max(1, min(size, round(w * s)))
            box = _resize(box, (nh, nw), 1)
            mask = _resize(mask.astype(np.uint8), (nh, nw), 0).astype(bool)
            mpp = mpp * max(h, w) / size if mpp else 0.0
            h, w = nh, nw
        oy, ox = (size - h) // 2, (size - w) // 2
        canvas = np.full((size, size, 3), WHITE, np.uint8)
        canvas[oy:oy + h, ox:ox + w] = box
        m = np.zeros((size, size), np.int32)
        m[oy:oy + h, ox:ox + w] = mask
        t = types.get(lab, 0)
        if not t and sample.class_map is not None:
            vals = sample.class_map[sl][inst[sl] == lab]
            t = int(np.bincount(vals).argmax()) if vals.size else 0
        c = _child(sample, canvas, f"n{lab}", instances=m, instance_ids=np.array([1]),
                   instance_classes=np.array([t]))
        c.mpp = mpp
        out.append(c)
    return out


def point_crops(sample: Sample, size: int = 32) -> list[Sample]:
    """One window of ``size`` at native resolution per centre point (module doc), in point order."""
    pts = np.asarray(sample.points_yx, np.float32).reshape(-1, 2)
    cls = np.zeros(len(pts), np.int64) if sample.point_classes is None else np.asarray(sample.point_classes)
    attrs = sample.point_attrs
    pad = size
    padded = np.pad(sample.image, ((pad, pad), (pad, pad), (0, 0)), constant_values=WHITE)
    out = []
    for k, (y, x) in enumerate(pts):
        top, left = int(np.floor(y + 0.5)) - size // 2, int(np.floor(x + 0.5)) - size // 2
        # clamp so that far-away points (outside the image by more than `size`) still yield a white window
        ty, tx = min(max(top + pad, 0), padded.shape[0] - size), min(max(left + pad, 0), padded.shape[1] - size)
        crop = padded[ty:ty + size, tx:tx + size].copy()
        c = _child(sample, crop, f"p{k}", points_yx=np.array([[y - top, x - left]], np.float32),
                   point_classes=np.array([cls[k]]),
                   point_attrs=None if attrs is None else np.array([attrs[k]]))
        c.mpp = sample.mpp
        out.append(c)
    return out


def crops_from_sample(sample: Sample, config: CropConfig = CropConfig()) -> list[Sample]:
    """The nucleus crops of one image, from its instance map or its centre points (``config.source``)."""
    src = config.source
    if src == "auto":
        src = "instances" if sample.instances is not None else "points" if sample.points_yx is not None else None
        if src is None:
            return []
    if src == "instances":
        if sample.instances is None:
            raise DataError(sample.image_id, "crops from instances requested but the image has no instance map")
        return instance_crops(sample, config.size, config.min_pixels)
    if sample.points_yx is None:
        raise DataError(sample.image_id, "crops from points requested but the image has no centre points")
    return point_crops(sample, config.size)


def write_crops(source, out_dir: str, config: CropConfig = CropConfig(), split: str | None = None,
                per_shard: int = 4096, progress: bool = True, rename_splits: dict | None = None) -> dict:
    """Write the crops of every image of ``source`` into ``out_dir``: a built data dir, a shard path, or a list of
    either -- several datasets into one crops folder (Hu et al. train on the nuclei of every H&E set they have), each
    image keeping its own split; their typed images must share one list of type names (untyped ones, type 0, mix
    with any).

    Shards are named by the parent image's split (``{split}-NNNNN.tfrecord.gz``) with a ``summary.json`` like
    zoo.data.build's, so the crops load with ``zoo.data.input.dataset`` / ``records.read_samples``. Atomic: written
    into a hidden temporary folder and moved into place only when complete. Returns the summary. rename_splits:
    {parent split: crop split}, e.g. ``{"all": "train"}`` to train on a dataset that has no split of its own.
    """
    from zoo.data.build import DatasetWriter, progress_bar

    rename = {str(k): str(v) for k, v in (rename_splits or {}).items()}
    paths = []
    for src in [source] if isinstance(source, (str, os.PathLike)) else list(source):
        src = os.fspath(src)
        if os.path.isdir(src):
            paths.extend(records.list_shards(src, split))
        elif os.path.isfile(src):
            paths.append(src)
        else:
            raise DataError(src, "no such record shard or data directory")
    class_names, datasets, parents = (), [], 0
    with DatasetWriter(out_dir, per_shard=per_shard) as w:
        for sample in progress_bar(records.read_samples(paths), "crops", progress):
            parents += 1
            if sample.dataset not in datasets:
                datasets.append(sample.dataset)
            if sample.class_names and class_names and tuple(sample.class_names) != tuple(class_names):
                raise DataError(sample.image_id, f"its dataset {sample.dataset!r} names the types "
                                f"{list(sample.class_names)}, an earlier one {list(class_names)}: one crops folder "
                                f"holds one list of type names (crop typed datasets with other names apart)")
            class_names = tuple(sample.class_names) or class_names
            if sample.split in rename:
                sample = dataclasses.replace(sample, split=rename[sample.split])
            try:
                crops = crops_from_sample(sample, config)
            except ZooError:
                raise
            except Exception as e:
                raise DataError(sample.image_id, f"failed to crop ({type(e).__name__}: {e})") from None
            for c in crops:
                w.add(c)
        w.class_names = tuple(class_names)
        return w.commit(f"{'+'.join(datasets)}-crops", [os.path.abspath(p) for p in paths],
                        {"crops": config.to_dict(), "parent_images": parents})
