"""CRCHistoPhenotypes reader against ../shared/data/crchistophenotypes/PROVENANCE.md's counts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from zoo.data import records
from zoo.data.build import load_summary
from zoo.data.readers import get_reader
from zoo.data.readers.crchistophenotypes import CLASS_NAMES, match_points, read_points_mat

TEST_IMAGES = ["img4", "img8", "img12", "img16", "img20", "img24", "img28", "img32", "img36", "img40", "img44",
               "img48"]


def test_split_and_per_class_counts(crc_records):
    s = load_summary(str(crc_records))
    assert s["class_names"] == list(CLASS_NAMES)
    sp = s["splits"]
    assert (sp["train"]["images"], sp["test"]["images"]) == (36, 12)
    assert sorted(sp["test"]["image_ids"], key=lambda i: int(i[3:])) == TEST_IMAGES
    assert (sp["train"]["points"], sp["test"]["points"]) == (10192, 3190)
    assert sp["train"]["points_by_class"] == {"epithelial": 2428, "inflammatory": 1741, "fibroblast": 1311,
                                             "others": 714, "unknown": 10192 - 6194}
    assert sp["test"]["points_by_class"] == {"epithelial": 871, "inflammatory": 553, "fibroblast": 333,
                                            "others": 324, "unknown": 3190 - 2081}


def test_points_are_zero_based_row_col(crc_records, shared_data):
    by_id = {s.image_id: s for s in records.read_samples(records.list_shards(str(crc_records), "train"))}
    s = by_id["img1"]
    raw = read_points_mat(str(shared_data / "crchistophenotypes" / "CRCHistoPhenotypes_2016_04_28" / "img1" /
                              "img1_detection.mat"))
    np.testing.assert_allclose(s.points_yx, np.c_[raw[:, 1] - 1, raw[:, 0] - 1], atol=1e-4)
    assert s.points_yx.min() >= 0 and s.points_yx.max() <= 499
    # nuclei are darker than the background at the annotated centres (PROVENANCE: 123.8 vs 193.8 grey)
    yx = np.round(np.concatenate([x.points_yx for x in by_id.values()])).astype(int)
    grey = np.concatenate([x.image.mean(2)[tuple(np.round(x.points_yx).astype(int).T)] for x in by_id.values()])
    assert len(grey) == len(yx) and grey.mean() < 150


def test_exact_matching_keeps_the_49_off_points_as_extra_typed_points(shared_data):
    r = get_reader("crchistophenotypes")(str(shared_data / "crchistophenotypes"), match_px=0)
    pts = typed = 0
    for name in r.items():
        s = r.read(name)
        pts += s.num_points
        typed += int((s.point_classes > 0).sum())
    assert (pts, typed) == (13382 + 49, 8275)


def test_mat_dtype_quirks_and_matching(tmp_path):
    savemat(tmp_path / "e.mat", {"detection": np.zeros((0, 2), np.uint8)})
    savemat(tmp_path / "u.mat", {"detection": np.array([[3, 4], [10, 2]], np.uint16)})
    assert read_points_mat(str(tmp_path / "e.mat")).shape == (0, 2)
    u = read_points_mat(str(tmp_path / "u.mat"))
    assert u.dtype == np.float64 and u.tolist() == [[3.0, 4.0], [10.0, 2.0]]
    det = np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]])
    cls = np.array([[0.0, 0.0], [0.0, 0.0], [13.0, 0.0], [40.0, 0.0]])
    match, dist = match_points(det, cls, 8.0)
    # duplicate class point takes the next-nearest free detection only if within 8 px (10 px away: no)
    assert match.tolist() == [0, -1, 1, -1] and dist[2] == pytest.approx(3.0)
