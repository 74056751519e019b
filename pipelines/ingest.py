"""Pure-Python pieces of the ingest step (no tfx, no Beam): which split an image goes to, and one image's
read + encode. The Beam ExampleGen (pipelines/components/example_gen.py) maps these over the reader's items,
so the same code runs on the DirectRunner and on a cluster runner.

Split rules, in order (``SplitSpec.for_experiment``):
1. ``fold=k``: the dataset's cross-validation fold k (``Reader.folds()``, e.g. TNBC's leave-one-patient-out folds,
   Naylor et al. 2019, TMI 38(2):448-459, sec. IV-A): its ``train`` images -> train, its ``test`` images -> eval.
2. the reader's own splits: ``train_split`` -> train, ``eval_split`` -> eval, any other split is left out.
3. a reader that gives only ``all``: a patient-level split (by ``source_id``, so one patient never lands in both),
   ``eval_fraction`` of the sources -> eval, chosen by a stable hash (the same on every worker and run).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Optional

from zoo.errors import ConfigError, DataError

TRAIN, EVAL = "train", "eval"
OUTPUT_SPLITS = (TRAIN, EVAL)


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """How images are assigned to the pipeline's ``train`` / ``eval`` splits (see the module docstring)."""

    fold: Optional[int] = None
    train_split: str = "train"
    eval_split: str = "test"
    eval_fraction: float = 0.2

    def __post_init__(self):
        if self.fold is not None and int(self.fold) < 1:
            raise ConfigError(f"fold must be >= 1, got {self.fold}")
        if not 0.0 < float(self.eval_fraction) < 1.0:
            raise ConfigError(f"eval_fraction must lie in (0, 1), got {self.eval_fraction}")
        if self.train_split == self.eval_split:
            raise ConfigError(f"train_split and eval_split are both {self.train_split!r}")

    @classmethod
    def for_experiment(cls, experiment, eval_fraction: float = 0.2) -> "SplitSpec":
        """The split of an ExperimentConfig (its ``fold``, ``train_split`` and ``val_split``)."""
        return cls(fold=experiment.fold, train_split=experiment.train_split or "train",
                   eval_split=experiment.val_split or "test", eval_fraction=eval_fraction)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "SplitSpec":
        return cls(**json.loads(s))


def fold_membership(folds: Optional[list], fold: int, where: str = "dataset") -> dict:
    """{image_id: "train" | "eval"} for fold ``fold`` of ``Reader.folds()``."""
    if not folds:
        raise ConfigError(f"{where}: fold={fold} given but this dataset has no cross-validation folds")
    by_k = {int(f["fold"]): f for f in folds}
    if fold not in by_k:
        raise ConfigError(f"{where}: fold {fold} does not exist (folds {min(by_k)}..{max(by_k)})")
    out = {i: TRAIN for i in by_k[fold]["train"]}
    out.update({i: EVAL for i in by_k[fold]["test"]})
    return out


def source_bucket(source_id: str) -> float:
    """A stable number in [0, 1) from ``source_id`` (md5; identical across processes, unlike ``hash``)."""
    return int(hashlib.md5(source_id.encode()).hexdigest()[:8], 16) / 2 ** 32


def assign_split(image_id: str, source_id: str, reader_split: str, spec: SplitSpec,
                 membership: Optional[dict] = None) -> Optional[str]:
    """``"train"``, ``"eval"`` or None (left out) for one image, by the rules of the module docstring."""
    if spec.fold is not None:
        if membership is None:
            raise ValueError("assign_split: fold given without its membership (fold_membership)")
        return membership.get(image_id)
    if reader_split == spec.train_split:
        return TRAIN
    if reader_split == spec.eval_split:
        return EVAL
    if reader_split == "all":
        return EVAL if source_bucket(source_id or image_id) < spec.eval_fraction else TRAIN
    return None


def read_encode(reader, item, spec: SplitSpec, membership: Optional[dict] = None):
    """Read one item and encode it in the record schema: ``(split or None, serialized Example)``.

    A failure names the input file (DataError), never a bare traceback from deep inside a Beam worker.
    """
    from zoo.data import records
    from zoo.errors import ZooError

    try:
        sample = reader.read(item)
        rec = records.encode(sample)
    except ZooError:
        raise
    except Exception as e:  # noqa: BLE001 — any decoder failure becomes a one-line DataError naming the file
        raise DataError(str(item), f"failed to read ({type(e).__name__}: {e})") from None
    return assign_split(sample.image_id, sample.source_id, sample.split, spec, membership), rec


def input_fingerprint(root: str) -> str:
    """A hash of every file under ``root`` (relative path, size, mtime): the ExampleGen's cache key for its input,
    like FileBasedExampleGen's span fingerprint. "" when ``root`` is not a local folder (e.g. gs://...)."""
    if not os.path.isdir(root):
        return ""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            p = os.path.join(dirpath, f)
            try:
                st = os.stat(p)
            except OSError:
                continue
            h.update(f"{os.path.relpath(p, root)}\0{st.st_size}\0{int(st.st_mtime)}\n".encode())
    return h.hexdigest()
