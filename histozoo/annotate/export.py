"""The saved annotations -> training records of the one schema (``zoo.data.build.DatasetWriter``,
``zoo.data.records``), so ``histozoo train --data <records>`` reads them like any built dataset.

One record per saved image (``<stem>_instances.png`` + ``<stem>.json`` in the output folder): the image as the tool
showed it, its instance map, dataset ``annotate``, source id = the image's stem, split ``train`` (or ``split=``),
mpp as given (0 = unknown). Unsaved changes are not exported (save first); images never saved are left out and
counted.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from zoo import atomic
from zoo.data.imageio import read_label, read_rgb
from zoo.errors import DataError


def export_records(ws, records_dir: str, split: str = "train", mpp: Optional[float] = None,
                   progress: bool = False, holdout: int = 0) -> dict:
    """Write the saved annotations of workspace ``ws`` into ``records_dir``; returns the build summary
    (``summary.json``'s content plus ``unsaved``: images with changes after their last save, and ``not_saved``).

    holdout: the last ``holdout`` saved images (in name order) go to split ``test``, the training core's default
    validation split, the rest to ``split``; 0 = all to ``split`` (then train with ``--set 'val_split=""'``)."""
    from zoo.data.build import DatasetWriter, progress_bar
    from zoo.data.sample import Sample

    atomic.check_output_dir(records_dir, "records folder")
    names = ws.names()
    stems = ws.stems(names)
    saved, not_saved = [], []
    for name in names:
        meta = os.path.join(ws.out, f"{stems[name]}.json")
        (saved if os.path.isfile(meta) else not_saved).append(name)
    if not saved:
        raise DataError(ws.out, "no saved annotations to export (save an image in the page first)")
    if not 0 <= holdout < len(saved) or (holdout and split == "test"):
        raise DataError(ws.out, f"holdout {holdout}: must leave at least one of the {len(saved)} saved image(s) "
                                f"for split {split!r}")
    held = set(saved[len(saved) - holdout:]) if holdout else set()
    mpp = float(mpp if mpp is not None else (ws.mpp or 0.0))
    with DatasetWriter(records_dir) as w:
        for name in progress_bar(saved, "export", progress):
            f = ws.files(name)
            meta = atomic.read_json(f["meta"], "annotation meta file")
            image = read_rgb(ws.resolve(name))
            inst = read_label(f["instances"])
            if inst.shape != image.shape[:2]:
                raise DataError(f["instances"], f"instance map {inst.shape} does not match image {image.shape[:2]}")
            if int(meta.get("instances", -1)) != int(np.count_nonzero(np.unique(inst))):
                raise DataError(f["meta"], "its nucleus count does not match the instance PNG beside it")
            w.add(Sample(image=image, image_id=name, dataset="annotate", source_id=stems[name],
                         split="test" if name in held else split,
                         instances=inst, mpp=mpp))
        summary = w.commit(dataset="annotate", root=ws.root, options={"annotations": ws.out, "split": split,
                                                                          "holdout": holdout})
    summary["not_saved"] = not_saved
    summary["unsaved"] = [n for n in saved if ws.has_unsaved(n)]
    return summary
