"""The tf.data input layer: records -> (augmented patches, per-pixel targets, per-pixel loss weights).

``dataset(source, config, split, fold)`` is the one entry point (the training core, hence the CLI, MLflow and the TFX
Trainer). Evaluation does not come through here: it runs whole images through THE inference function
(``zoo.inference.predict``), exactly as a served model does.

Training yields ``(x, y, w)`` batches ready for ``keras.Model.fit(ds)`` with per-pixel sample
weights: x float32 [B, P, P, 3] in [0, 1]; y int32 [B, P, P] class indices (zoo.data.targets for each target);
w float32 [B, P, P] loss weights (ones for ``weight_map="none"``, except 0 where a pixel is to be ignored). With
``types="extra"`` y and w are dicts {"target": ..., "types": ...} (per-pixel nucleus type, 0 = background or unknown,
unknown-type nucleus pixels weighted 0 in "types") for a two-headed model whose outputs are named so.

The training graph, per image: decode (records.decode) -> optional resampling to ``mpp`` -> cache -> image shuffle ->
``patches_per_image`` patch draws, each with its own stateless seed -> one coordinate map per patch (flip, rot90,
affine, elastic: zoo.data.augment) through which the image (bilinear) and the instance map (nearest) are both read ->
targets and weight maps from the WARPED instance map (so they stay aligned) -> photometric jitter of the image only ->
patch shuffle -> batch -> prefetch. Patch centres are uniform over the image (the patch lies inside the image
when the image is large enough; beyond its edges pixels are mirrored). Reproducible: the same seed gives the same
batches in every run; successive passes (epochs) over one dataset object draw new patches and augmentations.

``epochs(source, config, steps_per_epoch, first_epoch=...)`` is the stream the training core fits on: epoch e is
``steps_per_epoch`` batches whose every random choice (image order, patch positions, augmentation, patch shuffle)
derives from (seed, e) and the step within the epoch alone, never from what an earlier epoch read. A run resumed at
epoch e (or at step s of it, ``skip``) therefore reads exactly the batches the uninterrupted run read.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import tensorflow as tf

from zoo.data import augment, records, targets
from zoo.errors import ConfigError, DataError

AUTOTUNE = tf.data.AUTOTUNE
TYPE_MODES = ("none", "extra", "merged")
_TYPE_SHIFT = 256  # instance id and nucleus type travel packed in one int32 label: id * 256 + type
IMAGE_TARGETS = ("tissue_class",)  # image-level targets: y int32 per patch, w 1.0 (no instance maps needed)
#: Image-level tissue classes (target tissue_class; the colorization head, Yuan & Suh sec. 3.1): the MoNuSeg organ
#: (records' tissue_class = the reader's ORGANS index, named from the TCGA code as PROVENANCE gives it), then the
#: dataset of origin of the other datasets (TNBC breast, CRCHistoPhenotypes colon, bone marrow).
ORIGIN_DATASETS = ("tnbc", "crchistophenotypes", "bone_marrow")


def tissue_classes() -> tuple:
    """The names of the ``tissue_class`` target's classes, in index order."""
    from zoo.data.readers.monuseg import ORGANS

    return tuple(f"monuseg_{o.lower()}" for o in ORGANS) + ("tnbc_breast", "crc_colon", "bone_marrow")


