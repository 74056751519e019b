"""``histozoo annotate``'s server over HTTP (urllib / raw sockets): paths outside the image folder refused, two tabs
(a stale page's change and save refused), saves atomic as a set (a fault injected mid-save), autosave across a
restart, bad requests answered while the server keeps serving, proposals from the shipped automatic model, and the
export to records read back with the right counts (issue 23)."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest

from histozoo.annotate.server import AnnotateServer
from histozoo.annotate.workspace import Workspace
from zoo import atomic
from zoo.data.geojson import geojson_instances
from zoo.data.imageio import read_label

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DISK5 = 81  # integer points with dy^2 + dx^2 <= 25 (Gauss's circle problem, N(5) = 81)


class DiskSegmenter:
    """A hand-checkable stand-in for the interactive model: the union of radius-5 disks at the positive clicks less
    the radius-5 disks at the negative ones (same call signature as zoo.interactive.Segmenter.segment)."""

    def __init__(self, r: int = 5):
        self.r, self.calls = r, []

    def segment(self, image, clicks, prev_mask=None, fbrs=False):
        self.calls.append((list(clicks), prev_mask is not None, fbrs))
        h, w = image.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        m = np.zeros((h, w), bool)
        for y, x, pos in clicks:
            d = (yy - y) ** 2 + (xx - x) ** 2 <= self.r ** 2
            m = m | d if pos else m & ~d
        return m


def _images(tmp_path, n=1, shape=(64, 80)):
    d = tmp_path / "images"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        atomic.save_image(d / f"img{i}.png", rng.integers(0, 255, (*shape, 3), dtype=np.uint8))
    return d


class Client:
    def __init__(self, server):
        self.url = server.url

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def getj(self, path):
        s, b = self.get(path)
        return s, json.loads(b)

    def post(self, path, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path.lstrip("/"), data=data, headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def raw(self, request: bytes) -> bytes:
        host, port = self.url.split("//")[1].rstrip("/").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(request)
            s.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        return out


@pytest.fixture
def served(tmp_path):
    """(workspace, client, segmenter) over two random 64 x 80 images; the server stopped afterwards."""
    servers = []

    def make(images=None, out=None, segmenter=None, auto=None, n=2):
        images = images or _images(tmp_path, n)
        seg = segmenter if segmenter is not None else DiskSegmenter()
        ws = Workspace(str(images), str(out or tmp_path / "out"), segmenter=seg, auto=auto)
        srv = AnnotateServer(ws)
        srv.start()
        servers.append(srv)
        return ws, Client(srv), seg

    def stop(i):
        servers[i].shutdown()
        servers[i].server_close()

    make.stop = stop
    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


def _alive(c: Client) -> None:
    s, body = c.getj("/api/images")
    assert s == 200 and [r["name"] for r in body["images"]] == ["img0.png", "img1.png"]


def test_a_dead_servers_claim_is_taken_over(tmp_path):
    import subprocess
    import sys

    images = _images(tmp_path, 1)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its PID names no process now
    lock = tmp_path / "out" / ".work" / "server.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(f"{dead.pid} 0123")
    srv = AnnotateServer(Workspace(str(images), str(tmp_path / "out")))
    assert lock.read_text().split()[0] == str(os.getpid())
    srv.server_close()
    assert not lock.exists()


def test_binds_loopback_and_refuses_paths_outside_the_folder(served, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    atomic.save_image(outside / "secret.png", np.zeros((8, 8, 3), np.uint8))
    images = _images(tmp_path, 2)
    os.symlink(outside / "secret.png", images / "link.png")  # a symlink out of the folder
    os.symlink(images / "img0.png", images / "alias.png")  # a symlink inside it is fine
    ws, c, _ = served(images=images)
    assert c.url.startswith("http://127.0.0.1:")
    assert [r["name"] for r in c.getj("/api/images")[1]["images"]] == ["alias.png", "img0.png", "img1.png"]
    for name in ("../outside/secret.png", "..%2Foutside%2Fsecret.png", "%2Fetc%2Fpasswd", "link.png", ".work",
                 "..", "img0.png%00.png", "sub%5C..%5C..%5Csecret.png"):
        for what in ("image", "state", "overlay"):
            s, body = c.getj(f"/api/{what}?name={name}")
            assert s == 403 and "outside the image folder" in body["error"], (name, what, s, body)
    s, body = c.post("/api/click", {"name": "../outside/secret.png", "version": 0, "y": 1, "x": 1})
    assert s == 403
    assert c.getj("/api/image?name=nope.png")[0] == 404
    assert c.get("/api/image?name=alias.png")[0] == 200
    # the URL path itself: only the page's three files are served, nothing is read from disk by path
    for path in (b"/../../../etc/passwd", b"/static/../../setup.py", b"/%2e%2e/%2e%2e/etc/passwd", b"/app.js/.."):
        head = c.raw(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 404") or head.startswith(b"HTTP/1.1 404"), (path, head[:80])
    # a page from another site reaching 127.0.0.1 by a rebound DNS name is refused
    head = c.raw(b"GET /api/images HTTP/1.1\r\nHost: evil.example:80\r\nConnection: close\r\n\r\n")
    assert b" 403 " in head.split(b"\r\n")[0]
    assert c.get("/")[0] == 200 and b"histozoo annotate" in c.get("/")[1]


def test_two_tabs_stale_change_and_save_refused(served, tmp_path):
    ws, c, _ = served()
    a = c.getj("/api/state?name=img0.png")[1]  # tab A
    b = c.getj("/api/state?name=img0.png")[1]  # tab B, same version
    assert a["version"] == b["version"] == 0
    s, a = c.post("/api/click", {"name": "img0.png", "version": a["version"], "y": 20, "x": 20})
    assert s == 200 and a["version"] == 1 and a["pending"] == DISK5
    s, a = c.post("/api/accept", {"name": "img0.png", "version": a["version"]})
    assert s == 200 and a["instances"] == 1
    # tab B still shows version 0: its click and its save are refused, nothing written
    s, err = c.post("/api/click", {"name": "img0.png", "version": b["version"], "y": 40, "x": 40})
    assert s == 409 and "another tab" in err["error"] and "nothing was overwritten" in err["error"]
    s, err = c.post("/api/save", {"name": "img0.png", "version": b["version"]})
    assert s == 409
    assert not os.path.exists(ws.files("img0.png")["instances"])
    # tab A saves; tab B reloads and sees A's nucleus
    s, saved = c.post("/api/save", {"name": "img0.png", "version": a["version"]})
    assert s == 200 and saved["saved_version"] == a["version"] == 2
    b = c.getj("/api/state?name=img0.png")[1]
    assert b["version"] == 2 and b["instances"] == 1 and not b["unsaved"]
    # eight tabs at version 2 click at once: the image's lock lets exactly one through, the rest are stale
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: c.post("/api/click", {"name": "img0.png", "version": 2, "y": 10 + i, "x": 60}),
                            range(8)))
    assert sorted(s for s, _ in got) == [200] + [409] * 7
    st = c.getj("/api/state?name=img0.png")[1]
    assert st["version"] == 3 and len(st["clicks"]) == 1
    s, st = c.post("/api/undo", {"name": "img0.png", "version": 3})
    assert st["version"] == 4 and st["clicks"] == []
    # a save from a tab that fell behind after the save is refused too
    s, a = c.post("/api/click", {"name": "img0.png", "version": 4, "y": 40, "x": 40})
    s, err = c.post("/api/save", {"name": "img0.png", "version": 4})
    assert s == 409 and read_label(ws.files("img0.png")["instances"]).max() == 1


def test_click_accept_undo_save_round_trip_and_autosave(served, tmp_path):
    ws, c, seg = served()
    v = 0

    def post(path, **kw):
        nonlocal v
        s, st = c.post(path, {"name": "img1.png", "version": v, **kw})
        assert s == 200, st
        v = st["version"]
        return st

    st = post("/api/click", y=20, x=20)
    st = post("/api/click", y=20, x=26, positive=False)  # removes the disk's part within 5 px of (20, 26)
    yy, xx = np.mgrid[:64, :80]
    first = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 25) & ~((yy - 20) ** 2 + (xx - 26) ** 2 <= 25)
    # by hand: the two disks overlap in 5 + 2 * (3 + 3 + 3 + 1) = 25 points (rows dy = 0, +-1, +-2, +-3, +-4), 81 - 25
    assert st["pending"] == first.sum() == 56 and seg.calls[-1][1] is True  # the previous mask is fed back
    post("/api/accept")
    post("/api/click", y=40, x=60, fbrs=True)
    assert seg.calls[-1][2] is True
    st = post("/api/accept")
    assert st["instances"] == 2 and st["clicks_spent"] == 3
    st = post("/api/undo")  # the second nucleus back to pending, its click restored
    assert st["instances"] == 1 and st["pending"] == DISK5 and st["clicks"] == [[40, 60, True]]
    st = post("/api/accept")
    st = post("/api/click", y=10, x=70)
    st = post("/api/clear")
    assert st["pending"] == 0 and st["instances"] == 2
    # one server per output folder: a second one is refused while the first runs
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError, match=f"another histozoo annotate \\(pid {os.getpid()}\\) serves this folder"):
        AnnotateServer(Workspace(str(tmp_path / "images"), str(tmp_path / "out"), segmenter=seg))
    # the page is closed and the server stopped here: a new server on the same folders has every change (the autosave)
    served.stop(0)
    ws2, c2, _ = served(images=tmp_path / "images", out=tmp_path / "out")
    st2 = c2.getj("/api/state?name=img1.png")[1]
    assert (st2["version"], st2["instances"], st2["clicks_spent"], st2["unsaved"]) == (v, 2, 3, True)
    s, st2 = c2.post("/api/undo", {"name": "img1.png", "version": v})  # the undo log survived too
    assert s == 200 and st2["clicks"] == [[10, 70, True]] and st2["pending"] == DISK5
    s, st2 = c2.post("/api/clear", {"name": "img1.png", "version": st2["version"]})
    s, saved = c2.post("/api/save", {"name": "img1.png", "version": st2["version"]})
    assert s == 200
    f = saved["files"]
    inst = read_label(f["instances"])
    assert inst.dtype == np.int32 and sorted(np.unique(inst).tolist()) == [0, 1, 2]
    assert np.array_equal(inst == 1, first)
    assert (inst == 2).sum() == DISK5 and inst[40, 60] == 2
    back = geojson_instances(f["geojson"], inst.shape).instances
    assert np.array_equal(back, inst)  # the GeoJSON outlines read back to the same map
    meta = atomic.read_json(f["meta"])
    assert (meta["image"], meta["instances"], meta["clicks"], meta["version"]) == ("img1.png", 2, 3, saved["version"])
    from PIL import Image

    with Image.open(f["instances"]) as im:
        assert im.mode in ("I;16", "I;16B", "I;16L")  # a 16-bit instance PNG
    assert c2.get("/api/overlay?name=img1.png")[0] == 200


def test_save_is_atomic_when_a_write_fails(served, tmp_path, monkeypatch):
    import histozoo.annotate.workspace as wsmod

    ws, c, _ = served()
    s, st = c.post("/api/click", {"name": "img0.png", "version": 0, "y": 20, "x": 20})
    s, st = c.post("/api/accept", {"name": "img0.png", "version": st["version"]})
    s, saved = c.post("/api/save", {"name": "img0.png", "version": st["version"]})
    files = saved["files"]
    before = {k: open(p, "rb").read() for k, p in files.items()}
    s, st = c.post("/api/click", {"name": "img0.png", "version": st["version"], "y": 40, "x": 40})
    s, st = c.post("/api/accept", {"name": "img0.png", "version": st["version"]})
    assert st["instances"] == 2

    def broken(feats, path):  # the fault: the GeoJSON writer dies after the PNG was written under its temp name
        with open(path, "w") as fh:
            fh.write('{"type": "FeatureCollection", "feat')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wsmod, "_write_features", broken)
    s, err = c.post("/api/save", {"name": "img0.png", "version": st["version"]})
    assert s == 500 and "No space left" in err["error"]
    assert {k: open(p, "rb").read() for k, p in files.items()} == before  # the old save, whole
    leftovers = [f for f in os.listdir(ws.out) if ".tmp-" in f]
    assert leftovers == []
    _alive(c)
    monkeypatch.undo()
    s, saved = c.post("/api/save", {"name": "img0.png", "version": st["version"]})
    assert s == 200 and read_label(files["instances"]).max() == 2


def test_bad_requests_are_answered_and_the_server_keeps_serving(served, tmp_path):
    class Exploding(DiskSegmenter):
        def segment(self, image, clicks, prev_mask=None, fbrs=False):
            if clicks[-1][0] == 13:
                raise RuntimeError("model fault")
            return super().segment(image, clicks, prev_mask, fbrs)

    ws, c, _ = served(segmenter=Exploding())
    cases = [
        (c.post, ("/api/click", b"{not json"), 400),
        (c.post, ("/api/click", b"[1, 2]"), 400),
        (c.post, ("/api/click", {"name": "img0.png", "version": 0, "y": 20, "x": 20}, "text/plain"), 415),
        (c.post, ("/api/click", {"name": "img0.png", "version": 0, "y": "a", "x": 20}), 400),
        (c.post, ("/api/click", {"name": "img0.png", "version": 0, "y": 64, "x": 20}), 400),
        (c.post, ("/api/click", {"name": "img0.png", "version": "0", "y": 1, "x": 1}), 400),
        (c.post, ("/api/click", {"version": 0, "y": 1, "x": 1}), 400),
        (c.post, ("/api/click", {"name": "img0.png", "version": 0, "y": 13, "x": 20}), 500),
        (c.post, ("/api/accept", {"name": "img0.png", "version": 0}), 400),
        (c.post, ("/api/undo", {"name": "img0.png", "version": 0}), 400),
        (c.post, ("/api/proposal", {"name": "img0.png", "version": 0, "action": "explode"}), 400),
        (c.post, ("/api/propose", {"name": "img0.png", "version": 0}), 400),  # no --auto-model
        (c.post, ("/api/nothing", {}), 404),
        (c.getj, ("/api/nothing",), 404),
        (c.getj, ("/api/state",), 400),
    ]
    for fn, args, status in cases:
        got = fn(*args)
        assert got[0] == status, (args, got)
        _alive(c)
    st = c.getj("/api/state?name=img0.png")[1]
    assert st["version"] == 0 and st["clicks"] == []  # the failed click left no trace
    raws = [b"GARBAGE\r\n\r\n",
            b"POST /api/click HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\r\n",  # no length
            b"POST /api/click HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 99999999\r\n\r\n{}",
            b"PUT / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            b"GET /api/state?name=img0.png HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # a request cut short
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"]  # a TLS hello
    for want, req in zip((b"400", b"411", b"413", b"501", None, b"400"), raws):
        head = c.raw(req)
        if want is not None:
            assert want in head[:300], (req, head[:300])  # (a line without a version gets an HTTP/0.9 answer)
        _alive(c)
    s, st = c.post("/api/click", {"name": "img0.png", "version": 0, "y": 20, "x": 20})
    assert s == 200 and st["pending"] == DISK5


def test_images_resampled_to_the_segmenters_resolution(tmp_path):
    """--mpp 0.5 images, a segmenter at 0.25 µm/px: it sees the image twice as large, the mask comes back at the
    image's size (nearest neighbour)."""
    seg = DiskSegmenter()
    seg.mpp = 0.25
    seen = []
    inner = seg.segment
    seg.segment = lambda image, clicks, **kw: (seen.append((image.shape, list(clicks))), inner(image, clicks, **kw))[1]
    ws = Workspace(str(_images(tmp_path, 1)), str(tmp_path / "out"), segmenter=seg, mpp=0.5)
    st = ws.click("img0.png", 0, 20, 20, True)
    assert seen[-1] == ((128, 160, 3), [(41, 41, True)])  # (20 + 0.5) * 2 = 41
    # the 81-pixel disk at (41, 41) in the 128 x 160 grid, shrunk by nearest neighbour to 64 x 80: the image pixel
    # (r, c) takes the model pixel (2r + 1, 2c + 1) (skimage: centre of the 2 x 2 block, rounded up), i.e. the odd
    # rows and columns of the disk: dy, dx in {-4, -2, 0, 2, 4} with dy^2 + dx^2 <= 25: 5 + 2 * (5 + 3) = 21
    assert st["pending"] == 21
    ws.mpp = 0.2525  # within MPP_TOLERANCE of 0.25: no resampling
    st = ws.undo("img0.png", st["version"])
    st = ws.click("img0.png", st["version"], 20, 20, True)
    assert seen[-1] == ((64, 80, 3), [(20, 20, True)]) and st["pending"] == DISK5


