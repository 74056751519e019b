"""Augmentation: exact D4 transforms, image/label alignment under warps, HED conversion, seeding."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from zoo.data import augment
from zoo.data.input import InputConfig


def _cfg(**kw):
    base = dict(flip=False, rot90=False, affine=False, elastic=False)
    base.update(kw)
    return InputConfig(**base)


def _seed(k):
    return tf.constant([k, 17], tf.int64)


def test_reflect_index_symmetric():
    got = augment.reflect_index(tf.range(-4, 8), 3).numpy()
    np.testing.assert_array_equal(got, [2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1])  # -4..-1 | 0 1 2 | 3..7


def test_sample_integer_and_half_pixel():
    img = tf.reshape(tf.range(12, dtype=tf.float32), (3, 4))
    yy, xx = tf.meshgrid(tf.range(3.0), tf.range(4.0), indexing="ij")
    coords = tf.stack([yy, xx], -1)
    np.testing.assert_array_equal(augment.sample(img, coords, "bilinear"), img)
    np.testing.assert_array_equal(augment.sample(tf.cast(img, tf.int32), coords, "nearest"), img)
    half = augment.sample(img, tf.constant([[[0.5, 0.5]]]), "bilinear").numpy()
    assert half[0, 0] == pytest.approx((0 + 1 + 4 + 5) / 4)
    assert augment.sample(img, tf.constant([[[-1.0, 5.0]]]), "bilinear").numpy()[0, 0] == 2  # mirrored to (0, 2)


def test_flips_and_rot90_are_exact_d4_elements():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (8, 8)).astype(np.float32)
    d4 = [np.rot90(f, k) for f in (img, img[:, ::-1]) for k in range(4)]
    seen = set()
    for k in range(40):
        coords, m = augment.patch_coordinates(_seed(k), 8, tf.constant([3.5, 3.5]), _cfg(flip=True, rot90=True))
        out = augment.sample(tf.constant(img), coords, "bilinear").numpy()
        hits = [i for i, t in enumerate(d4) if np.array_equal(out, t)]
        assert hits, "a flip/rot90 patch must equal one of the 8 D4 images exactly"
        seen.add(hits[0])
    assert len(seen) == 8


def _blobs(size=96, seed=0):
    rng = np.random.default_rng(seed)
    inst = ndimage.label(ndimage.gaussian_filter(rng.random((size, size)), 2.5) > 0.52)[0]
    return inst.astype(np.int32)


@pytest.mark.parametrize("kw", [dict(affine=True), dict(affine=True, elastic=True, elastic_alpha=3.0),
                                dict(flip=True, rot90=True, affine=True, elastic=True)])
def test_warp_keeps_image_and_labels_aligned(kw):
    """The image encodes the instance map (value = id); after a warp, wherever the bilinear image is 'pure'
    (its 4 source neighbours share an id) the nearest-sampled label must equal the image's value."""
    inst = _blobs()
    assert inst.max() > 5
    image = tf.constant(inst[:, :, None].astype(np.float32))
    cfg = _cfg(**kw)
    pure_total = 0
    for k in range(4):
        coords, _ = augment.patch_coordinates(_seed(k), 64, tf.constant([47.5, 47.5]), cfg)
        img = augment.sample(image, coords, "bilinear").numpy()[:, :, 0]
        lab = augment.sample(tf.constant(inst), coords, "nearest").numpy()
        pure = np.abs(img - np.round(img)) < 1e-4
        pure &= ndimage.binary_erosion(pure, border_value=1)  # away from id changes
        pure_total += pure.mean()
        np.testing.assert_array_equal(lab[pure], np.round(img[pure]).astype(np.int32))
        # and both reads agree with scipy's map_coordinates (mode "reflect" = the same symmetric mirror)
        c = np.moveaxis(coords.numpy(), -1, 0)
        ref_img = ndimage.map_coordinates(inst.astype(np.float32), c, order=1, mode="reflect")
        np.testing.assert_allclose(img, ref_img, atol=1e-3)
        assert (lab != ndimage.map_coordinates(inst, c, order=0, mode="reflect")).mean() < 1e-3
    assert pure_total / 4 > 0.5