def _tissue_class(ex: dict):
    """The ``tissue_class`` target of a decoded record (``tissue_classes``): a MoNuSeg record's organ index, another
    dataset's index in ORIGIN_DATASETS after the organs, else -1 (left out of the class loss)."""
    from zoo.data.readers.monuseg import ORGANS

    origin = tf.where(tf.equal(ex["dataset"], tf.constant(ORIGIN_DATASETS)))[:, 0]
    other = tf.cond(tf.size(origin) > 0, lambda: tf.cast(origin[0], tf.int32) + len(ORGANS), lambda: tf.constant(-1))
    return tf.where(tf.equal(ex["dataset"], "monuseg2018"), ex["tissue_class"], other)


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """Everything the input layer does, as one validated, serialisable value.

    patch_size: side P of the square training patches (pixels, after resampling).
    batch_size: training batch size.
    target: "binary" | "three_class" | "inner_contour" | "points" | "hovernet" (zoo.data.targets; "hovernet": y is
        the float32 [P, P, 3 (+1)] stack NP / HV x / HV y (/ type with types="merged"), w the valid-pixel mask).
    boundary_width: thickness in pixels of the boundary / contour band (three_class, inner_contour).
    types: "none"; "extra" (y, w become dicts with a per-pixel "types" map); "merged" (inner_contour: Qu et al.'s
        typed inner classes 1..K and contour K+1; hovernet: the type channel of HoVer-Net's TP branch).
    num_types: K, the number of nucleus types (0 = untyped; for "points", 0 labels every disc 1).
    weight_map: "none" | "unet" | "class_balanced" | "unet_class_balanced" (zoo.data.targets); w0, sigma: its
        parameters (Qu et al. eq. 2: w0 = 10, sigma = 5 px).
    point_radius: disc radius in pixels of the points target.
    mpp: resample every image with a known mpp to this many microns per pixel (0 = off; images of unknown mpp are
        used as they are).
    patches_per_image: patches drawn from each image per pass over the data.
    flip, rot90: random flips / multiples of 90 degrees (exact, no interpolation).
    affine (+ affine_rotation degrees, affine_scale relative, affine_shear degrees): random affine warp.
    elastic (+ elastic_alpha px displacement std, elastic_sigma px smoothness): random elastic deformation.
    blur (+ blur_sigma max px, blur_prob): random Gaussian blur.
    color_jitter (+ brightness, contrast, saturation, hue): random colour jitter.
    hed_jitter (+ hed_sigma, hed_bias): random HED stain jitter (Tellez et al. 2018).
    shuffle_buffer: patches in the shuffle buffer (<= 1: no patch shuffling); seed: the seed of every random choice.
    mixed_supervision: Qu et al.'s mixed supervision (target inner_contour, types merged): records with instance maps
        give zoo.data.targets.mixed_instance_target labels (inner of unknown type = K + 2), records with centre
        points only give mixed_point_target discs; the per-pixel labels tell zoo.losses.mixed which term applies.
        With target hovernet: mixed_hovernet_*_target stacks (NP / HV from instance maps, TP from typed centres;
        zoo.losses.hovernet, "mixed supervision").
    interactive: click-conditioned examples (zoo.interactive.maps.simulated_clicks; target "binary"): x gains the
        positive / negative click disks and a previous mask (float32 [B, P, P, 6]), y is ONE chosen nucleus (0 / 1);
        max_positive_clicks, max_negative_clicks, click_radius (px) its parameters.
    cache: keep decoded (resampled) images in memory after the first pass.
    num_parallel_calls: map parallelism (-1 = AUTOTUNE).
    stain: a fitted stain normalizer's JSON file (``StainNormalizer.save`` / ``histozoo normalize --save-params``;
        any zoo.stain method, the neural colorization / colornormnet included) applied to every decoded image before
        resampling and patching; the training core records it in the model's InferenceSpec, so inference and the
        serving graph apply the same one ("" = none).
    Target ``tissue_class`` (the colorization network, zoo.models.colorization): y = the image-level tissue class
        int32 (``TISSUE_CLASSES``: the MoNuSeg organ, else the dataset of origin, else -1), w = 1.
    """

    patch_size: int = 256
    batch_size: int = 8
    target: str = "binary"
    boundary_width: int = 2
    types: str = "none"
    num_types: int = 0
    weight_map: str = "none"
    w0: float = 10.0
    sigma: float = 5.0
    point_radius: float = 4.0
    mpp: float = 0.0
    patches_per_image: int = 8
    flip: bool = True
    rot90: bool = True
    affine: bool = False
    affine_rotation: float = 180.0
    affine_scale: float = 0.1
    affine_shear: float = 5.0
    elastic: bool = False
    elastic_alpha: float = 4.0
    elastic_sigma: float = 10.0
    blur: bool = False
    blur_sigma: float = 1.5
    blur_prob: float = 0.5
    color_jitter: bool = False
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.02
    hed_jitter: bool = False
    hed_sigma: float = 0.05
    hed_bias: float = 0.05
    shuffle_buffer: int = 64
    seed: int = 0
    cache: bool = True
    num_parallel_calls: int = -1
    mixed_supervision: bool = False
    stain: str = ""
    interactive: bool = False
    max_positive_clicks: int = 3
    max_negative_clicks: int = 3
    click_radius: float = 3.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            want = {"int": int, "float": float, "bool": bool, "str": str}[f.type]
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                object.__setattr__(self, f.name, float(v))
            elif not isinstance(v, want) or (want is int and isinstance(v, bool)):
                raise ConfigError(f"InputConfig.{f.name}: expected {f.type}, got {v!r}")
        _check(self.target in targets.TARGETS + IMAGE_TARGETS, "target",
               f"must be one of {targets.TARGETS + IMAGE_TARGETS}")
        _check(self.weight_map in targets.WEIGHT_MAPS, "weight_map", f"must be one of {targets.WEIGHT_MAPS}")
        _check(self.types in TYPE_MODES, "types", f"must be one of {TYPE_MODES}")
        for name in ("patch_size", "batch_size", "patches_per_image", "boundary_width"):
            _check(getattr(self, name) >= 1, name, "must be >= 1")
        for name in ("w0", "mpp", "affine_rotation", "affine_scale", "affine_shear", "elastic_alpha", "brightness",
                     "contrast", "saturation", "hed_sigma", "hed_bias", "blur_sigma", "num_types"):
            _check(getattr(self, name) >= 0, name, "must be >= 0")
        for name in ("sigma", "point_radius", "elastic_sigma"):
            _check(getattr(self, name) > 0, name, "must be > 0")
        _check(0 <= self.blur_prob <= 1, "blur_prob", "must lie in [0, 1]")
        _check(0 <= self.hue <= 0.5, "hue", "must lie in [0, 0.5]")
        _check(self.contrast < 1 and self.saturation < 1 and self.hed_sigma < 1, "contrast/saturation/hed_sigma",
               "must be < 1")
        _check(self.num_types <= 254, "num_types", "must be <= 254")
        _check(self.num_parallel_calls == -1 or self.num_parallel_calls >= 1, "num_parallel_calls",
               "must be -1 (AUTOTUNE) or >= 1")
        if self.target == "points":
            _check(self.weight_map == "none", "weight_map",
                   "must be 'none' for the points target (its weight is the disc mask)")
            _check(self.types == "none", "types", "must be 'none' for the points target (discs carry the type)")
        if self.target == "hovernet":
            _check(self.weight_map == "none", "weight_map", "must be 'none' for the hovernet target")
            _check(self.types in ("none", "merged"), "types", "must be 'none' or 'merged' for the hovernet target")
        if self.types == "merged":
            _check(self.target in ("inner_contour", "hovernet"), "types",
                   "'merged' needs target='inner_contour' or 'hovernet'")
        if self.types != "none":
            _check(self.num_types >= 1, "num_types", f"must be >= 1 with types={self.types!r}")
        if self.interactive:
            _check(self.target == "binary" and self.types == "none" and self.weight_map == "none"
                   and not self.mixed_supervision, "interactive",
                   "needs target='binary', types='none', weight_map='none' and no mixed supervision")
            _check(self.max_positive_clicks >= 1 and self.max_negative_clicks >= 0 and self.click_radius > 0,
                   "interactive", "needs max_positive_clicks >= 1, max_negative_clicks >= 0, click_radius > 0")
        if self.mixed_supervision:
            _check(self.types == "merged" and self.target in ("inner_contour", "hovernet"), "mixed_supervision",
                   "needs target='inner_contour' or 'hovernet' and types='merged'")
            _check(self.weight_map in ("none", "unet", "unet_nucleus_distance"), "mixed_supervision",
                   "works with weight_map none, unet or unet_nucleus_distance")

    @property
    def num_classes(self) -> int:
        """Number of classes of y (the model's output channels)."""
        if self.target == "binary":
            return 2
        if self.target == "points":
            return self.num_types + 1 if self.num_types else 2
        if self.target == "hovernet":  # NP 2 + HV 2 (+ TP K + 1): the model's output channels
            return 4 + (self.num_types + 1 if self.types == "merged" else 0)
        return self.num_types + 2 if self.types == "merged" else 3

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "InputConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"InputConfig: expected a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"InputConfig: unknown option(s) {unknown}")
        return cls(**d)


