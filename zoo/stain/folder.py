"""Normalize a folder of H&E images (what ``histozoo normalize`` runs): list the images, fit or load the normalizer,
transform each image, write it atomically under the same relative name and format, and return a summary.

    from zoo.stain.folder import normalize_folder
    summary = normalize_folder("tiles/", "tiles_norm/", method="macenko", target="ref.png")
    summary["normalized"], summary["failed"], summary["fallbacks"]

One bad file does not stop the folder: it is named in ``summary["failed"]`` (and passed to ``on_error`` as one line
the moment it fails). Images where the method sees no tissue are copied unchanged (the method's fallback) and
listed under ``summary["fallbacks"]``.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from zoo import atomic
from zoo.errors import ConfigError, DataError, ZooError


def list_images(root: str | os.PathLike) -> list[str]:
    """Image files under ``root`` (a folder, recursively, sorted) or ``[root]`` for a single file."""
    from zoo.data.imageio import IMAGE_EXTS

    root = os.fspath(root)
    if os.path.isfile(root):
        return [root]
    if not os.path.isdir(root):
        raise DataError(root, "no such file or folder")
    found = []
    for d, dirs, files in os.walk(root):
        dirs.sort()
        found += [os.path.join(d, f) for f in sorted(files) if os.path.splitext(f)[1].lower() in IMAGE_EXTS]
    return found


def _normalizer(method, target, params, normalizer, save_params, jit, model=None):
    from zoo import stain
    from zoo.stain.neural import needs_target

    from zoo.data.imageio import read_rgb

    neural = method in ("colorization", "colornormnet")
    if model is not None and params is None and not neural:
        raise ConfigError("normalize: --model needs --method colorization or colornormnet")
    if neural and params is None and model is None:
        raise ConfigError(f"normalize: --method {method} needs --model (a .keras file or a training run folder)")
    if neural and not needs_target(method) and target is None and params is None and normalizer is None:
        norm = stain.get_normalizer(method, model=model).fit()
        if save_params:
            norm.save(save_params)
        return norm
    if sum(x is not None for x in (target, params, normalizer)) != 1:
        raise ConfigError("normalize: give exactly one of --target REF (fit) or --params FILE (load fitted)")
    if normalizer is not None:
        return normalizer
    if params is not None:
        norm = stain.load(params, jit=jit)
        if method is not None and method != norm.name:
            raise ConfigError(f"normalize: --method {method} but {params} holds {norm.name} parameters")
        return norm
    norm = stain.get_normalizer(method or "macenko", jit=jit, **({"model": model} if neural else {}))
    try:
        norm.fit(read_rgb(os.fspath(target)))
    except ConfigError as e:
        raise DataError(target, str(e)) from None
    if save_params:
        norm.save(save_params)
    return norm


def normalize_folder(input: str | os.PathLike, output: str | os.PathLike, *, method: str | None = None,
                     target: str | os.PathLike | None = None, params: str | os.PathLike | None = None,
                     normalizer=None, save_params: str | os.PathLike | None = None, jit: bool = True,
                     progress: bool = True, on_error: Callable[[str], None] | None = None,
                     model: str | os.PathLike | None = None) -> dict:
    """Stain-normalize the image ``input`` or every image under the folder ``input`` into the folder ``output``.

    The normalizer comes from exactly one of: ``target`` (a reference image to fit ``method`` to, default
    macenko; ``save_params`` writes the fitted parameters), ``params`` (a file written by ``save`` /
    ``--save-params``; ``method``, if given, must match it) or ``normalizer`` (a fitted ``StainNormalizer``).
    The neural methods (``colorization``, ``colornormnet``; zoo.stain.neural) also need ``model``, a trained
    network (.keras file or run folder); colornormnet needs no target. Outputs keep their relative paths and formats.
    ``output`` is checked before anything is fitted or read
    (``ConfigError`` naming it when it is a file or not writable).

    Returns ``{"method", "input", "output", "images", "normalized", "failed": [{"path", "error"}],
    "fallbacks": {reason: [relative names]}, "params_saved", "wall_s"}``.
    """
    from tqdm import tqdm

    from zoo.data.imageio import read_rgb

    t0 = time.perf_counter()
    input, output = os.fspath(input), os.fspath(output)
    out_root = atomic.check_output_dir(output)
    norm = _normalizer(method, target, params, normalizer, save_params, jit, model)
    files = list_images(input)
    if not files:
        raise DataError(input, "no PNG/JPEG/TIFF/BMP images found")
    single = os.path.isfile(input)
    fallbacks: dict[str, list[str]] = {}
    failed: list[dict] = []
    for path in tqdm(files, desc=f"normalize ({norm.name})", unit="img", disable=not progress):
        rel = os.path.basename(path) if single else os.path.relpath(path, input)
        try:
            out, info = norm.transform(read_rgb(path), return_info=True)
            atomic.save_image(os.path.join(out_root, rel), out)
        except ZooError as e:
            msg = str(e)
        except Exception as e:  # one bad file must not stop the folder; name it in one line
            first = str(e).splitlines()[0] if str(e) else ""
            msg = f"{path}: {type(e).__name__}: {first}"
        else:
            if info["fallback"]:
                fallbacks.setdefault(info["fallback"], []).append(rel)
            continue
        failed.append({"path": path, "error": msg})
        if on_error is not None:
            on_error(msg)
    return {"method": norm.name, "input": os.path.abspath(input), "output": out_root, "images": len(files),
            "normalized": len(files) - len(failed), "failed": failed,
            "fallbacks": {k: fallbacks[k] for k in sorted(fallbacks)},
            "params_saved": os.path.abspath(save_params) if (save_params and params is None and normalizer is None)
            else None,
            "wall_s": time.perf_counter() - t0}
