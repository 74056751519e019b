"""Reading image and label files with the conversions every reader shares, documented once.

Images become (H, W, 3) uint8 RGB:
- RGBA: the alpha channel is dropped when it is constant 255; otherwise the image is composited on white
  (transparent = no tissue), never silently mis-coloured.
- Grayscale (L / I;16): replicated to three channels.
- 16-bit: scaled to 8 bits by ``round(v / 257)`` (65535 -> 255).
Labels become integer 2-D arrays; non-integer label values are rejected.
Every failure raises ``DataError(path, problem)``.
"""

from __future__ import annotations

import os

import numpy as np

from zoo.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _load_array(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise DataError(path, "file not found")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext in (".tif", ".tiff"):
            import tifffile

            return np.asarray(tifffile.imread(path))
        if ext == ".npy":
            return np.load(path, allow_pickle=False)
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(im, dtype=np.uint16)
            if im.mode == "P":
                im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
            return np.asarray(im)
    except DataError:
        raise
    except Exception as e:  # PIL/tifffile raise many types for truncated or corrupt files
        raise DataError(path, f"unreadable image ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def to_rgb_uint8(arr: np.ndarray, path: str = "<array>") -> np.ndarray:
    """Convert an image array to (H, W, 3) uint8 by the rules in the module docstring."""
    a = np.asarray(arr)
    if a.dtype == np.uint16 or (a.dtype.kind in "ui" and a.size and a.max() > 255):
        a = np.round(a.astype(np.float64) / 257.0).clip(0, 255).astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype.kind == "f":
        hi = float(np.nanmax(a)) if a.size else 0.0
        a = np.nan_to_num(a * (255.0 if hi <= 1.0 else 1.0)).round().clip(0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = a.clip(0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3:
        raise DataError(path, f"expected an image of shape (H, W) or (H, W, C), got {a.shape}")
    if a.shape[2] == 4:
        alpha = a[:, :, 3:4]
        if np.all(alpha == 255):
            a = a[:, :, :3]
        else:
            f = alpha.astype(np.float32) / 255.0
            a = np.round(a[:, :, :3] * f + 255.0 * (1.0 - f)).astype(np.uint8)
    elif a.shape[2] == 2:  # grayscale + alpha
        return to_rgb_uint8(np.concatenate([np.repeat(a[:, :, :1], 3, 2), a[:, :, 1:]], 2), path)
    elif a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.shape[2] != 3:
        raise DataError(path, f"expected 1, 3 or 4 channels, got {a.shape[2]}")
    return np.ascontiguousarray(a)


def read_rgb(path: str) -> np.ndarray:
    """Read an image file (PNG/JPEG/TIFF/BMP) as (H, W, 3) uint8 RGB."""
    return to_rgb_uint8(_load_array(path), path)


def read_label(path: str) -> np.ndarray:
    """Read an integer label image (PNG/TIFF 8/16/32-bit, or .npy) as a 2-D int32 array."""
    return to_label(_load_array(path), path)


def to_label(arr: np.ndarray, path: str = "<array>") -> np.ndarray:
    """Check and convert a label array (2-D, or grey saved as RGB(A)) to int32; non-integer values are an error."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] in (3, 4) and np.all(a[:, :, :1] == a[:, :, 1:3]):
        a = a[:, :, 0]  # a grey label saved as RGB(A)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim != 2:
        raise DataError(path, f"label must be a single-channel image, got shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise DataError(path, "label values are not integers")
    elif a.dtype.kind not in "uib":
        raise DataError(path, f"label dtype {a.dtype} is not an integer type")
    if a.size and a.min() < 0:
        raise DataError(path, f"label has negative values (min {a.min()})")
    return a.astype(np.int32)


def check_same_size(image: np.ndarray, label: np.ndarray, label_path: str) -> None:
    if image.shape[:2] != label.shape[:2]:
        raise DataError(label_path, f"label size {label.shape[1]}x{label.shape[0]} does not match "
                        f"image size {image.shape[1]}x{image.shape[0]}")