def _check(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"InputConfig.{name}: {problem}")


# ---------------------------------------------------------------- sources

def resolve(source, split: str = "train", fold: int | None = None) -> tuple[list[str], set | None]:
    """Shard paths and image-id filter of ``source``: a built data dir (zoo.data.build.select), or shard paths /
    glob patterns (GZIP TFRecords of the records schema)."""
    from zoo.data.build import select

    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        return select(os.fspath(source), split, fold)
    given = [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else [os.fspath(p) for p in source]
    if not given:
        raise ConfigError("dataset: empty list of record shards")
    if fold is not None:
        raise ConfigError("dataset: fold= needs a built data directory (with folds.json), not a list of shards")
    paths = []
    for p in given:  # file paths or glob patterns (the TFX Trainer hands patterns such as .../Split-train/*)
        if os.path.isfile(p):
            paths.append(p)
            continue
        hits = sorted(tf.io.gfile.glob(p)) if any(c in p for c in "*?[") else []
        if not hits:
            raise DataError(p, "no such record shard or data directory")
        paths.extend(hits)
    return paths, None


def _check_labels(paths: Sequence[str], config: InputConfig) -> None:
    """Fail early, naming the shard, when its first record lacks the labels the target needs."""
    first = next(records.iter_records(paths[:1]), None)
    if first is None:
        raise DataError(paths[0], "record shard is empty")
    s = records.to_sample(first)
    if config.target in IMAGE_TARGETS:  # image-level targets need no labels
        return
    if config.mixed_supervision:  # each record trains on what it has (instances, or centre points)
        return
    if config.target == "points" and s.points_yx is None:
        raise DataError(paths[0], f"target 'points' needs centre points; record {s.image_id!r} has none")
    if config.target != "points" and s.instances is None:
        raise DataError(paths[0], f"target {config.target!r} needs instance maps; record {s.image_id!r} has none "
                                  "(use target='points' for centre-annotated data)")


# ---------------------------------------------------------------- per-image preparation

def _needs_types(cfg: InputConfig) -> bool:
    return cfg.types != "none"


def _prepare(ex: dict, cfg: InputConfig) -> dict:
    """Decoded record -> {image uint8, label int32 (id, or id*256 + type), points, ids} at the working resolution."""
    image, inst = ex["image"], ex["instances"]
    if _needs_types(cfg):
        lut_size = tf.maximum(tf.reduce_max(inst), tf.reduce_max(tf.concat([ex["instance_ids"], [0]], 0))) + 1
        lut = tf.scatter_nd(ex["instance_ids"][:, None], tf.clip_by_value(ex["instance_classes"], 0, 255), [lut_size])
        types = tf.where(ex["has_class_map"], ex["class_map"], tf.gather(lut, inst))
        label = inst * _TYPE_SHIFT + types
    else:
        label = inst
    pts = ex["points_yx"]
    scale = tf.constant(1.0)
    if cfg.mpp > 0:
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        scale = tf.where(ex["mpp"] > 0, ex["mpp"] / cfg.mpp, 1.0)
        nh = tf.maximum(tf.cast(tf.round(tf.cast(h, tf.float32) * scale), tf.int32), 1)
        nw = tf.maximum(tf.cast(tf.round(tf.cast(w, tf.float32) * scale), tf.int32), 1)

        def resample():
            img = tf.image.resize(image, tf.stack([nh, nw]), "bilinear", antialias=True)
            img = tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)
            lab = tf.image.resize(label[:, :, None], tf.stack([nh, nw]), "nearest")[:, :, 0]
            sy = tf.cast(nh, tf.float32) / tf.cast(h, tf.float32)
            sx = tf.cast(nw, tf.float32) / tf.cast(w, tf.float32)
            p = (pts + 0.5) * tf.stack([sy, sx]) - 0.5
            return img, lab, p

        image, label, pts = tf.cond(tf.equal(scale, 1.0), lambda: (image, label, pts), resample)
    return {"image": image, "label": label, "points_yx": pts, "point_classes": ex["point_classes"],
            "image_id": ex["image_id"], "scale": scale, "has_instances": ex["has_instances"],
            "tissue_class": _tissue_class(ex)}


