"""Centre-based scoring of typed models (zoo.evaluation.score_centres / evaluate_centres, ``histozoo evaluate`` on a
centre-annotated split) on the real CRCHistoPhenotypes test image img4, whose counts PROVENANCE.md gives: 154
detection points, 133 classified (inflammatory 87, fibroblast 39, others 7)."""

import numpy as np
import pytest

from zoo.evaluation import format_centres, score_centres

NAMES = ("epithelial", "inflammatory", "fibroblast", "others")


@pytest.fixture(scope="module")
def crc(shared_data, tmp_path_factory):
    from zoo.data import records
    from zoo.data.build import build

    out = tmp_path_factory.mktemp("crc")
    build("crchistophenotypes", str(shared_data / "crchistophenotypes"), str(out), progress=False)
    img4 = [s for s in records.read_samples(records.list_shards(str(out), "test")) if s.image_id.endswith("img4")]
    assert len(img4) == 1
    return img4


def _oracle(shift: bool):
    """One-pixel instances at every rounded centre, typed as the centre (or every type moved one on: 2 -> 3 ...)."""
    def segment(s):
        rc = np.round(s.points_yx).astype(int)
        inst = np.zeros(s.image.shape[:2], np.int32)
        inst[rc[:, 0], rc[:, 1]] = np.arange(1, len(rc) + 1)
        cls = np.asarray(s.point_classes, np.int64)
        if shift:
            cls = np.where(cls > 0, cls % 4 + 1, 0)
        return inst, np.concatenate([[0], cls])
    return segment


def test_an_oracle_scores_perfectly_with_provenance_counts(crc):
    res = score_centres(_oracle(False), crc, num_types=4, class_names=NAMES)
    d = res["detection"]["All"]
    assert res["images"] == 1 and (d["tp"], d["fp"], d["fn"]) == (154, 0, 0)
    c = res["classification"]
    assert (c["correct"], c["n"], c["accuracy"]) == (133, 133, 1.0)
    assert {k: v["n"] for k, v in c["per_class"].items()} == {"epithelial": 0, "inflammatory": 87, "fibroblast": 39,
                                                             "others": 7}
    h = res["hovernet"]
    assert h["f_d"] == 1.0 and h["accuracy"] == 1.0
    assert h["f_c"]["inflammatory"] == 1.0 and h["f_c"]["fibroblast"] == 1.0 and np.isnan(h["f_c"]["epithelial"])
    assert "F_d 1.0000" in format_centres(res)


def test_wrong_types_by_hand(crc):
    """Every typed centre predicted one type on (2 -> 3, 3 -> 4, 4 -> 1): detection stays perfect, accuracy 0;
    F_c(fibroblast) = 0 / (2 * 87 + 2 * 39) = 0, and the confusion matrix holds the moved counts."""
    res = score_centres(_oracle(True), crc, num_types=4, class_names=NAMES)
    assert res["detection"]["All"]["f1"] == 1.0 and res["classification"]["accuracy"] == 0.0
    conf = np.asarray(res["classification"]["confusion"])
    assert conf[2, 3] == 87 and conf[3, 4] == 39 and conf[4, 1] == 7 and conf.sum() == 133
    assert res["hovernet"]["f_c"]["fibroblast"] == 0.0 and res["hovernet"]["f_d"] == 1.0


def test_histozoo_evaluate_on_a_centre_split_equals_evaluate_centres(crc, quickstart_model, shared_data, tmp_path,
                                                                      capsys):
    """``histozoo evaluate`` on a split with centres only scores centres, through the one inference function: the
    CLI's JSON equals evaluate_centres on the same model (an untyped U-Net: detection only, no type scores)."""
    import json

    from histozoo.cli import main
    from zoo.data import records
    from zoo.evaluation import evaluate_centres

    _, _, run = quickstart_model
    data = tmp_path / "crc4"
    records.write_shards(crc, str(data), "test")
    out = tmp_path / "centres.json"
    assert main(["evaluate", str(run), "--data", str(data), "--split", "test", "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert "accuracy over detected centres" in capsys.readouterr().out
    from zoo.training.tracking import load

    loaded = load(str(run))
    want = evaluate_centres(loaded.model, str(data), split="test", spec=loaded.spec)
    assert got["detection"] == json.loads(json.dumps(want["detection"]))
    assert got["images"] == 1 and got["detection"]["All"]["tp"] + got["detection"]["All"]["fn"] == 154
