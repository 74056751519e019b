"""Atomic writes: the one home of "temp file + rename" (DESIGN.md: a crash never leaves a half-written file under
its real name).

Every helper writes into a hidden temporary sibling of the final path (same folder, so the rename stays on one
file system) and renames it into place only when the write finished; on any exception the temporary is removed
and nothing appears under the final name.

- ``atomic_path(path)``: context manager yielding a temporary file name to write by any means (a Keras
  ``model.save``, ``fig.savefig``, a ``TFRecordWriter``...); it keeps the final extension so writers that pick
  their format from the name still do.
- ``temp_sibling`` / ``commit`` / ``discard``: the same in three calls, for writers whose life spans several calls
  (record shards).
- ``write_bytes``, ``write_text``, ``write_json``, ``save_image``: whole files in one call.
- ``atomic_dir(path)``: a folder built in a temporary sibling and renamed into place.
- ``check_output_dir(path)``: validate an output folder before any work starts (one-line ``ConfigError``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from typing import Iterator

__all__ = ["atomic_path", "temp_sibling", "commit", "discard", "write_bytes", "write_text", "write_json",
           "read_json", "save_image", "atomic_dir", "check_output_dir"]


def temp_sibling(path: str | os.PathLike, keep_suffix: bool = True) -> str:
    """A fresh, unused hidden name beside ``path`` (``.<name>.tmp-<pid>-<random><ext>``); creates the folder.

    The leading dot keeps a left-over temporary (after a hard kill) out of ``glob('*.png')`` style listings;
    ``keep_suffix`` keeps the final extension (``.keras``, ``.png``, ``.tif``) for writers that need it.
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    ext = _suffix(name) if keep_suffix else ""
    return os.path.join(folder, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{ext}")


def _suffix(name: str) -> str:
    # two-part extensions matter to some writers and readers (.tfrecord.gz, .ome.tif, .tar.gz)
    base, ext = os.path.splitext(name)
    base2, ext2 = os.path.splitext(base)
    if ext2 and ext.lower() in (".gz", ".bz2", ".xz", ".zst", ".tif", ".tiff") and len(ext2) <= 9:
        return ext2 + ext
    return ext


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> str:
    """Rename the finished temporary ``tmp`` onto ``path`` (atomic on one file system); returns ``path``."""
    os.replace(tmp, path)
    return os.fspath(path)


def discard(tmp: str | os.PathLike | None) -> None:
    """Remove a temporary file or folder if it exists (never raises for a missing one)."""
    if tmp is None:
        return
    tmp = os.fspath(tmp)
    if os.path.isdir(tmp) and not os.path.islink(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = True) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; on a clean exit it is renamed onto ``path``.

    If the block raises (or writes nothing), the temporary is removed and ``path`` is left as it was.
    """
    tmp = temp_sibling(path, keep_suffix=keep_suffix)
    try:
        yield tmp
        if not os.path.exists(tmp):
            raise FileNotFoundError(f"{path}: the writer produced no file")
        commit(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return os.fspath(path)


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> str:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding=encoding) as fh:
        fh.write(text)
    return os.fspath(path)


def write_json(path: str | os.PathLike, obj, indent: int | None = 1, **dump_kw) -> str:
    """Write ``obj`` as JSON to ``path`` atomically (numpy scalars as floats); returns ``path``.

    The whole document is serialised before the file is opened, so an unserialisable object leaves no file.
    """
    dump_kw.setdefault("default", float)
    return write_text(path, json.dumps(obj, indent=indent, **dump_kw))


def read_json(path: str | os.PathLike, what: str = "JSON file"):
    """The JSON document at ``path``; a missing or unparsable file is a one-line ``DataError`` naming it and
    ``what`` it should have been (the read side of :func:`write_json`)."""
    from zoo.errors import DataError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(path, f"no such file (expected a {what})")
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as e:
        raise DataError(path, f"not a readable {what} ({e})") from None


def save_image(path: str | os.PathLike, array, format: str | None = None, **save_kw) -> str:
    """Write an image array atomically; returns ``path``.

    ``format``: "PNG", "JPEG", "TIFF", ... (default: from the extension; PNG when there is none). TIFF goes through
    tifffile (any dtype, any channel count), the rest through Pillow (uint8 RGB/grey, uint16 grey for PNG);
    JPEG defaults to quality 95.
    """
    import numpy as np

    path = os.fspath(path)
    if format is None:
        ext = os.path.splitext(path)[1].lower().lstrip(".")
        format = {"jpg": "JPEG", "jpeg": "JPEG", "tif": "TIFF", "tiff": "TIFF", "": "PNG"}.get(ext, ext.upper())
    format = format.upper()
    array = np.asarray(array)
    with atomic_path(path) as tmp:
        if format == "TIFF":
            import tifffile

            tifffile.imwrite(tmp, array, **save_kw)
        else:
            from PIL import Image

            if format == "JPEG":
                save_kw.setdefault("quality", 95)
            Image.fromarray(array).save(tmp, format=format, **save_kw)
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary sibling folder; on a clean exit it is renamed to ``path``, on an exception removed.

    ``path`` must not exist unless ``overwrite=True``, in which case the old folder (or file) is replaced only
    after the new one is complete (the old one is moved aside, the new one renamed in, then the old one deleted;
    between the two renames ``path`` is briefly absent). Raises ``ConfigError`` naming ``path`` when it exists and
    ``overwrite`` is false, before the block runs.
    """
    from zoo.errors import ConfigError

    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not overwrite:
        raise ConfigError(f"{path}: already exists (refusing to replace it)")
    tmp = temp_sibling(path, keep_suffix=False)
    os.mkdir(tmp)
    try:
        yield tmp
        if os.path.lexists(path):
            if not overwrite:
                raise ConfigError(f"{path}: appeared while it was being written (refusing to replace it)")
            old = temp_sibling(path, keep_suffix=False)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the old one back
                raise
            discard(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> str:
    """Check, before any work, that ``path`` can be an output folder; returns its absolute path. Creates nothing.

    Raises ``zoo.errors.ConfigError`` with one line naming ``path`` when it exists and is not a folder, when a
    parent on the way is a file, or when the folder (or, if it does not exist yet, its nearest existing
    ancestor, where it would be created) is not writable.
    """
    from zoo.errors import ConfigError

    raw = os.fspath(path)
    if not raw:
        raise ConfigError(f"{what}: empty path")
    full = os.path.abspath(raw)
    if os.path.exists(full):
        if not os.path.isdir(full):
            raise ConfigError(f"{what} {raw}: exists and is a file, not a folder")
        if not os.access(full, os.W_OK | os.X_OK):
            raise ConfigError(f"{what} {raw}: not writable (permission denied or read-only)")
        return full
    parent = os.path.dirname(full)
    while not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    if not os.path.isdir(parent):
        raise ConfigError(f"{what} {raw}: cannot be created, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {raw}: cannot be created, {parent} is not writable "
                          "(permission denied or read-only)")
    return full