def _unpack(label, cfg: InputConfig):
    if _needs_types(cfg):
        return label // _TYPE_SHIFT, label % _TYPE_SHIFT
    return label, None


def _targets(inst, types, cfg: InputConfig, valid=None):
    """(y, w) of an instance map patch (zoo.data.targets); dicts with types="extra"."""
    merged = cfg.types == "merged"
    if cfg.target == "hovernet":  # float32 [P, P, 3 (+1)] stack, per-pixel weight = the valid mask
        v = tf.ones(tf.shape(inst), tf.float32) if valid is None else valid
        return targets.hovernet_target(inst, types if merged else None), v
    y = targets.segmentation_target(inst, cfg.target, cfg.boundary_width, types if merged else None, cfg.num_types)
    v = tf.ones(tf.shape(inst), tf.float32) if valid is None else valid
    if merged:
        v = v * targets.typed_ignore(inst, types, y, cfg.num_types)
    w = targets.weight_map(cfg.weight_map, inst, y, cfg.num_classes, cfg.w0, cfg.sigma, v)
    if cfg.types == "extra":
        known = 1.0 - tf.cast((inst > 0) & (types == 0), tf.float32)
        return {"target": y, "types": types}, {"target": w, "types": w * known}
    return y, w


def _point_targets(pts, classes, size, cfg: InputConfig):
    return targets.point_discs(pts, classes, size, cfg.point_radius, untyped=cfg.num_types == 0)


