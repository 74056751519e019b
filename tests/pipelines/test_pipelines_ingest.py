"""Host-side tests (no tfx) of the pipeline's split rules and input fingerprint (pipelines/ingest.py)."""

from __future__ import annotations

import os

import pytest

from pipelines import ingest
from zoo.errors import ConfigError

FOLDS = [{"fold": 1, "test": ["a_1", "a_2"], "train": ["b_1", "c_1"]},
         {"fold": 2, "test": ["b_1"], "train": ["a_1", "a_2", "c_1"]}]


def test_fold_rule_sends_the_folds_test_images_to_eval():
    spec = ingest.SplitSpec(fold=2)
    m = ingest.fold_membership(FOLDS, 2)
    got = {i: ingest.assign_split(i, i.split("_")[0], "all", spec, m) for i in ["a_1", "a_2", "b_1", "c_1", "zz"]}
    assert got == {"a_1": "train", "a_2": "train", "b_1": "eval", "c_1": "train", "zz": None}


def test_fold_errors_name_the_problem():
    with pytest.raises(ConfigError, match="fold 3 does not exist .folds 1..2."):
        ingest.fold_membership(FOLDS, 3, "root")
    with pytest.raises(ConfigError, match="no cross-validation folds"):
        ingest.fold_membership(None, 1, "root")
    with pytest.raises(ConfigError, match="eval_fraction"):
        ingest.SplitSpec(eval_fraction=1.0)
    with pytest.raises(ConfigError, match="both 'x'"):
        ingest.SplitSpec(train_split="x", eval_split="x")


def test_reader_split_rule_maps_train_and_test_and_drops_the_rest():
    spec = ingest.SplitSpec(train_split="train", eval_split="test")
    assert [ingest.assign_split("i", "s", s, spec) for s in ("train", "test", "val")] == ["train", "eval", None]


def test_all_split_is_patient_level_and_stable():
    spec = ingest.SplitSpec(eval_fraction=0.3)
    sources = [f"patient{k}" for k in range(400)]
    to_eval = {s for s in sources if ingest.assign_split("img", s, "all", spec) == ingest.EVAL}
    # every image of a patient lands on the same side, and about 30 % of the patients go to eval
    assert all(ingest.assign_split(f"img{j}", s, "all", spec) == ingest.EVAL for s in to_eval for j in range(3))
    assert 0.22 < len(to_eval) / len(sources) < 0.38
    # md5-based: the same bucket in every process (unlike hash()); hand value for "patient0"
    import hashlib

    assert ingest.source_bucket("patient0") == int(hashlib.md5(b"patient0").hexdigest()[:8], 16) / 2 ** 32


def test_split_spec_round_trips_and_follows_the_experiment():
    from zoo.training import ExperimentConfig

    cfg = ExperimentConfig.from_dict({"fold": 3, "train_split": "train", "val_split": "test"})
    spec = ingest.SplitSpec.for_experiment(cfg, 0.25)
    assert spec == ingest.SplitSpec(fold=3, train_split="train", eval_split="test", eval_fraction=0.25)
    assert ingest.SplitSpec.from_json(spec.to_json()) == spec


def test_tnbc_fold_split_on_the_real_reader(shared_data):
    """Fold 1 of TNBC's leave-one-patient-out folds: patient 01's images -> eval, the other 10 patients -> train."""
    from zoo.data.readers import get_reader

    reader = get_reader("tnbc")(str(shared_data / "tnbc"))
    m = ingest.fold_membership(reader.folds(), 1)
    ids = [os.path.splitext(os.path.basename(p))[0] for p in reader.items()]
    assert len(m) == len(ids) == 50
    evals = sorted(i for i in ids if m[i] == ingest.EVAL)
    assert evals and all(i.split("_")[0] == evals[0].split("_")[0] for i in evals)
    assert {i.split("_")[0] for i in ids if m[i] == ingest.TRAIN}.isdisjoint({evals[0].split("_")[0]})


def test_read_encode_names_the_file_on_failure(tmp_path):
    from zoo.errors import DataError

    class Broken:
        def read(self, item):
            raise OSError("truncated PNG")

    with pytest.raises(DataError, match=r"x\.png: failed to read \(OSError: truncated PNG\)"):
        ingest.read_encode(Broken(), str(tmp_path / "x.png"), ingest.SplitSpec())


def test_input_fingerprint_changes_with_the_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.png").write_bytes(b"12345")
    f1 = ingest.input_fingerprint(str(tmp_path))
    assert f1 == ingest.input_fingerprint(str(tmp_path)) and len(f1) == 64
    (tmp_path / "a" / "1.png").write_bytes(b"123456")  # size changes
    f2 = ingest.input_fingerprint(str(tmp_path))
    (tmp_path / "a" / "2.png").write_bytes(b"")
    f3 = ingest.input_fingerprint(str(tmp_path))
    assert len({f1, f2, f3}) == 3
    assert ingest.input_fingerprint("gs://bucket/tnbc") == ""