def test_interactive_api_from_zoo_interactive(served, tmp_path):
    """The tool drives H4's Segmenter (zoo.interactive.tiny: random weights, the real contract)."""
    from zoo import interactive
    from zoo.data.imageio import read_rgb

    seg = interactive.tiny(seed=0)
    ws, c, _ = served(segmenter=seg)
    s, st = c.post("/api/click", {"name": "img0.png", "version": 0, "y": 30, "x": 30})
    assert s == 200
    want = interactive.tiny(seed=0).segment(read_rgb(str(tmp_path / "images" / "img0.png")), [(30, 30, True)])
    assert st["pending"] == int(want.sum())


def test_proposals_from_the_shipped_model_and_export_to_records(served, tmp_path):
    """Proposals are zoo.inference.predict's instances of pretrained:nuclei-unet-monuseg on a packaged MoNuSeg crop;
    accepted and saved, then exported: the records hold exactly the saved images and nuclei."""
    import shutil

    from histozoo.annotate.export import export_records
    from histozoo.cli import main
    from zoo.data import records
    from zoo.data.build import load_summary, select
    from zoo.data.imageio import read_rgb
    from zoo.inference import predict
    from zoo.training.tracking import load

    sample = os.path.join(REPO, "zoo", "sample_data", "monuseg", "images")
    names = sorted(n for n in os.listdir(sample) if n.startswith("train-"))[:2]
    images = tmp_path / "images"
    images.mkdir()
    for n in names:
        shutil.copy(os.path.join(sample, n), images / n)
    shutil.copy(os.path.join(sample, names[0]), images / ("z_" + names[0]))  # never saved
    auto = load("pretrained:nuclei-unet-monuseg")
    ws, c, _ = served(images=images, auto=auto)
    want = predict(auto.model, auto.spec, read_rgb(str(images / names[0]))).instances
    n_want = int(np.count_nonzero(np.unique(want)))
    assert n_want > 5
    s, st = c.post("/api/propose", {"name": names[0], "version": 0})
    assert s == 200 and st["proposals"] == n_want and st["proposals_left"] == n_want and st["proposal"] == 1
    s, st = c.post("/api/proposal", {"name": names[0], "version": st["version"], "action": "next"})
    assert st["proposal"] == 2
    s, st = c.post("/api/proposal", {"name": names[0], "version": st["version"], "action": "accept"})
    assert st["instances"] == 1 and st["proposals_left"] == n_want - 1 and st["proposal"] == 3
    s, st = c.post("/api/proposal", {"name": names[0], "version": st["version"], "action": "accept_all"})
    assert st["instances"] == n_want and st["proposals_left"] == 0
    s, st = c.post("/api/undo", {"name": names[0], "version": st["version"]})
    assert st["instances"] == 1 and st["proposals_left"] == n_want - 1
    s, st = c.post("/api/proposal", {"name": names[0], "version": st["version"], "action": "accept_all"})
    s, saved = c.post("/api/save", {"name": names[0], "version": st["version"]})
    got = read_label(saved["files"]["instances"])  # the proposals' partition, numbered in the order accepted
    pairs = np.unique(np.stack([got.ravel(), want.ravel()]), axis=1)
    assert np.array_equal(got > 0, want > 0) and pairs.shape[1] == n_want + 1 and got.max() == n_want
    # the second image: two clicked nuclei
    v = 0
    for y, x in ((30, 30), (100, 120)):
        s, st = c.post("/api/click", {"name": names[1], "version": v, "y": y, "x": x})
        s, st = c.post("/api/accept", {"name": names[1], "version": st["version"]})
        v = st["version"]
    s, st = c.post("/api/click", {"name": names[1], "version": v, "y": 200, "x": 200})  # pending, not saved
    s, saved = c.post("/api/save", {"name": names[1], "version": st["version"]})
    s, st = c.post("/api/accept", {"name": names[1], "version": st["version"]})  # a change after the save
    out = tmp_path / "records"
    summary = export_records(ws, str(out))
    assert summary["splits"]["train"]["images"] == 2 and summary["splits"]["train"]["nuclei"] == n_want + 2
    assert summary["not_saved"] == ["z_" + names[0]] and summary["unsaved"] == [names[1]]
    got = {s.image_id: s for s in records.read_samples(select(str(out), "train")[0])}
    assert sorted(got) == sorted(names)
    assert got[names[0]].num_instances == n_want and got[names[1]].num_instances == 2
    assert np.array_equal(got[names[0]].image, read_rgb(str(images / names[0])))
    assert load_summary(str(out))["dataset"] == "annotate"
    # the page's Export button and the CLI give the same records
    s, r = c.post("/api/export", {})
    assert s == 200 and (r["images"], r["nuclei"]) == (2, n_want + 2)
    assert main(["annotate", "--images", str(images), "--out", ws.out, "--export", str(tmp_path / "cli"),
                 "--holdout", "1"]) == 0  # names[1] sorts last: the validation split
    sp = load_summary(str(tmp_path / "cli"))["splits"]
    assert {k: (v["images"], v["nuclei"], v["image_ids"]) for k, v in sp.items()} == {
        "train": (1, n_want, [names[0]]), "test": (1, 2, [names[1]])}
    assert main(["annotate", "--images", str(images), "--out", ws.out, "--export", str(tmp_path / "x"),
                 "--holdout", "2"]) == 2


def test_cli_needs_a_model_unless_exporting(tmp_path, capsys):
    from histozoo.cli import main

    images = _images(tmp_path, 1)
    assert main(["annotate", "--images", str(images)]) == 2
    assert "give --model" in capsys.readouterr().err
    assert main(["annotate", "--images", str(tmp_path / "missing"), "--export", str(tmp_path / "r")]) == 2
    assert main(["annotate", "--images", str(images), "--export", str(tmp_path / "r")]) == 2  # nothing saved yet
    assert "no saved annotations" in capsys.readouterr().err