def _mixed_targets(e: dict, coords, m, centre, seed, cfg: InputConfig):
    """Mixed supervision (y, w) of one patch: from the warped instance map when the record has one, else discs
    around its warped centre points (zoo.data.targets mixed_*; the label values are zoo.losses.mixed's table)."""
    p = cfg.patch_size
    inst, types = _unpack(augment.sample(e["label"], coords, "nearest"), cfg)
    pts = augment.transform_points(e["points_yx"], m, centre, p, seed, cfg)

    if cfg.target == "hovernet":  # zoo.losses.hovernet's mixed stack: NP, HV x, HV y, type code, supervised
        def from_instances():
            return targets.mixed_hovernet_instance_target(inst, types, cfg.num_types), tf.ones([p, p], tf.float32)

        def from_points():
            return targets.mixed_hovernet_point_target(pts, e["point_classes"], [p, p], cfg.point_radius,
                                                       cfg.num_types)
        shape = [p, p, 5]
    else:
        def from_instances():
            y = targets.mixed_instance_target(inst, types, cfg.boundary_width, cfg.num_types)
            return y, targets.weight_map(cfg.weight_map, inst, y, cfg.num_classes, cfg.w0, cfg.sigma)

        def from_points():
            return targets.mixed_point_target(pts, e["point_classes"], [p, p], cfg.point_radius, cfg.num_types)
        shape = [p, p]

    y, w = tf.cond(e["has_instances"], from_instances, from_points)
    return tf.ensure_shape(y, shape), tf.ensure_shape(w, [p, p])


# ---------------------------------------------------------------- training

