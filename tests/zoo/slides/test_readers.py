"""Slide readers: levels, mpp and regions read back from the pyramids the tests write with tifffile, from a plain
TIFF's resolution tags and from a PNG; the tissue mask of the mosaic; bad files fail in one line naming the file."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import CROP, MPP, WHITE


@pytest.mark.parametrize("flavour,fmt,source", [("ome", "ome-tiff", "OME PhysicalSizeX"),
                                                ("svs", "svs", "SVS ImageDescription MPP")])
def test_pyramid_levels_mpp_and_regions(slides, mosaic, flavour, fmt, source):
    from zoo.slides import open_slide
    from zoo.slides.pyramid import pyramid_levels

    levels = pyramid_levels(mosaic, 160)
    with open_slide(slides[flavour]) as s:
        assert s.format == fmt and s.mpp_source == source and s.mpp == pytest.approx(MPP)
        assert [lv.shape for lv in s.levels] == [a.shape[:2] for a in levels] == [(640, 1152), (320, 576), (160, 288)]
        assert [lv.downsample for lv in s.levels] == [1.0, 2.0, 4.0]
        assert [s.level_mpp(i) for i in range(3)] == pytest.approx([0.25, 0.5, 1.0])
        # regions across tile borders, at every level, equal the arrays written
        for i, a in enumerate(levels):
            assert np.array_equal(s.read_region(i, 37, 101, 100, 150), a[37:137, 101:251])
        # beyond the level's edge: white
        r = s.read_region(1, 300, 560, 40, 40)
        assert np.array_equal(r[:20, :16], levels[1][300:, 560:]) and (r[20:] == 255).all() and (r[:, 16:] == 255).all()
        assert s.choose_level(0.5) == 1 and s.choose_level(0.4) == 0 and s.choose_level(2.0) == 2
        assert s.choose_level(0.255) == 0  # within MPP_TOLERANCE of level 0 counts as level 0
        thumb, d = s.thumbnail(300)
        assert d == 4.0 and thumb.shape == (160, 288, 3)


def test_plain_tiff_resolution_tags_png_and_given_mpp(mosaic, tmp_path):
    import tifffile

    from zoo import atomic
    from zoo.slides import open_slide

    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, mosaic, photometric="rgb", rowsperstrip=50, resolution=(1e4 / 0.5, 1e4 / 0.5),
                     resolutionunit="CENTIMETER")
    with open_slide(p) as s:  # strips, one level, mpp from XResolution in pixels per cm
        assert s.mpp == pytest.approx(0.5) and s.mpp_source == "TIFF XResolution" and len(s.levels) == 1
        assert np.array_equal(s.read_region(0, 45, 10, 120, 30), mosaic[45:165, 10:40])
    q = tmp_path / "dpi72.tif"
    tifffile.imwrite(q, mosaic[:100, :100], photometric="rgb", resolution=(72, 72), resolutionunit="INCH")
    with open_slide(q) as s:  # a default 72 dpi is not a microscope's resolution: unknown
        assert s.mpp == 0 and s.mpp_source == "unknown"
    with open_slide(q, mpp=0.3) as s:
        assert s.mpp == 0.3 and s.mpp_source == "given"
    png = atomic.save_image(tmp_path / "m.png", mosaic)
    with open_slide(png, mpp=MPP) as s:
        assert s.format == "image" and s.shape == mosaic.shape[:2]
        assert np.array_equal(s.read_region(0, 600, 1100, 60, 60)[:40, :52], mosaic[600:, 1100:])


def test_tissue_mask_skips_the_white_band(slides):
    from zoo.slides import detect_tissue, open_slide

    with open_slide(slides["ome"]) as s:
        t = detect_tissue(s)
    # tissue = the mosaic's 2 * CROP columns, not the white band (within a mask pixel)
    px = t.downsample
    cols = np.nonzero(t.mask.any(0))[0]
    assert abs((cols.max() + 1) * px - 2 * CROP) <= px and cols.min() == 0
    assert t.any_in(0, 0, 100, 100) and not t.any_in(0, 2 * CROP + 200, 640, 2 * CROP + WHITE)


@pytest.mark.parametrize("name,content", [("notes.svs", b"this is not a slide\n"), ("broken.tif", b"II*\x00junk"),
                                          ("image.png", b"\x89PNG\r\n\x1a\nnot really"),
                                          ("scan.ndpi", b"whatever")])
def test_bad_file_is_one_line_naming_it(tmp_path, name, content):
    from zoo.errors import DataError
    from zoo.slides import open_slide

    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(DataError) as e:
        open_slide(p)
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg
    with pytest.raises(DataError, match="no such slide file"):
        open_slide(tmp_path / "missing.svs")


def test_openslide_reads_the_svs_like_file_as_tifffile_does(mosaic, tmp_path):
    """With the optional [slides] extra, OpenSlide opens the SVS-like TIFF (JPEG tiles + JPEGTables) as Aperio, with
    the same levels, mpp and pixels as the tifffile reader."""
    pytest.importorskip("openslide", reason="the optional extra histozoo[slides] (openslide-python + openslide-bin)")
    from zoo.slides import write_pyramid
    from zoo.slides.readers import OpenSlideSlide, TiffSlide

    p = write_pyramid(str(tmp_path / "jpeg.svs"), mosaic, MPP, "svs", tile=128, compression="jpeg", min_side=160)
    with OpenSlideSlide(p) as o, TiffSlide(p) as t:
        assert o.format == "openslide:aperio" and o.mpp == pytest.approx(MPP) == t.mpp
        assert [lv.shape for lv in o.levels] == [lv.shape for lv in t.levels]
        for level in range(len(t.levels)):
            assert np.array_equal(o.read_region(level, 30, 70, 90, 140), t.read_region(level, 30, 70, 90, 140))
