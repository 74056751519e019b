"""The annotation tool's working state: one image folder, one output folder, one state per image.

Safety rules (issue 23):

- **Paths**: an image is named by its file name only; a name with a separator, a NUL, a leading dot or ``..`` is
  refused (``Forbidden``), and so is a name whose real path (symlinks resolved) leaves the image folder. Only
  top-level image files of the folder are listed and served.
- **Two tabs**: every change carries the version of the state the page last saw; the image's lock serialises
  changes, and a change or save from a page whose version is not the current one is refused (``Conflict``, HTTP
  409) with a message saying so. Nothing is overwritten by a stale page.
- **Nothing lost**: the working state (accepted instances, pending clicks and mask, undo log, proposals) is written
  atomically to ``<out>/.work/<stem>.npz`` after every change, and read back when the image is opened again (a
  closed page, a restarted server).
- **Saves** are atomic as a set: the instance PNG (uint16, ids 1..N), the QuPath GeoJSON (``zoo.data.geojson``,
  pixel-edge outlines that read back to the same map) and ``<stem>.json`` (the version saved, counts) are written
  completely into temporary siblings first and renamed into place only when all three are written.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import threading
from typing import Callable, Optional

import numpy as np

from zoo import atomic
from zoo.data.imageio import IMAGE_EXTS, read_label, read_rgb
from zoo.errors import ConfigError

WORK = ".work"
LOCK = "server.lock"
MAX_ID = 65535  # the instance PNG is 16-bit


class AnnotateError(Exception):
    """A refused request; ``status`` is its HTTP status, the message is shown on the page."""

    status = 400


class BadRequest(AnnotateError):
    status = 400


class Forbidden(AnnotateError):
    status = 403


class NotFound(AnnotateError):
    status = 404


class Conflict(AnnotateError):
    status = 409


class State:
    """One image's working state (instance ids are int32 in memory, uint16 on disk)."""

    def __init__(self, name: str, stem: str, image: np.ndarray):
        self.name, self.stem, self.image = name, stem, image
        h, w = image.shape[:2]
        self.instances = np.zeros((h, w), np.int32)
        self.clicks: list[list] = []  # pending object's clicks: [y, x, positive]
        self.mask: Optional[np.ndarray] = None  # pending object's predicted mask (bool)
        self.undo: list[dict] = []
        self.next_id = 1
        self.version = 0
        self.saved_version = -1
        self.clicks_spent = 0  # clicks that made the accepted instances
        self.proposals: Optional[np.ndarray] = None  # the automatic model's instance map (ids 1..N)
        self.used: set[int] = set()  # proposal ids accepted
        self.proposal_index = 0  # the proposal shown (an id, 0 = none)

    # ----------------------------------------------------------------------------------------------- views
    def num_proposals(self) -> int:
        return 0 if self.proposals is None else int(self.proposals.max(initial=0))

    def unused(self) -> list[int]:
        return [i for i in range(1, self.num_proposals() + 1) if i not in self.used]

    def summary(self, message: str = "") -> dict:
        ids = np.unique(self.instances)
        return {"name": self.name, "version": self.version, "height": int(self.image.shape[0]),
                "width": int(self.image.shape[1]), "instances": int(np.count_nonzero(ids)),
                "clicks": self.clicks, "pending": int(self.mask.sum()) if self.mask is not None else 0,
                "clicks_spent": self.clicks_spent, "undo": len(self.undo),
                "proposals": None if self.proposals is None else self.num_proposals(),
                "proposals_left": len(self.unused()), "proposal": self.proposal_index,
                "saved_version": self.saved_version, "unsaved": self.saved_version != self.version,
                "message": message}

    # ------------------------------------------------------------------------------------------ persistence
    def to_npz(self, path: str) -> None:
        meta = {"name": self.name, "clicks": self.clicks, "undo": self.undo, "next_id": self.next_id,
                "version": self.version, "saved_version": self.saved_version, "clicks_spent": self.clicks_spent,
                "used": sorted(self.used), "proposal_index": self.proposal_index}
        empty = np.zeros((0, 0), np.uint8)
        with atomic.atomic_path(path) as tmp:
            np.savez_compressed(tmp, instances=self.instances.astype(np.uint16),
                                mask=empty if self.mask is None else self.mask.astype(np.uint8),
                                proposals=empty if self.proposals is None else self.proposals.astype(np.uint16),
                                meta=np.array(json.dumps(meta)))

    def from_npz(self, path: str) -> bool:
        """Restore from an autosave; False (state left fresh) when it does not fit this image."""
        try:
            with np.load(path, allow_pickle=False) as z:
                inst, mask, props, meta = z["instances"], z["mask"], z["proposals"], json.loads(str(z["meta"]))
        except (OSError, ValueError, KeyError):
            return False
        if inst.shape != self.instances.shape or meta.get("name") != self.name:
            return False
        self.instances = inst.astype(np.int32)
        self.mask = mask.astype(bool) if mask.size else None
        self.proposals = props.astype(np.int32) if props.size else None
        self.clicks, self.undo = meta["clicks"], meta["undo"]
        self.next_id, self.version, self.saved_version = meta["next_id"], meta["version"], meta["saved_version"]
        self.clicks_spent, self.used = meta["clicks_spent"], set(meta["used"])
        self.proposal_index = meta["proposal_index"]
        return True


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def png_bytes(arr: np.ndarray) -> bytes:
    """PNG of a uint8 RGB(A) / uint16 grey array (Pillow, fast compression: these go to a browser)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class Workspace:
    """An image folder, its output folder and the models; every page request ends in one method here.

    segmenter: an object with ``segment(image, clicks, prev_mask=None, fbrs=False) -> bool HxW`` (zoo.interactive)
    or None (then clicks are refused). auto: a ``zoo.inference.LoadedModel`` whose instances are the proposals, or
    None. mpp: the images' µm/px for the automatic model and the records (None: the model's own / unknown).
    """

    def __init__(self, images: str, out: Optional[str] = None, segmenter=None, auto=None,
                 mpp: Optional[float] = None, model_uri: str = "", auto_uri: str = ""):
        if not os.path.isdir(images):
            raise ConfigError(f"--images {images}: no such folder")
        self.root = os.path.realpath(images)
        self.out = atomic.check_output_dir(out or os.path.join(images, "annotations"), "--out")
        os.makedirs(os.path.join(self.out, WORK), exist_ok=True)
        self.segmenter, self.auto, self.mpp = segmenter, auto, mpp
        self.model_uri, self.auto_uri = model_uri, auto_uri
        self._states: dict[str, State] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._model_lock = threading.Lock()  # Keras models are called from one thread at a time

    # ------------------------------------------------------------------------------------------- the claim
    def acquire(self) -> None:
        """Claim the output folder for one server: ``.work/server.lock`` holds its PID. A folder claimed by a live
        process (this one included) is a ConfigError naming it: two servers would each keep their own state and
        overwrite each other's saves. A claim left by a dead process is taken over."""
        import uuid

        from zoo.data.build import _pid_alive

        path = os.path.join(self.out, WORK, LOCK)
        token = f"{os.getpid()} {uuid.uuid4().hex}"
        for _ in range(5):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    with open(path) as fh:
                        pid = int(fh.read().split()[0])
                except (OSError, ValueError, IndexError):
                    pid = -1
                if _pid_alive(pid):
                    raise ConfigError(f"--out {self.out}: another histozoo annotate (pid {pid}) serves this folder; "
                                      "stop it or give another --out") from None
                atomic.discard(path)  # a dead server's claim
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(token)
            self._token = token
            return
        raise ConfigError(f"--out {self.out}: could not claim {path}")

    def release(self) -> None:
        """Give up the claim of :meth:`acquire` (only this workspace's own)."""
        path = os.path.join(self.out, WORK, LOCK)
        token, self._token = getattr(self, "_token", None), None
        try:
            with open(path) as fh:
                mine = token is not None and fh.read() == token
        except OSError:
            return
        if mine:
            atomic.discard(path)

    # ------------------------------------------------------------------------------------------ the folder
    def _inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return os.path.commonpath([real, self.root]) == self.root and real != self.root

    def names(self) -> list[str]:
        """The top-level image files of the folder (sorted), symlinks out of it left out."""
        out = []
        for f in sorted(os.listdir(self.root)):
            p = os.path.join(self.root, f)
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTS) and self._inside(p) and os.path.isfile(p):
                out.append(f)
        return out

    def stems(self, names: Optional[list[str]] = None) -> dict[str, str]:
        from zoo.inference.outputs import output_stems

        names = self.names() if names is None else names
        return dict(zip(names, output_stems(names)))

    def resolve(self, name) -> str:
        """The real path of image ``name``; Forbidden for anything that leaves the folder, NotFound otherwise."""
        if not isinstance(name, str) or not name:
            raise BadRequest("give the image's file name (name=...)")
        if any(c in name for c in "/\\\x00") or name.startswith("."):
            raise Forbidden(f"{name!r}: refused, outside the image folder (give a file name of the folder)")
        path = os.path.join(self.root, name)
        if os.path.lexists(path) and not self._inside(path):
            raise Forbidden(f"{name!r}: refused, it resolves outside the image folder")
        if not (os.path.isfile(path) and name.lower().endswith(IMAGE_EXTS)):
            raise NotFound(f"{name!r}: no such image in {self.root}")
        return os.path.realpath(path)

    def files(self, name: str) -> dict[str, str]:
        stem = self.stems()[name]
        return {"instances": os.path.join(self.out, f"{stem}_instances.png"),
                "geojson": os.path.join(self.out, f"{stem}.geojson"),
                "meta": os.path.join(self.out, f"{stem}.json"),
                "work": os.path.join(self.out, WORK, f"{stem}.npz")}

    def listing(self) -> list[dict]:
        rows = []
        for name in self.names():
            meta = self.files(name)["meta"]
            saved = None
            if os.path.isfile(meta):
                try:
                    saved = atomic.read_json(meta).get("instances")
                except Exception:  # noqa: BLE001 — a damaged meta file just shows as not saved
                    saved = None
            rows.append({"name": name, "saved": saved is not None, "instances": saved})
        return rows

    # ------------------------------------------------------------------------------------------- the state
    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _state(self, name: str) -> State:
        """The state of ``name`` (caller holds its lock): in memory, else the autosave, else the saved files."""
        path = self.resolve(name)
        st = self._states.get(name)
        if st is not None:
            return st
        st = State(name, self.stems()[name], read_rgb(path))
        f = self.files(name)
        if os.path.isfile(f["work"]) and st.from_npz(f["work"]):
            pass
        elif os.path.isfile(f["instances"]):  # saved earlier, autosave gone: continue from the saved map
            inst = read_label(f["instances"])
            if inst.shape == st.instances.shape:
                st.instances = inst
                st.next_id = int(inst.max(initial=0)) + 1
                st.saved_version = 0
        self._states[name] = st
        return st

    def has_unsaved(self, name: str) -> bool:
        """Whether the working state of ``name`` changed after its last save."""
        return bool(self.view(name)["unsaved"]) if name in self._states or os.path.isfile(self.files(name)["work"]) \
            else False

    def view(self, name: str) -> dict:
        with self._lock(name):
            return self._state(name).summary()

    def change(self, name: str, version, op: Callable[[State], str]) -> dict:
        """Run ``op`` on the state under its lock when ``version`` is current, then bump the version and autosave."""
        if isinstance(version, bool) or not isinstance(version, int):
            raise BadRequest("give the version of the state this page shows (version: integer)")
        with self._lock(name):
            st = self._state(name)
            _check_version(st, version)
            msg = op(st)
            st.version += 1
            st.to_npz(self.files(name)["work"])
            return st.summary(msg)

    # ----------------------------------------------------------------------------------------- operations
    def _segment(self, st: State, prev: Optional[np.ndarray], fbrs: bool) -> Optional[np.ndarray]:
        if not st.clicks:
            return None
        if self.segmenter is None:
            raise BadRequest("no interactive model is loaded (start with --model)")
        clicks = [(int(y), int(x), bool(p)) for y, x, p in st.clicks]
        image, f = st.image, self._factor()
        if f != 1.0:  # the segmenter works at its own µm/px (zoo.interactive): resample there and back
            from zoo.inference import resize

            h, w = st.instances.shape
            shape = (max(1, round(h * f)), max(1, round(w * f)))
            image = np.clip(np.round(resize(image, shape, 1)), 0, 255).astype(np.uint8)
            clicks = [(min(int((y + 0.5) * f), shape[0] - 1), min(int((x + 0.5) * f), shape[1] - 1), p)
                      for y, x, p in clicks]
            prev = None if prev is None else resize(prev.astype(np.uint8), shape, 0).astype(bool)
        with self._model_lock:
            mask = np.asarray(self.segmenter.segment(image, clicks, prev_mask=prev, fbrs=bool(fbrs)))
        if mask.shape != image.shape[:2]:
            raise AnnotateError(f"the interactive model returned a mask of shape {mask.shape} for an image of "
                                f"{image.shape[:2]}")
        if f != 1.0:
            mask = resize(mask.astype(np.uint8), st.instances.shape, 0)
        return mask.astype(bool)

    def _factor(self) -> float:
        """Image -> segmenter scale: the images' µm/px (--mpp) over the segmenter's (1.0 when either is unknown or
        they agree within zoo.inference.MPP_TOLERANCE)."""
        from zoo.inference.spec import MPP_TOLERANCE

        model_mpp = float(getattr(self.segmenter, "mpp", 0.0) or 0.0)
        if not self.mpp or not model_mpp:
            return 1.0
        f = float(self.mpp) / model_mpp
        return 1.0 if abs(f - 1.0) <= MPP_TOLERANCE else f

    def click(self, name: str, version, y, x, positive, fbrs=False) -> dict:
        for k, v in (("y", y), ("x", x)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise BadRequest(f"click: {k} must be an integer pixel coordinate, got {v!r}")

        def op(st: State) -> str:
            h, w = st.instances.shape
            if not (0 <= y < h and 0 <= x < w):
                raise BadRequest(f"click ({y}, {x}) is outside the {h} x {w} image")
            if self.segmenter is None:
                raise BadRequest("no interactive model is loaded (start with --model)")
            st.clicks.append([y, x, bool(positive)])
            try:
                st.mask = self._segment(st, st.mask, fbrs)
            except BaseException:
                st.clicks.pop()
                raise
            st.undo.append({"op": "click"})
            return f"{'positive' if positive else 'negative'} click at ({y}, {x}): mask {int(st.mask.sum())} px"

        return self.change(name, version, op)

    def accept(self, name: str, version) -> dict:
        def op(st: State) -> str:
            if st.mask is None or not st.mask.any():
                raise BadRequest("nothing to accept: click a nucleus first")
            px = st.mask & (st.instances == 0)
            if not px.any():
                raise BadRequest("nothing to accept: the mask lies on nuclei accepted already")
            if st.next_id > MAX_ID:
                raise BadRequest(f"an image holds at most {MAX_ID} nuclei (16-bit PNG)")
            st.instances[px] = st.next_id
            st.undo.append({"op": "accept", "id": st.next_id, "clicks": st.clicks})
            st.clicks_spent += len(st.clicks)
            st.next_id += 1
            st.clicks, st.mask = [], None
            return f"nucleus {st.next_id - 1} accepted ({int(px.sum())} px)"

        return self.change(name, version, op)

    def clear(self, name: str, version) -> dict:
        def op(st: State) -> str:
            if not st.clicks:
                raise BadRequest("no pending clicks to clear")
            st.undo.append({"op": "clear", "clicks": st.clicks})
            st.clicks, st.mask = [], None
            return "pending clicks cleared"

        return self.change(name, version, op)

    def undo(self, name: str, version, fbrs=False) -> dict:
        def op(st: State) -> str:
            if not st.undo:
                raise BadRequest("nothing to undo")
            e = st.undo[-1]
            if e["op"] == "click":
                y, x, p = st.clicks.pop()
                try:
                    st.mask = self._segment(st, None, fbrs)  # recomputed from the remaining clicks
                except BaseException:
                    st.clicks.append([y, x, p])
                    raise
                msg = f"click at ({y}, {x}) undone"
            elif e["op"] == "clear":
                st.clicks = e["clicks"]
                st.mask = self._segment(st, None, fbrs)
                msg = "clear undone"
            elif e["op"] == "accept":
                px = st.instances == e["id"]
                st.instances[px] = 0
                st.clicks, st.mask = e["clicks"], px
                st.clicks_spent -= len(e["clicks"])
                msg = f"nucleus {e['id']} back to pending"
            else:  # proposals
                st.instances[np.isin(st.instances, e["ids"])] = 0
                st.used -= set(e["props"])
                msg = f"{len(e['ids'])} accepted proposal(s) removed"
            st.undo.pop()
            return msg

        return self.change(name, version, op)

    # ------------------------------------------------------------------------------------------- proposals
    def propose(self, name: str, version) -> dict:
        """Run the automatic model (``zoo.inference.predict``) on the image once; its instances are the proposals."""
        if self.auto is None:
            raise BadRequest("no automatic model is loaded (start with --auto-model)")

        def op(st: State) -> str:
            if st.proposals is None:
                from skimage.segmentation import relabel_sequential

                from zoo.inference import predict

                with self._model_lock:
                    pred = predict(self.auto.model, self.auto.spec, st.image, mpp=self.mpp)
                st.proposals = relabel_sequential(np.asarray(pred.instances, np.int32))[0]
                st.used = set()
            left = st.unused()
            st.proposal_index = left[0] if left else 0
            return f"{st.num_proposals()} proposals from the automatic model, {len(left)} not accepted"

        return self.change(name, version, op)

    def proposal(self, name: str, version, action: str) -> dict:
        if action not in ("next", "prev", "accept", "accept_all"):
            raise BadRequest(f"proposal action must be next, prev, accept or accept_all, got {action!r}")

        def op(st: State) -> str:
            left = st.unused()
            if st.proposals is None:
                raise BadRequest("no proposals yet: press Proposals first")
            if not left:
                raise BadRequest("every proposal is accepted already")
            if action in ("next", "prev"):
                i = st.proposal_index
                later = [p for p in left if (p > i if action == "next" else p < i)]
                st.proposal_index = (later[0] if action == "next" else later[-1]) if later else \
                    (left[0] if action == "next" else left[-1])
                return f"proposal {st.proposal_index} of {st.num_proposals()}"
            take = left if action == "accept_all" else [st.proposal_index if st.proposal_index in left else left[0]]
            ids, props = [], []
            for p in take:
                px = (st.proposals == p) & (st.instances == 0)
                if not px.any() or st.next_id > MAX_ID:
                    continue
                st.instances[px] = st.next_id
                ids.append(st.next_id)
                props.append(p)
                st.next_id += 1
            st.used |= set(take)
            st.undo.append({"op": "proposals", "ids": ids, "props": props})
            rest = st.unused()
            st.proposal_index = next((p for p in rest if p > take[-1]), rest[0] if rest else 0)
            return f"{len(ids)} proposal(s) accepted as nuclei"

        return self.change(name, version, op)

    # ------------------------------------------------------------------------------------------------ save
    def save(self, name: str, version) -> dict:
        """Write the instance PNG, the GeoJSON and the meta JSON atomically as a set (module docstring)."""
        from skimage.segmentation import relabel_sequential

        from zoo.data.geojson import instances_to_features

        if isinstance(version, bool) or not isinstance(version, int):
            raise BadRequest("give the version of the state this page shows (version: integer)")
        with self._lock(name):
            st = self._state(name)
            _check_version(st, version)
            inst = relabel_sequential(st.instances)[0].astype(np.uint16)
            n = int(inst.max(initial=0))
            feats = instances_to_features(inst)
            f = self.files(name)
            meta = {"image": name, "version": st.version, "instances": n, "height": int(inst.shape[0]),
                    "width": int(inst.shape[1]), "clicks": st.clicks_spent,
                    "proposals_accepted": len(st.used), "model": self.model_uri, "auto_model": self.auto_uri,
                    "saved": _now()}
            staged = []
            try:  # every file complete under a temporary name before any is renamed into place
                for key, write in (("instances", lambda p: atomic.save_image(p, inst, format="PNG")),
                                   ("geojson", lambda p: _write_features(feats, p)),
                                   ("meta", lambda p: atomic.write_json(p, meta, indent=1))):
                    tmp = atomic.temp_sibling(f[key])
                    staged.append((tmp, f[key]))
                    write(tmp)
                for tmp, path in staged:
                    atomic.commit(tmp, path)
            except BaseException:
                for tmp, _ in staged:
                    atomic.discard(tmp)
                raise
            st.saved_version = st.version
            st.to_npz(f["work"])
            return {**st.summary(f"saved {n} nuclei"), "files": {k: f[k] for k in ("instances", "geojson", "meta")}}

    # --------------------------------------------------------------------------------------------- drawing
    def image_png(self, name: str) -> bytes:
        with self._lock(name):
            img = self._state(name).image
        return png_bytes(img)

    def overlay_png(self, name: str) -> bytes:
        """RGBA overlay: accepted nuclei green, the pending mask yellow, proposals cyan outlines, the proposal shown
        magenta."""
        from skimage.segmentation import find_boundaries

        with self._lock(name):
            st = self._state(name)
            inst = st.instances.copy()
            mask = None if st.mask is None else st.mask.copy()
            props = None if st.proposals is None else st.proposals.copy()
            unused, cur = st.unused(), st.proposal_index
        h, w = inst.shape
        rgba = np.zeros((h, w, 4), np.uint8)
        if props is not None and unused:
            shown = np.where(np.isin(props, unused), props, 0)
            rgba[find_boundaries(shown, mode="inner")] = (0, 200, 255, 200)
            if cur in unused:
                rgba[props == cur] = (255, 0, 255, 90)
                rgba[find_boundaries(props == cur, mode="inner")] = (255, 0, 255, 255)
        rgba[inst > 0] = (0, 220, 0, 110)
        rgba[find_boundaries(inst, mode="inner") & (inst > 0)] = (0, 255, 0, 255)
        if mask is not None:
            rgba[mask] = (255, 220, 0, 150)
            rgba[find_boundaries(mask, mode="inner") & mask] = (255, 190, 0, 255)
        return png_bytes(rgba)


def _write_features(feats: list, path: str) -> None:
    from zoo.data.geojson import write_features

    write_features(feats, path)


def _check_version(st: State, version: int) -> None:
    if version != st.version:
        raise Conflict(f"{st.name} was changed in another tab or window (this page shows version {version}, the "
                       f"server has version {st.version}); nothing was overwritten; reload the image to continue")