def _patch(e: dict, seed, cfg: InputConfig):
    """One augmented training patch (x, y, w) of one prepared image."""
    p = cfg.patch_size
    s = augment.split_seed(tf.cast(seed, tf.int64), 3)
    shape = tf.shape(e["image"])
    hw = shape[:2]
    room = tf.maximum(hw - p, 0)
    corner = tf.random.stateless_uniform([2], s[0], 0, tf.int32.max, dtype=tf.int32) % (room + 1)
    corner = tf.where(hw >= p, corner, -((p - hw) // 2))
    centre = tf.cast(corner, tf.float32) + (p - 1) / 2.0
    coords, m = augment.patch_coordinates(s[1], p, centre, cfg)
    x = augment.sample(e["image"], coords, "bilinear") / 255.0
    if cfg.mixed_supervision:
        y, w = _mixed_targets(e, coords, m, centre, s[1], cfg)
    elif cfg.target == "tissue_class":
        y, w = e["tissue_class"], tf.constant(1.0)
    elif cfg.target == "points":
        pts = augment.transform_points(e["points_yx"], m, centre, p, s[1], cfg)
        y, w = _point_targets(pts, e["point_classes"], [p, p], cfg)
    else:
        inst, types = _unpack(augment.sample(e["label"], coords, "nearest"), cfg)
        y, w = _targets(inst, types, cfg)
    x = augment.photometric(x, s[2], cfg)
    if cfg.interactive:  # clicks on one nucleus of the warped instance map (zoo.interactive.maps)
        from zoo.interactive.maps import simulated_clicks

        seed = tf.random.experimental.stateless_fold_in(s[2], 23)
        extra, y = simulated_clicks(inst, seed, cfg.max_positive_clicks, cfg.max_negative_clicks, cfg.click_radius)
        x, w = tf.concat([x, extra], -1), tf.ones([p, p], tf.float32)
    x = tf.ensure_shape(x, [p, p, 6 if cfg.interactive else 3])
    return x, y, w


def _epoch_seeds(seed: int, epoch) -> tf.Tensor:
    """Three int64 seeds of epoch ``epoch`` (image shuffle, patch draws, patch shuffle), a function of (seed, epoch)."""
    pair = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
    return tf.random.stateless_uniform([3], pair, minval=None, maxval=None, dtype=tf.int64)


def _epoch(images: tf.data.Dataset, cfg: InputConfig, npc, epoch, steps: int) -> tf.data.Dataset:
    """The ``steps`` batches of epoch ``epoch`` (a tensor: this runs inside ``flat_map``): as many passes over the
    images as they need, every random choice seeded from (cfg.seed, epoch) and the patch's index in the epoch."""
    # The shuffles take tensor seeds here. Their graph-level seed is fixed (the global one is the run's Keras seed, and
    # TF cannot combine a global seed of 0 with a tensor op seed in a graph): the order depends on (seed, epoch) only.
    tf.compat.v1.get_default_graph().seed = 1
    s = _epoch_seeds(cfg.seed, epoch)
    ds = images.shuffle(64, seed=s[0], reshuffle_each_iteration=True).repeat()
    k = cfg.patches_per_image
    ds = ds.flat_map(lambda e: tf.data.Dataset.from_tensors(e).repeat(k))
    seeds = tf.data.Dataset.counter(dtype=tf.int64).map(lambda i: tf.stack([s[1], i]))
    ds = tf.data.Dataset.zip((ds, seeds)).map(lambda e, sd: _patch(e, sd, cfg), num_parallel_calls=npc,
                                                deterministic=True)
    if cfg.shuffle_buffer > 1:
        ds = ds.shuffle(cfg.shuffle_buffer, seed=s[2], reshuffle_each_iteration=True)
    return ds.batch(cfg.batch_size, drop_remainder=True).take(steps)


def _training(images: tf.data.Dataset, cfg: InputConfig, npc) -> tf.data.Dataset:
    ds = images.shuffle(64, seed=cfg.seed, reshuffle_each_iteration=True)
    k = cfg.patches_per_image
    ds = ds.flat_map(lambda e: tf.data.Dataset.from_tensors(e).repeat(k))
    seeds = tf.data.Dataset.random(seed=cfg.seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds)).map(lambda e, s: _patch(e, s, cfg), num_parallel_calls=npc,
                                                deterministic=True)
    if cfg.shuffle_buffer > 1:
        ds = ds.shuffle(cfg.shuffle_buffer, seed=cfg.seed + 1, reshuffle_each_iteration=True)
    return ds.batch(cfg.batch_size, drop_remainder=True).prefetch(AUTOTUNE)


# ---------------------------------------------------------------- the entry point

def dataset(source, config: InputConfig, split: str = "train", fold: int | None = None) -> tf.data.Dataset:
    """The training pipeline of ``source`` (a built data dir, or shard path(s)) under ``config`` (module doc)."""
    ds, npc = _images(source, config, split, fold)
    return _training(ds, config, npc)


def epochs(source, config: InputConfig, steps_per_epoch: int, split: str = "train", fold: int | None = None, *,
           first_epoch: int = 0, skip: int = 0, count: int | None = None) -> tf.data.Dataset:
    """The training stream of epochs ``first_epoch``, ``first_epoch + 1``, ... (``count`` of them, or endless), each
    ``steps_per_epoch`` batches that are a function of (config.seed, epoch, step) alone (module doc); ``skip`` drops
    the first batches of ``first_epoch`` (a run resumed from a mid-epoch checkpoint). The price of epochs that can
    start on their own: each fills its patch-shuffle buffer afresh and drops what is left in it at its end, about
    shuffle_buffer / (steps_per_epoch x batch_size) extra patches (8 % at 100 steps of 8 with the default 64)."""
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ConfigError(f"epochs: steps_per_epoch must be an integer >= 1, got {steps_per_epoch!r}")
    if not 0 <= skip < steps_per_epoch:
        raise ConfigError(f"epochs: skip must lie in [0, steps_per_epoch), got {skip!r}")
    images, npc = _images(source, config, split, fold)
    first = tf.data.Dataset.from_tensors(tf.constant(first_epoch, tf.int64)).flat_map(
        lambda e: _epoch(images, config, npc, e, steps_per_epoch)).skip(skip)
    if count == 1:
        return first.prefetch(AUTOTUNE)
    rest = tf.data.Dataset.counter(first_epoch + 1, dtype=tf.int64)
    if count is not None:
        rest = rest.take(count - 1)
    rest = rest.flat_map(lambda e: _epoch(images, config, npc, e, steps_per_epoch))
    return first.concatenate(rest).prefetch(AUTOTUNE)


def _images(source, config: InputConfig, split: str, fold: int | None):
    """The decoded, prepared (and cached) images of ``source``, and the map parallelism."""
    if not isinstance(config, InputConfig):
        raise ConfigError(f"dataset: config must be an InputConfig, got {type(config).__name__}")
    paths, ids = resolve(source, split, fold)
    _check_labels(paths, config)
    npc = AUTOTUNE if config.num_parallel_calls == -1 else config.num_parallel_calls
    ds = tf.data.TFRecordDataset(paths, compression_type=records.COMPRESSION)
    ds = ds.map(records.decode, num_parallel_calls=npc, deterministic=True)
    if config.stain:  # the fitted stain normalizer, on every decoded image (zoo.stain; its spec records it)
        from zoo.stain.base import load as load_stain

        norm = load_stain(config.stain, jit=False)
        ds = ds.map(lambda ex: {**ex, "image": norm.tf_transform(ex["image"][None])[0]}, num_parallel_calls=npc,
                    deterministic=True)
    if ids is not None:
        wanted = tf.constant(sorted(ids))
        ds = ds.filter(lambda ex: tf.reduce_any(tf.equal(ex["image_id"], wanted)))
    ds = ds.map(lambda ex: _prepare(ex, config), num_parallel_calls=npc, deterministic=True)
    if config.cache:
        ds = ds.cache()
    return ds, npc
