"""zoo.evaluation.format_table: every mean column, including split-level ones (aji_pooled) that no image has."""

from __future__ import annotations


def test_all_columns_by_default_and_split_level_keys_dashed():
    from zoo.evaluation import format_table

    res = {"per_image": [{"image_id": "a", "aji": 0.5, "pq": 0.25}, {"image_id": "b", "aji": 0.7, "pq": 0.35}],
           "mean": {"aji": 0.6, "pq": 0.3, "aji_pooled": 0.55}}
    lines = format_table(res).splitlines()
    assert lines[0].split() == ["image", "aji", "pq", "aji_pooled"]
    assert lines[2].split() == ["a", "0.5000", "0.2500", "-"]
    assert lines[-1].split() == ["mean", "0.6000", "0.3000", "0.5500"]
    assert format_table(res, ["pq"]).splitlines()[-1].split() == ["mean", "0.3000"]
