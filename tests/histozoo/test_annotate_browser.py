"""``histozoo annotate`` in a real browser: headless Chromium from Debian's package (``apt-get install chromium``)
driven by Playwright with that executable (no browser download). It opens a real MoNuSeg test image, makes positive
(left), negative (right and Shift) clicks on two annotated nuclei, accepts them, takes one of the shipped automatic
model's proposals, saves with Ctrl+S, and checks the saved 16-bit PNG and GeoJSON pixel for pixel; a second tab then
makes the first one stale, and the first tab's next click is refused with the message shown on the page (issue 23).

Skipped with a reason when Playwright or a chromium binary is missing, except under CI=true (then it fails).
``HISTOZOO_ANNOTATE_SCREENSHOT=path.png`` saves the page as docs/img/annotate.png was made.
"""

from __future__ import annotations

import importlib.util
import math
import os
import shutil

import numpy as np
import pytest

from histozoo.annotate.server import AnnotateServer
from histozoo.annotate.workspace import Workspace
from zoo import atomic
from zoo.data.geojson import geojson_instances
from zoo.data.imageio import read_label

IMAGE = "TCGA-2Z-A9J9-01A-01-TS1"  # a MoNuSeg 2018 test image, 1000 x 1000


def _disk_segmenter():
    """test_annotate_server's hand-checkable stand-in model (pytest runs with --import-mode=importlib)."""
    import pathlib

    spec = importlib.util.spec_from_file_location("_annotate_server_tests",
                                                  pathlib.Path(__file__).with_name("test_annotate_server.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.DiskSegmenter()


def _chromium() -> str:
    reason = None
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if importlib.util.find_spec("playwright") is None:
        reason = "playwright is not installed (pip install -e .[dev])"
    if reason is None and path is None:
        reason = "no chromium binary on PATH (apt-get install chromium)"
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason + "; CI=true requires the browser test")
        pytest.skip(reason)
    return path


def _nuclei(xml: str, k: int = 2) -> list[tuple[int, int]]:
    """Centres (row, col) of ``k`` annotated nuclei from the image's own ImageScope XML, >= 150 px apart, inland."""
    from zoo.data.polygons import imagescope_polygons, read_imagescope_xml

    polys, _ = imagescope_polygons(read_imagescope_xml(xml)[0])
    out = []
    for ext, _ in polys:
        x, y = np.asarray(ext, float).mean(0)
        if 100 < x < 900 and 100 < y < 900 and all(abs(y - a) + abs(x - b) > 150 for a, b in out):
            out.append((int(round(y)), int(round(x))))
        if len(out) == k:
            return out
    raise AssertionError(f"{xml}: fewer than {k} inland nuclei")


def _disk(shape, y, x, r=5):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= r * r


def test_annotate_a_monuseg_image_in_chromium(shared_data, tmp_path):
    chromium = _chromium()
    from playwright.sync_api import sync_playwright
    from zoo.training.tracking import load

    src = shared_data / "monuseg2018" / "MoNuSegTestData"
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(src / f"{IMAGE}.png", images / f"{IMAGE}.png")
    (c1y, c1x), (c2y, c2x) = _nuclei(str(src / f"{IMAGE}.xml.gz"))
    auto = load("pretrained:nuclei-unet-monuseg")
    ws = Workspace(str(images), str(tmp_path / "out"), segmenter=_disk_segmenter(), auto=auto,
                   model_uri="test:disk-r5", auto_uri="pretrained:nuclei-unet-monuseg")
    server = AnnotateServer(ws)
    server.start()
    name = f"{IMAGE}.png"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            page = browser.new_page(viewport={"width": 1000, "height": 720})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + f"?image={name}")

            def settled(p, version, timeout=60_000):
                p.wait_for_selector(f'body[data-version="{version}"][data-overlay="{version}"][data-busy="0"]',
                                    timeout=timeout)

            settled(page, 0)
            box = page.locator("#view").bounding_box()
            assert box["width"] < 1000 and abs(box["width"] - box["height"]) < 1  # scaled to fit, square kept

            def click(p, y, x, version, button="left", shift=False):
                """Click the screen pixel nearest image pixel (y, x); returns the image pixel the page maps it to
                (its rule: floor(CSS offset * canvas size / shown size); MouseEvent coordinates are whole CSS px,
                so a canvas shown at 0.7x cannot name every image pixel)."""
                sy, sx = round((y + 0.5) * box["height"] / 1000), round((x + 0.5) * box["width"] / 1000)
                if shift:
                    p.keyboard.down("Shift")
                p.mouse.click(box["x"] + sx, box["y"] + sy, button=button)
                if shift:
                    p.keyboard.up("Shift")
                if version is not None:
                    settled(p, version)
                got = math.floor(sy * 1000 / box["height"]), math.floor(sx * 1000 / box["width"])
                assert abs(got[0] - y) <= 1 and abs(got[1] - x) <= 1
                return got

            p1 = click(page, c1y, c1x, 1)                     # positive
            n1 = click(page, c1y, c1x + 4, 2, button="right")  # negative (right button)
            page.keyboard.press("Enter")                      # accept
            settled(page, 3)
            p2 = click(page, c2y, c2x, 4)
            n2 = click(page, c2y + 3, c2x, 5, shift=True)     # negative (Shift + left button)
            page.click("#accept")
            settled(page, 6)
            page.click("#propose")                            # the automatic model's proposals
            settled(page, 7, timeout=180_000)
            page.click("#next")
            settled(page, 8)
            page.click("#take")                               # accept the proposal shown (#2)
            settled(page, 9)
            page.keyboard.press("Control+s")
            page.wait_for_function("document.getElementById('status').textContent.includes('saved 3 nuclei')")
            status = page.inner_text("#status")
            assert "3 nuclei accepted" in status and "saved to files" in status

            # the saved files, pixel for pixel
            f = ws.files(name)
            inst = read_label(f["instances"])
            assert [u["clicks"] for u in ws._states[name].undo if u["op"] == "accept"] == \
                [[[*p1, True], [*n1, False]], [[*p2, True], [*n2, False]]]
            first = _disk(inst.shape, *p1) & ~_disk(inst.shape, *n1)
            second = _disk(inst.shape, *p2) & ~_disk(inst.shape, *n2)
            props = ws._states[name].proposals  # predict's instances (test_annotate_server checks that)
            third = (props == 2) & ~first & ~second
            assert first.sum() < 81 and second.sum() < 81 and third.sum() > 20
            assert np.array_equal(inst == 1, first) and np.array_equal(inst == 2, second)
            assert np.array_equal(inst == 3, third) and inst.max() == 3
            assert np.array_equal(geojson_instances(f["geojson"], inst.shape).instances, inst)
            meta = atomic.read_json(f["meta"])
            assert (meta["instances"], meta["clicks"], meta["proposals_accepted"], meta["version"]) == (3, 4, 1, 9)

            # a second tab makes this one stale: its next click is refused, on the page, nothing overwritten
            page2 = browser.new_page(viewport={"width": 1000, "height": 720})
            page2.goto(server.url + f"?image={name}")
            settled(page2, 9)
            click(page2, 500, 500, 10)
            stale = "document.getElementById('error').textContent.includes('another tab')"
            page.wait_for_function(stale, timeout=10_000)  # noticed by the idle page's check (every 3 s)
            page.evaluate("document.getElementById('error').textContent = ''")
            click(page, 300, 300, None)  # and refused by the server (409) when it acts anyway
            page.wait_for_function("document.getElementById('error').textContent.includes('nothing was overwritten')")
            assert page.is_visible("#reload") and page.get_attribute("body", "data-version") == "9"
            assert ws.view(name)["version"] == 10 and ws.view(name)["clicks"] == [[500, 500, True]]
            page.click("#reload")
            settled(page, 10)
            assert page.inner_text("#error") == ""
            shot = os.environ.get("HISTOZOO_ANNOTATE_SCREENSHOT")
            if shot:  # docs/img/annotate.png: this page, as a 128-colour PNG
                page.screenshot(path=shot)
                from PIL import Image

                with Image.open(shot) as im:
                    im.convert("RGB").quantize(128).save(shot, optimize=True)
            page.keyboard.press("Control+z")  # the other tab's click, undone here
            settled(page, 11)
            assert ws.view(name)["clicks"] == [] and np.array_equal(read_label(f["instances"]), inst)
            assert errors == []
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
