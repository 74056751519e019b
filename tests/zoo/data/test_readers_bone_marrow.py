"""Bone-marrow (Kainz et al. 2015) reader against ../shared/data/bone_marrow_kainz2015/PROVENANCE.md."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.data import records
from zoo.data.build import load_summary
from zoo.data.imageio import read_label
from zoo.data.readers.bone_marrow import read_dots_txt
from zoo.errors import DataError


def test_counts_split_attrs_mpp(bone_marrow_records, shared_data):
    sp = load_summary(str(bone_marrow_records))["splits"]
    assert (sp["train"]["image_ids"], sp["train"]["points"]) == (["BM_GRAZ_HE_0001_01"], 356)
    assert (sp["test"]["image_ids"], sp["test"]["points"]) == (["BM_GRAZ_HE_0007_01"], 295)
    samples = {s.image_id: s for s in records.read_samples(records.list_shards(str(bone_marrow_records)))}
    attrs = {k: np.bincount(s.point_attrs).tolist() for k, s in samples.items()}
    assert attrs == {"BM_GRAZ_HE_0001_01": [0, 210, 0, 146], "BM_GRAZ_HE_0007_01": [0, 250, 0, 45]}
    for k, s in samples.items():
        assert s.mpp == pytest.approx(0.2454) and s.source_id == k[11:15] and s.image.shape == (1200, 1200, 3)
        assert (s.point_classes == 0).all() and s.class_names == ()
        # the txt points (x, y) -> (row, col) hit exactly the dots of the annotation PNG
        dots = read_label(str(shared_data / "bone_marrow_kainz2015" / "BM_GRAZ" / "annotations" / f"{k}.png"))
        yx = s.points_yx.astype(int)
        assert dots[yx[:, 0], yx[:, 1]].min() == 255 and (dots > 0).sum() == len(yx)


def test_txt_format_errors(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("3 3 0\n1 2 1\n3 4 3\n")
    with pytest.raises(DataError, match="a.txt: header says 3 points but the file has 2"):
        read_dots_txt(str(p))
    p.write_text("x y c\n1 2 1\n")
    with pytest.raises(DataError, match="bad header"):
        read_dots_txt(str(p))
    p.write_text("1 3 0\n1.5 2 1\n")
    xy, c = read_dots_txt(str(p))
    assert xy.tolist() == [[1.5, 2.0]] and c.tolist() == [1]