def test_transform_points_follows_the_image():
    """A bright pixel at each point: after a warp, the image is brightest near the transformed points."""
    pts = np.array([[30.0, 40.0], [60.0, 52.0], [45.0, 70.0]], np.float32)
    img = np.zeros((96, 96), np.float32)
    yy, xx = np.mgrid[:96, :96]
    for p in pts:
        img = np.maximum(img, np.exp(-((yy - p[0]) ** 2 + (xx - p[1]) ** 2) / 8.0))
    cfg = _cfg(flip=True, rot90=True, affine=True, elastic=True, elastic_alpha=2.0)
    for k in range(3):
        centre = tf.constant([47.5, 47.5])
        coords, m = augment.patch_coordinates(_seed(k), 80, centre, cfg)
        out = augment.sample(tf.constant(img), coords, "bilinear").numpy()
        q = augment.transform_points(pts, m, centre, 80, _seed(k), cfg).numpy()
        for p in q:
            if 3 <= p[0] < 77 and 3 <= p[1] < 77:
                win = out[int(p[0]) - 3:int(p[0]) + 4, int(p[1]) - 3:int(p[1]) + 4]
                peak = np.unravel_index(np.argmax(win), win.shape)
                assert np.hypot(peak[0] - 3 - (p[0] - int(p[0])), peak[1] - 3 - (p[1] - int(p[1]))) < 1.0


def test_hed_jitter_identity_and_range():
    from zoo.stain.deconvolution import RGB_FROM_HED

    rng = np.random.default_rng(2)
    rgb = rng.uniform(0.05, 1.0, (16, 16, 3)).astype(np.float32)
    # pixels whose stain concentrations are all >= 0 (nothing clipped) round-trip exactly through HED space
    ok = (np.linalg.solve(RGB_FROM_HED.T, (np.log(rgb) / np.log(1e-6)).reshape(-1, 3).T).T >= 0).all(1)
    assert ok.sum() > 10
    same = augment.hed_jitter(tf.constant(rgb), _seed(0), 0.0, 0.0).numpy()
    np.testing.assert_allclose(same.reshape(-1, 3)[ok], rgb.reshape(-1, 3)[ok], atol=1e-4)
    moved = augment.hed_jitter(tf.constant(rgb), _seed(0), 0.2, 0.05).numpy()
    assert np.abs(moved - rgb).max() > 0.01 and moved.min() >= 0 and moved.max() <= 1


def test_blur_and_photometric_are_seeded():
    rng = np.random.default_rng(3)
    img = tf.constant(rng.uniform(0, 1, (32, 32, 3)).astype(np.float32))
    flat = tf.fill((16, 16, 3), 0.3)
    np.testing.assert_allclose(augment.separable_blur(flat, 2.0, 6).numpy(), 0.3, atol=1e-6)
    np.testing.assert_allclose(augment.separable_blur(img, 0.0, 3).numpy(), img.numpy(), atol=1e-6)
    assert augment.separable_blur(img, 1.5, 5).numpy().std() < img.numpy().std() * 0.6
    cfg = InputConfig(blur=True, blur_prob=1.0, color_jitter=True, hed_jitter=True)
    a = augment.photometric(img, _seed(5), cfg).numpy()
    b = augment.photometric(img, _seed(5), cfg).numpy()
    c = augment.photometric(img, _seed(6), cfg).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3 and 0 <= a.min() and a.max() <= 1


def test_elastic_field_statistics():
    f = augment.elastic_field(_seed(0), 128, 4.0, 10.0).numpy()
    assert f.shape == (128, 128, 2)
    assert f.std() == pytest.approx(4.0, rel=0.1)
    assert np.abs(np.diff(f, axis=0)).mean() < 0.5  # smooth: neighbours move together
