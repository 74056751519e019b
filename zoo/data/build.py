"""Build GZIP record shards of a dataset: reader -> records.encode -> ``{split}-NNNNN.tfrecord.gz``.

Writes, in ``out``: the shards, ``summary.json`` (per split: images, nuclei, points, counts per class, image ids)
and, for datasets with cross-validation folds, ``folds.json``. Everything is first written into a hidden
temporary folder inside ``out`` and moved into place only when the whole build succeeded, so a failed build
leaves ``out`` as it was and names the input file that broke it.

The temporary folder's name carries the building process's PID (``.building-<pid>-<random>``). A build killed
with SIGKILL cannot remove it, so every new build first removes the ``.building-<pid>-*`` folders in ``out`` whose
process is no longer running (``remove_stale_builds``); a running build's folder is never touched.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import tempfile
import time
from collections import Counter, defaultdict

import numpy as np

from zoo.atomic import write_json
from zoo.data import records
from zoo.data.readers import get_reader
from zoo.data.sample import Sample
from zoo.errors import DataError, ZooError

SUMMARY = "summary.json"
FOLDS = "folds.json"
BUILDING_PREFIX = ".building-"
_BUILDING = re.compile(r"^\.building-(\d+)-")


def _counts(sample: Sample, class_names: tuple) -> dict:
    """Per-image nucleus counts by type name ("unknown" for type 0) from instances and points."""
    by_class: Counter = Counter()
    if sample.instances is not None:
        ids = np.unique(sample.instances)
        ids = ids[ids != 0]
        cls = dict(zip(np.asarray(sample.instance_ids if sample.instance_ids is not None else [], int).tolist(),
                       np.asarray(sample.instance_classes if sample.instance_classes is not None else [], int).tolist()))
        for i in ids.tolist():
            by_class[_type_name(cls.get(i, 0), class_names)] += 1
    points: Counter = Counter()
    if sample.points_yx is not None:
        pc = sample.point_classes if sample.point_classes is not None else np.zeros(sample.num_points, int)
        for c in np.asarray(pc).tolist():
            points[_type_name(c, class_names)] += 1
    return {"nuclei": sample.num_instances, "points": sample.num_points,
            "nuclei_by_class": dict(by_class), "points_by_class": dict(points)}


def _type_name(c: int, class_names: tuple) -> str:
    return class_names[c - 1] if 1 <= c <= len(class_names) else "unknown"


class DatasetWriter:
    """Writes Samples into per-split GZIP shards plus ``summary.json`` (and ``folds.json``) in ``out``, atomically.

    Everything goes into a hidden temporary folder inside ``out``; ``commit`` moves the files into place (replacing a
    previous build's) and an exception inside the ``with`` block deletes them, leaving ``out`` as it was::

        with DatasetWriter(out, class_names) as w:
            for sample in samples:
                w.add(sample)
            summary = w.commit(dataset="tnbc", root=root, options={}, folds=None)
    """

    def __init__(self, out: str, class_names: tuple = (), per_shard: int = 32):
        os.makedirs(out, exist_ok=True)
        self.out, self.class_names, self.per_shard = out, tuple(class_names), per_shard
        self.removed_stale = remove_stale_builds(out)
        self.tmp = tempfile.mkdtemp(prefix=f"{BUILDING_PREFIX}{os.getpid()}-", dir=out)
        self.writers: dict[str, records.ShardWriter] = {}
        self.splits: dict[str, dict] = defaultdict(lambda: {
            "images": 0, "nuclei": 0, "points": 0, "nuclei_by_class": Counter(), "points_by_class": Counter(),
            "sources": set(), "image_ids": []})
        self.t0 = time.time()

    def add(self, sample: Sample, record: bytes | None = None) -> None:
        """Append one sample (``record``: its ``records.encode`` bytes when already encoded)."""
        if sample.split not in self.writers:
            self.writers[sample.split] = records.ShardWriter(self.tmp, sample.split, self.per_shard)
        self.writers[sample.split].write(record if record is not None else records.encode(sample))
        s, c = self.splits[sample.split], _counts(sample, self.class_names or sample.class_names)
        s["images"] += 1
        s["nuclei"] += c["nuclei"]
        s["points"] += c["points"]
        s["nuclei_by_class"].update(c["nuclei_by_class"])
        s["points_by_class"].update(c["points_by_class"])
        s["sources"].add(sample.source_id)
        s["image_ids"].append(sample.image_id)

    def commit(self, dataset: str, root, options: dict, folds: list | None = None,
               skipped: list | None = None, scheme: str = "leave-one-source-out") -> dict:
        """Write summary.json (with ``skipped``: the reader's (path, reason) pairs it left out) and move into place."""
        shards = {k: [os.path.basename(p) for p in w.close()] for k, w in self.writers.items()}
        summary = {
            "dataset": dataset, "root": root, "options": options, "class_names": list(self.class_names),
            "splits": {k: {"images": v["images"], "nuclei": v["nuclei"], "points": v["points"],
                           "nuclei_by_class": dict(sorted(v["nuclei_by_class"].items())),
                           "points_by_class": dict(sorted(v["points_by_class"].items())),
                           "sources": len(v["sources"]), "image_ids": v["image_ids"], "shards": shards[k]}
                       for k, v in sorted(self.splits.items())},
        }
        if skipped:
            summary["skipped"] = [{"path": p, "reason": r} for p, r in skipped]
        write_json(os.path.join(self.tmp, SUMMARY), summary)
        if folds:
            write_json(os.path.join(self.tmp, FOLDS), {"dataset": dataset, "scheme": scheme,
                                                       "folds": folds})
        _commit(self.tmp, self.out)
        summary["wall_s"] = round(time.time() - self.t0, 2)
        summary["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        return summary

    def abort(self) -> None:
        for w in self.writers.values():
            w.abort()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or os.path.isdir(self.tmp):
            self.abort()


def write_samples(out: str, samples, dataset: str = "test", root: str = "") -> dict:
    """Write ``samples`` (zoo.data.sample.Sample, each with its split) as one built records folder at ``out`` ->
    its summary (DatasetWriter: atomic, a hidden folder moved into place when complete)."""
    with DatasetWriter(str(out)) as w:
        for s in samples:
            w.add(s)
        return w.commit(dataset, root or str(out), {})


def build(dataset: str, root: str, out: str, per_shard: int = 32, progress: bool = True, **options) -> dict:
    """Read ``dataset`` from ``root`` and write its records into ``out``; returns the summary dict."""
    reader = get_reader(dataset)(root, **options)
    items = reader.items()
    if not items:
        raise DataError(root, f"no {dataset} images found")
    with DatasetWriter(out, reader.class_names, per_shard) as w:
        for item in progress_bar(items, f"{dataset}", progress):
            try:
                sample = reader.read(item)
                rec = records.encode(sample)
            except ZooError:
                raise
            except Exception as e:
                raise DataError(reader.describe(item), f"failed to read ({type(e).__name__}: {e})") from None
            w.add(sample, rec)
        return w.commit(dataset, os.path.abspath(root), options, reader.folds(), reader.skipped, reader.fold_scheme)


def _pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (signal 0 checks without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OverflowError:
        return False
    return True


def remove_stale_builds(out: str) -> list[str]:
    """Remove the temporary ``.building-<pid>-*`` folders in ``out`` left by builds whose process is dead (killed
    with SIGKILL, or the machine lost power); return the removed paths. A folder of a live process is kept, and so
    is one whose name carries no PID (made before the PID was recorded: its owner cannot be told)."""
    removed = []
    try:
        names = os.listdir(out)
    except OSError:
        return removed
    for name in sorted(names):
        m = _BUILDING.match(name)
        path = os.path.join(out, name)
        if m and os.path.isdir(path) and not os.path.islink(path) and not _pid_alive(int(m.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.exists(path):
                removed.append(path)
    return removed


def _commit(tmp: str, out: str) -> None:
    """Replace the previous build's files in ``out`` by the new ones (each move is an atomic rename)."""
    old = [f for f in os.listdir(out) if f.endswith(records.SHARD_SUFFIX) or f in (SUMMARY, FOLDS)]
    new = set(os.listdir(tmp))
    for f in sorted(new):
        os.replace(os.path.join(tmp, f), os.path.join(out, f))
    for f in old:
        if f not in new:
            os.remove(os.path.join(out, f))
    os.rmdir(tmp)


def progress_bar(items, desc: str, enabled: bool = True):
    """``items`` wrapped in a tqdm bar (or as they are when disabled)."""
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="img", dynamic_ncols=True)


def load_summary(data_dir: str) -> dict:
    path = os.path.join(data_dir, SUMMARY)
    if not os.path.isfile(path):
        raise DataError(data_dir, f"no {SUMMARY}: not a built data directory (run `histozoo data build`)")
    with open(path) as fh:
        return json.load(fh)


def select(data_dir: str, split: str = "train", fold: int | None = None) -> tuple[list[str], set[str] | None]:
    """The shard paths and image-id filter for ``split`` of a built dataset.

    Without ``fold``: the shards of that split, no filter. With ``fold=k`` (datasets with folds.json, e.g.
    TNBC's 11 leave-one-patient-out folds): all shards, filtered to fold k's ``train`` or ``test`` image ids.
    """
    if fold is None:
        return records.list_shards(data_dir, split), None
    path = os.path.join(data_dir, FOLDS)
    if not os.path.isfile(path):
        raise DataError(data_dir, f"--fold given but the dataset has no {FOLDS}")
    with open(path) as fh:
        folds = {f["fold"]: f for f in json.load(fh)["folds"]}
    if fold not in folds:
        raise DataError(path, f"fold {fold} does not exist (folds: {min(folds)}..{max(folds)})")
    if split not in ("train", "test"):
        raise DataError(path, f"with --fold the split must be 'train' or 'test', got {split!r}")
    return records.list_shards(data_dir), set(folds[fold][split])


def format_summary(summary: dict) -> str:
    """A plain-text table of the per-split counts."""
    names = sorted({c for s in summary["splits"].values() for c in list(s["nuclei_by_class"]) + list(s["points_by_class"])})
    head = ["split", "images", "sources", "nuclei", "points"] + [f"{n}" for n in names]
    rows = []
    for k, s in summary["splits"].items():
        per = [s["nuclei_by_class"].get(n, 0) + s["points_by_class"].get(n, 0) for n in names]
        rows.append([k, s["images"], s["sources"], s["nuclei"], s["points"]] + per)
    if len(rows) > 1:
        rows.append(["total"] + [sum(r[i] for r in rows) for i in range(1, len(head))])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda r: "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths)))
    lines = [f"{summary['dataset']}: " + ("per-class columns count nuclei + points" if names else "untyped"),
             fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    return "\n".join(lines)
