"""Your own data: a folder of images + a folder of instance labels (label images, .npy, binary masks or QuPath GeoJSON).

    histozoo data build folder --root mydata --out build/mydata          # mydata/images + mydata/labels
    histozoo data build folder --images tiles --geojson qupath --classes classes.txt --sources sources.csv --out ...

Every path option is relative to ``root`` (default: the current folder); ``images`` defaults to ``root/images`` and
``labels`` to ``root/labels``. A worked example is in docs/own_data.md.

**Pairing.** Images are found recursively (``.png .jpg .jpeg .tif .tiff .bmp``, hidden files ignored); an image's
*key* is its path relative to the images folder without the extension (``slide3/tile_01``), and is its image_id.
A label file pairs with the image of the same key, after removing from the label's key, in this order: an image
extension left in the name (QuPath's ``tile_01.tif.geojson``), then one suffix from ``LABEL_SUFFIXES``
(``_label``, ``_mask``, ``_instances``, ... ; ``label_suffix=`` gives your own). The exact key wins over a
suffixed one; two label files for one image are an error. Labels: ``.png .tif .tiff .npy`` (integer label image,
8/16/32-bit), or with ``geojson=`` a folder of ``.geojson`` / ``.json`` files (``zoo.data.geojson``: pixel-corner
coordinates, smaller-instance-wins overlap rule). Class maps (``class_maps=``) pair the same way
(suffixes ``_class``, ``_classes``, ``_type``, ``_types`` too).

**Labels.** An integer label image is an instance map, 0 = background, ids kept as given (renumbered 1..N in
increasing order only when an id exceeds 65535, the record format's limit). ``binary=true``: the mask's
non-zero pixels are split into connected components (``connectivity`` 8 (default) or 4), as the TNBC reader does; a
mask with more than two values is then an error. Without ``binary``, a label whose only non-zero value is repeated
over several separate regions (a 0/255 mask) is an error that says to pass ``--binary`` (``binary=false`` keeps it
as one instance). Images follow ``zoo.data.imageio`` (RGBA composited on white unless alpha is all 255, grey
replicated, 16-bit scaled by 1/257).

**Classes** follow DESIGN.md: type i = class_names[i - 1], 0 = unknown type. Names come from ``classes=`` (a .txt
file, one name per line, ``#`` comments and blank lines ignored; or .json: a list of names, ``{"classes": [...]}``,
``{name: index}`` or ``{"index": name}`` with indices exactly 1..K; "background" is not a type and must not be
listed). Per-instance types come from one of: ``instance_classes=`` a CSV with columns ``image, instance, class``
(class = a name or an index 0..K); ``class_maps=`` a folder of per-pixel class images (each instance takes the
most frequent non-zero class under it; ties -> the smaller index; none -> 0); or the GeoJSON classification
names. Without ``classes=`` the names are the sorted distinct names found in the CSV or the GeoJSON files
(a class map or integer classes need ``classes=``). An unknown name is an error naming the file and the row.

**Sources and splits.** ``sources=`` a CSV with an ``image`` column and any of ``source`` (alias ``patient``),
``split``, ``organ``, ``site``, ``mpp``, ``tissue_class`` (image-level class index); or ``source_pattern=`` a regex
searched in the image key whose group ``source`` (or first group) is the source id; otherwise every image is its own
source. CSV ``image`` values may be the key, the file name, or a stem that is unique. The split of an image is,
first match: the CSV's ``split`` column; ``split_pattern=`` (a regex with group ``split`` or a first group, e.g.
``^(train|val|test)/`` for images/train/...; "training"/"testing"/"valid(ation)" accepted); else a deterministic
split **by source**: sources sorted by sha256("<seed>:<source>"), the first round(test_fraction x n) go to test
(at least 1 when test_fraction > 0 and n >= 2), the next round(val_fraction x n) to val, the rest to train
(default test_fraction=0.2, val_fraction=0, seed=0; both 0 -> split "all"). Sources never straddle splits unless
the CSV or pattern says so. ``folds=true``: leave-one-source-out folds (folds.json, as for TNBC).

**Mismatches** (``on_error``): with "skip" (default) files that pair with nothing (an image without label, a label
without image) and CSV rows for images that are not there are left out and listed in one printed summary;
problems inside a pair (unreadable file, size mismatch, non-integer label values, unknown class, GeoJSON not
parseable or of an unsupported geometry) always raise ``DataError`` naming the file, and since the build is atomic
nothing is written: a broken annotation is never silently dropped from a training set. "raise" makes unpaired
files an error too. Other options: ``name`` (meta/dataset, default "folder"), ``mpp``, ``organ``, ``site`` (for
all images, unless the sources CSV says otherwise), ``object_types`` (GeoJSON objectTypes to keep, e.g.
"detection"), ``geojson_offset`` [x0, y0], ``overlap`` ("smaller", "later", "earlier").
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import sys

import numpy as np
from scipy import ndimage

from zoo.data.geojson import geojson_instances, read_geojson
from zoo.data.imageio import IMAGE_EXTS, check_same_size, read_label, read_rgb
from zoo.data.readers import Reader, register
from zoo.data.readers.tnbc import binary_to_instances
from zoo.data.sample import SPLITS, Sample
from zoo.errors import ConfigError, DataError

LABEL_EXTS = (".png", ".tif", ".tiff", ".npy")
GEOJSON_EXTS = (".geojson", ".json")
LABEL_SUFFIXES = ("_label", "_labels", "_mask", "_masks", "_instances", "_instance", "_inst", "_gt", "_annotations",
                  "-label", "-labels", "-mask", "-masks")
CLASS_MAP_SUFFIXES = ("_class", "_classes", "_class_map", "_type", "_types", "_type_map") + LABEL_SUFFIXES
SPLIT_ALIASES = {"training": "train", "testing": "test", "valid": "val", "validation": "val"}
MAX_ID = 65535


def _files(folder: str, exts: tuple) -> list[str]:
    out = []
    for d, dirs, files in os.walk(folder):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        out += [os.path.join(d, f) for f in sorted(files) if not f.startswith(".") and f.lower().endswith(exts)]
    return out


def _key(path: str, folder: str, exts: tuple) -> str:
    rel = os.path.relpath(path, folder).replace(os.sep, "/")
    for e in sorted(exts, key=len, reverse=True):
        if rel.lower().endswith(e):
            return rel[: -len(e)]
    return rel


def pair_files(image_keys: set, folder: str, exts: tuple, suffixes: tuple) -> tuple[dict, list]:
    """Pair the files under ``folder`` with image keys by the rule in the module docstring.

    Returns ({image key: file path}, [files that pair with no image]). Two files for one key raise DataError.
    """
    found: dict[str, list] = {}
    orphans = []
    for p in _files(folder, exts):
        k = _key(p, folder, exts)
        cands = [k]
        for e in IMAGE_EXTS:  # "tile.tif.geojson": QuPath names exports after the image, extension included
            if k.lower().endswith(e):
                cands.append(k[: -len(e)])
        cands += [c[: -len(s)] for c in list(cands) for s in suffixes if c.endswith(s) and len(c) > len(s)]
        hit = next((c for c in cands if c in image_keys), None)
        if hit is None:
            orphans.append(p)
        else:
            found.setdefault(hit, []).append((cands.index(hit), p))
    out = {}
    for k, ps in found.items():
        ps.sort()
        if len(ps) > 1 and ps[0][0] == ps[1][0]:
            raise DataError(ps[1][1], f"two label files for image {k!r}: {ps[0][1]} and {ps[1][1]}")
        out[k] = ps[0][1]
    return out, orphans


def read_class_names(path: str) -> tuple[str, ...]:
    """Class names from a .txt (one per line) or .json file, in type order 1..K (module docstring)."""
    if not os.path.isfile(path):
        raise DataError(path, "classes file not found")
    try:
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"unreadable classes file ({type(e).__name__}: {e})") from None
    if path.lower().endswith(".json"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, f"not valid JSON ({e.msg} at line {e.lineno})") from None
        if isinstance(obj, dict) and isinstance(obj.get("classes"), list):
            obj = obj["classes"]
        if isinstance(obj, dict):
            try:
                pairs = {int(v): str(k) for k, v in obj.items()} if all(
                    isinstance(v, int) for v in obj.values()) else {int(k): str(v) for k, v in obj.items()}
            except (TypeError, ValueError):
                raise DataError(path, "a JSON object of classes must map name -> index or \"index\" -> name") from None
            if sorted(pairs) != list(range(1, len(pairs) + 1)):
                raise DataError(path, f"class indices must be exactly 1..{len(pairs)} (0 is background / unknown), "
                                f"got {sorted(pairs)}")
            obj = [pairs[i] for i in range(1, len(pairs) + 1)]
        if not isinstance(obj, list) or not all(isinstance(x, str) for x in obj):
            raise DataError(path, "expected a JSON list of class names")
        names = [x.strip() for x in obj]
    else:
        names = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not names:
        raise DataError(path, "no class names in the file")
    if any(not n for n in names):
        raise DataError(path, "empty class name")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(path, f"class names listed twice: {', '.join(dup)}")
    if names[0].lower() in ("background", "bg", "none"):
        raise DataError(path, f"list only nucleus types: {names[0]!r} is class 0 (background / unknown) implicitly")
    return tuple(names)


def _read_csv(path: str, required: dict, optional: dict) -> list[dict]:
    """Rows of a CSV with a header; ``required`` / ``optional`` map a column to its accepted header aliases.
    Each row gets ``_line`` (its line number)."""
    if not os.path.isfile(path):
        raise DataError(path, "CSV file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            sample = fh.read(4096)
            fh.seek(0)
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t") if sample.strip() else csv.excel
            rows = list(csv.reader(fh, dialect))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(path, f"unreadable CSV ({type(e).__name__}: {e})") from None
    if not rows:
        raise DataError(path, "empty CSV (a header row is required)")
    head = [h.strip().lower() for h in rows[0]]
    cols = {}
    for name, aliases in {**required, **optional}.items():
        at = [i for i, h in enumerate(head) if h in aliases]
        if at:
            cols[name] = at[0]
        elif name in required:
            raise DataError(path, f"no {name!r} column in the header (expected one of {', '.join(aliases)}; "
                            f"found {', '.join(head)})")
    out = []
    for n, r in enumerate(rows[1:], start=2):
        if not any(x.strip() for x in r):
            continue
        if len(r) <= max(cols.values()):
            raise DataError(path, f"line {n}: {len(r)} fields, expected {max(cols.values()) + 1}")
        out.append({"_line": n, **{k: r[i].strip() for k, i in cols.items()}})
    return out


def _as_list(v) -> list | None:
    if v is None or isinstance(v, (list, tuple)):
        return None if v is None else [str(x) for x in v]
    return [x.strip() for x in str(v).split(",") if x.strip()]


def hash_split(sources: list[str], test_fraction: float, val_fraction: float, seed: int = 0) -> dict[str, str]:
    """Deterministic split of source ids: sorted by sha256("<seed>:<source>"), first round(test_fraction * n)
    (at least 1 when test_fraction > 0 and n >= 2) -> test, next round(val_fraction * n) -> val, rest -> train."""
    src = sorted(set(sources), key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n = len(src)
    if test_fraction <= 0 and val_fraction <= 0:
        return {s: "all" for s in src}
    n_test = int(round(test_fraction * n))
    n_test = max(n_test, 1) if test_fraction > 0 and n >= 2 else n_test
    n_val = int(round(val_fraction * n))
    n_val = max(n_val, 1) if val_fraction > 0 and n >= 3 else n_val
    n_test, n_val = min(n_test, n), min(n_val, max(n - n_test - 1, 0))
    return {s: "test" if i < n_test else "val" if i < n_test + n_val else "train" for i, s in enumerate(src)}


@register("folder")
class FolderReader(Reader):
    def __init__(self, root: str = ".", images: str = "images", labels: str | None = None,
                 geojson: str | None = None, classes: str | None = None, instance_classes: str | None = None,
                 class_maps: str | None = None, sources: str | None = None, source_pattern: str | None = None,
                 split_pattern: str | None = None, test_fraction: float = 0.2, val_fraction: float = 0.0,
                 seed: int = 0, binary: bool | None = None, connectivity: int = 8, label_suffix: str | None = None,
                 on_error: str = "skip", folds: bool = False, name: str = "folder", mpp: float = 0.0,
                 organ: str = "", site: str = "", object_types=None, geojson_offset=(0.0, 0.0),
                 overlap: str = "smaller", quiet: bool = False, **options):
        super().__init__(root, **options)
        if on_error not in ("skip", "raise"):
            raise ConfigError(f"folder: on_error must be 'skip' or 'raise', got {on_error!r}")
        if int(connectivity) not in (4, 8):
            raise ConfigError(f"folder: connectivity must be 4 or 8, got {connectivity!r}")
        if labels and geojson:
            raise ConfigError("folder: give either labels (label images) or geojson (polygon files), not both")
        if instance_classes and class_maps:
            raise ConfigError("folder: give either instance_classes (CSV) or class_maps (images), not both")
        if geojson and (instance_classes or class_maps or binary):
            raise ConfigError("folder: with geojson the classes come from the features' classification; "
                              "instance_classes / class_maps / binary do not apply")
        if binary and instance_classes:
            raise ConfigError("folder: instance_classes (CSV of instance ids) do not apply to binary masks, whose "
                              "instance ids are made by connected components; use class_maps instead")
        for f, v in (("test_fraction", float(test_fraction)), ("val_fraction", float(val_fraction))):
            if not 0.0 <= v < 1.0:
                raise ConfigError(f"folder: {f} must lie in [0, 1), got {v}")
        if float(test_fraction) + float(val_fraction) >= 1.0:
            raise ConfigError("folder: test_fraction + val_fraction must be < 1")
        self.dataset_name, self.mpp, self.organ, self.site = str(name), float(mpp), str(organ), str(site)
        self.binary = None if binary is None else bool(binary)
        self.connectivity, self.on_error, self.with_folds = int(connectivity), on_error, bool(folds)
        self.object_types, self.offset, self.overlap = _as_list(object_types), tuple(geojson_offset), overlap
        self.quiet = bool(quiet)
        at = lambda p: None if p in (None, "") else os.path.join(self.root, os.path.expanduser(str(p)))
        self.images_dir = at(images)
        if not os.path.isdir(self.images_dir):
            raise DataError(self.images_dir, "images folder not found")
        if labels is None and geojson is None:
            labels = "labels"
            if not os.path.isdir(at(labels)):
                raise ConfigError(f"folder: no labels given and no {at(labels)} folder: pass --labels DIR "
                                  "(label images / masks) or --geojson DIR (QuPath GeoJSON)")
        self.labels_dir, self.geojson_dir, self.class_maps_dir = at(labels), at(geojson), at(class_maps)
        for d in (self.labels_dir, self.geojson_dir, self.class_maps_dir):
            if d is not None and not os.path.isdir(d):
                raise DataError(d, "folder not found")
        self.skipped: list[tuple[str, str]] = []  # (path, reason) of what was left out
        self._stems: dict | None = None

        # ---- pairing
        self.image_paths: dict[str, str] = {}
        for p in _files(self.images_dir, IMAGE_EXTS):
            k = _key(p, self.images_dir, IMAGE_EXTS)
            if k in self.image_paths:
                raise DataError(p, f"two images with the key {k!r}: {self.image_paths[k]} and {p}")
            self.image_paths[k] = p
        if not self.image_paths:
            raise DataError(self.images_dir, f"no images ({' '.join(IMAGE_EXTS)}) in the images folder")
        keys = set(self.image_paths)
        suffixes = (label_suffix,) if label_suffix else LABEL_SUFFIXES
        lab_dir, lab_exts = (self.geojson_dir, GEOJSON_EXTS) if self.geojson_dir else (self.labels_dir, LABEL_EXTS)
        self.label_paths, orphans = pair_files(keys, lab_dir, lab_exts, suffixes)
        self._problem([(p, "label without image") for p in orphans])
        self._problem([(self.image_paths[k], "image without label") for k in sorted(keys - set(self.label_paths))])
        self.class_map_paths = {}
        if self.class_maps_dir:
            cm_suffixes = (label_suffix,) + CLASS_MAP_SUFFIXES if label_suffix else CLASS_MAP_SUFFIXES
            self.class_map_paths, orphans = pair_files(set(self.label_paths), self.class_maps_dir, LABEL_EXTS,
                                                       cm_suffixes)
            self._problem([(p, "class map without image") for p in orphans])
            missing = sorted(set(self.label_paths) - set(self.class_map_paths))
            self._problem([(self.image_paths[k], "image without class map") for k in missing])
            for k in missing:
                del self.label_paths[k]
        self.keys = sorted(self.label_paths)
        if not self.keys:
            raise DataError(self.images_dir, "no image could be paired with a label "
                            f"(labels in {lab_dir}; see the pairing rule in docs/own_data.md)")

        # ---- classes
        self.class_names: tuple = read_class_names(at(classes)) if classes else ()
        self.instance_class_rows: dict[str, dict[int, int]] = {}
        if instance_classes:
            self._read_instance_classes(at(instance_classes))
        elif self.geojson_dir and not classes:
            names = set()
            for k in self.keys:
                feats = read_geojson(self.label_paths[k])
                names |= {f.class_name for f in feats if f.class_name is not None
                          and (self.object_types is None or not f.object_type or f.object_type in self.object_types)}
            self.class_names = tuple(sorted(names))
        elif self.class_maps_dir and not classes:
            raise ConfigError("folder: class_maps need --classes (the names of class indices 1..K)")

        # ---- sources and splits
        self.meta = {k: {} for k in self.keys}
        if sources and source_pattern:
            raise ConfigError("folder: give either sources (CSV) or source_pattern (regex), not both")
        if sources:
            self._read_sources(at(sources))
        if source_pattern:
            try:
                rx = re.compile(source_pattern)
            except re.error as e:
                raise ConfigError(f"folder: source_pattern {source_pattern!r} is not a valid regex ({e})") from None
            for k in self.keys:
                m = rx.search(k)
                if m is None:
                    raise DataError(self.image_paths[k], f"source_pattern {source_pattern!r} does not match the "
                                    f"image key {k!r}")
                g = m.groupdict().get("source") or (m.group(1) if rx.groups else m.group(0))
                self.meta[k]["source"] = g
        self.source = {k: self.meta[k].get("source") or k for k in self.keys}
        if any("split" in m for m in self.meta.values()):
            missing = [k for k in self.keys if "split" not in self.meta[k]]
            if missing:
                raise DataError(at(sources), f"no split for {len(missing)} image(s) (e.g. {missing[0]!r}): give "
                                "every image a split, or drop the split column")
            self.split = {k: self.meta[k]["split"] for k in self.keys}
        elif split_pattern:
            try:
                rx = re.compile(split_pattern)
            except re.error as e:
                raise ConfigError(f"folder: split_pattern {split_pattern!r} is not a valid regex ({e})") from None
            self.split = {}
            for k in self.keys:
                m = rx.search(k)
                v = (m.groupdict().get("split") or (m.group(1) if rx.groups else m.group(0))) if m else None
                v = SPLIT_ALIASES.get(str(v).lower(), str(v).lower()) if v is not None else None
                if v not in SPLITS:
                    raise DataError(self.image_paths[k], f"split_pattern {split_pattern!r} gives "
                                    f"{'no match' if m is None else repr(v)} for image key {k!r} "
                                    f"(expected one of {', '.join(SPLITS)})")
                self.split[k] = v
        else:
            by_source = hash_split(list(self.source.values()), float(test_fraction), float(val_fraction), int(seed))
            self.split = {k: by_source[self.source[k]] for k in self.keys}
        self._report()

    # ------------------------------------------------------------------------------------------ helpers
    def _problem(self, items: list[tuple[str, str]]) -> None:
        if items and self.on_error == "raise":
            path, reason = items[0]
            more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
            raise DataError(path, f"{reason}{more}; on_error=skip leaves unpaired files out")
        self.skipped += items

    def _report(self) -> None:
        if not self.skipped or self.quiet:
            return
        lines = [f"folder: {len(self.keys)} image(s) paired; left out {len(self.skipped)} item(s):"]
        for path, reason in self.skipped[:20]:
            lines.append(f"  {reason}: {path}")
        if len(self.skipped) > 20:
            lines.append(f"  ... and {len(self.skipped) - 20} more")
        print("\n".join(lines), file=sys.stderr)

    def _lookup(self, value: str) -> str | None:
        """The image key a CSV 'image' value names: the key, the key with an image extension, or a unique stem."""
        v = value.replace("\\", "/")
        for e in IMAGE_EXTS:
            if v.lower().endswith(e):
                v = v[: -len(e)]
                break
        if v in self.image_paths:
            return v
        if self._stems is None:
            stems: dict[str, list] = {}
            for k in self.image_paths:
                stems.setdefault(k.rsplit("/", 1)[-1], []).append(k)
            self._stems = {s: ks[0] for s, ks in stems.items() if len(ks) == 1}
        return self._stems.get(v)

    def _rows_by_image(self, path: str, rows: list[dict], what: str) -> dict[str, list]:
        out: dict[str, list] = {}
        unknown = []
        for r in rows:
            k = self._lookup(r["image"])
            if k is None:
                unknown.append((f"{path}:{r['_line']}", f"{what} row for an image that is not there ({r['image']!r})"))
            elif k in self.label_paths:
                out.setdefault(k, []).append(r)
        self._problem(unknown)
        return out

    def _read_sources(self, path: str) -> None:
        rows = _read_csv(path, {"image": ("image", "image_id", "file", "filename", "name")},
                         {"source": ("source", "source_id", "patient", "patient_id", "slide"), "split": ("split",),
                          "organ": ("organ",), "site": ("site",), "mpp": ("mpp", "microns_per_pixel"),
                          "tissue_class": ("tissue_class",)})
        for k, rs in self._rows_by_image(path, rows, "sources").items():
            if len(rs) > 1:
                raise DataError(path, f"lines {rs[0]['_line']} and {rs[1]['_line']}: image {k!r} listed twice")
            r = rs[0]
            m = self.meta[k]
            if r.get("source"):
                m["source"] = r["source"]
            if r.get("split"):
                s = SPLIT_ALIASES.get(r["split"].lower(), r["split"].lower())
                if s not in SPLITS:
                    raise DataError(path, f"line {r['_line']}: split {r['split']!r} is not one of {', '.join(SPLITS)}")
                m["split"] = s
            for f in ("organ", "site"):
                if r.get(f):
                    m[f] = r[f]
            for f, kind in (("mpp", float), ("tissue_class", int)):
                if r.get(f):
                    try:
                        m[f] = kind(r[f])
                    except ValueError:
                        what = "an integer" if kind is int else "a number"
                        raise DataError(path, f"line {r['_line']}: {f} {r[f]!r} is not {what}") from None

    def _read_instance_classes(self, path: str) -> None:
        rows = _read_csv(path, {"image": ("image", "image_id", "file", "filename", "name"),
                                "instance": ("instance", "instance_id", "id", "label", "nucleus"),
                                "class": ("class", "class_name", "type", "class_id", "category")}, {})
        given = bool(self.class_names)
        if not given:
            names = {r["class"] for r in rows if not re.fullmatch(r"\d+", r["class"])}
            ints = [r for r in rows if re.fullmatch(r"\d+", r["class"]) and r["class"] != "0"]
            if ints:
                raise DataError(path, f"line {ints[0]['_line']}: integer class {ints[0]['class']!r} needs --classes "
                                "(the names of classes 1..K)")
            self.class_names = tuple(sorted(names))
        index = {n: i + 1 for i, n in enumerate(self.class_names)}
        for k, rs in self._rows_by_image(path, rows, "instance_classes").items():
            d = self.instance_class_rows.setdefault(k, {})
            for r in rs:
                if not re.fullmatch(r"\d+", r["instance"]) or int(r["instance"]) == 0:
                    raise DataError(path, f"line {r['_line']}: instance id {r['instance']!r} is not an integer >= 1")
                c = r["class"]
                if re.fullmatch(r"\d+", c):
                    c = int(c)
                    if c > len(self.class_names):
                        raise DataError(path, f"line {r['_line']}: class index {c} outside 0..{len(self.class_names)}")
                elif c in index:
                    c = index[c]
                else:
                    raise DataError(path, f"line {r['_line']}: unknown class {c!r} (classes: "
                                    f"{', '.join(self.class_names) or 'none'})")
                i = int(r["instance"])
                if d.get(i, c) != c:
                    raise DataError(path, f"line {r['_line']}: instance {i} of image {k!r} given two classes")
                d[i] = c
        self._class_csv = path

    # ------------------------------------------------------------------------------------------ reading
    def items(self) -> list[str]:
        return list(self.keys)

    def _instances(self, key: str, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(instance map, instance ids, their classes) of one image; ids/classes None for an untyped dataset."""
        path = self.label_paths[key]
        if self.geojson_dir:
            g = geojson_instances(path, image.shape[:2], self.class_names, self.object_types, self.offset,
                                  self.overlap)
            present = np.flatnonzero(np.bincount(g.instances.ravel(), minlength=len(g.instance_ids) + 1)[1:]) + 1
            cls = g.instance_classes[present - 1] if len(present) else np.zeros(0, np.int64)
            return g.instances, (present if self.class_names else None), (cls if self.class_names else None)
        lab = read_label(path)
        check_same_size(image, lab, path)
        vals = np.unique(lab)
        nz = vals[vals != 0]
        if self.binary:
            if len(vals) > 2:
                raise DataError(path, f"binary mask expected (0 and one foreground value), found {len(vals)} values "
                                f"({', '.join(map(str, vals[:6]))}{', ...' if len(vals) > 6 else ''}); drop --binary "
                                "for instance label images")
            lab = binary_to_instances(lab, self.connectivity)
            nz = np.arange(1, lab.max() + 1)
        elif self.binary is None and len(nz) == 1:
            n = ndimage.label(lab > 0, structure=np.ones((3, 3), bool))[1]
            if n > 1:
                raise DataError(path, f"looks like a binary mask (one value {nz[0]} over {n} separate regions): pass "
                                "--binary to split it into nuclei (or binary=false to keep it as one instance)")
        renum = None
        if nz.size and nz.max() > MAX_ID:
            renum = nz  # ids > 65535: renumber 1..N in increasing order
            lab = np.searchsorted(np.r_[0, nz], lab).astype(np.int32)
        if not self.class_names:
            return lab, None, None
        ids = np.flatnonzero(np.bincount(lab.ravel()))
        ids = ids[ids > 0]
        if self.class_maps_dir:
            cpath = self.class_map_paths[key]
            cmap = read_label(cpath)
            check_same_size(image, cmap, cpath)
            k = len(self.class_names)
            if cmap.max() > k:
                raise DataError(cpath, f"class {cmap.max()} outside 0..{k} (classes: {', '.join(self.class_names)})")
            m = (lab > 0) & (cmap > 0)
            table = np.bincount(lab[m].astype(np.int64) * (k + 1) + cmap[m], minlength=(lab.max() + 1) * (k + 1))
            table = table.reshape(-1, k + 1)[ids]
            cls = np.where(table.max(1) > 0, table.argmax(1), 0)
            return lab, ids, cls.astype(np.int64)
        given = self.instance_class_rows.get(key, {})
        orig = renum[ids - 1] if renum is not None else ids
        extra = sorted(set(given) - set(orig.tolist()))
        if extra:
            raise DataError(self._class_csv, f"image {key!r}: instance {extra[0]} is not in its label map {path}"
                            + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
        cls = np.array([given.get(i, 0) for i in orig.tolist()], np.int64)
        return lab, ids, cls

    def read(self, key: str) -> Sample:
        image = read_rgb(self.image_paths[key])
        inst, ids, cls = self._instances(key, image)
        m = self.meta[key]
        return Sample(image=image, image_id=key, dataset=self.dataset_name, source_id=self.source[key],
                      split=self.split[key], instances=inst, instance_ids=ids, instance_classes=cls,
                      organ=m.get("organ", self.organ), site=m.get("site", self.site), mpp=m.get("mpp", self.mpp),
                      tissue_class=m.get("tissue_class", -1), class_names=self.class_names)

    def folds(self) -> list[dict] | None:
        if not self.with_folds:
            return None
        srcs = sorted(set(self.source.values()))
        return [{"fold": n + 1, "test_source": s, "test": [k for k in self.keys if self.source[k] == s],
                 "train": [k for k in self.keys if self.source[k] != s]} for n, s in enumerate(srcs)]
