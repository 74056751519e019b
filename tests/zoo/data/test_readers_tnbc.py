"""TNBC reader against ../shared/data/tnbc/PROVENANCE.md's counts."""

from __future__ import annotations

from collections import Counter

import numpy as np
from PIL import Image

from zoo.data import records
from zoo.data.build import load_summary
from zoo.data.readers import get_reader

PER_PATIENT_8 = {"01": 458, "02": 188, "03": 289, "04": 596, "05": 420, "06": 204, "07": 557, "08": 445,
                 "09": 301, "10": 316, "11": 254}
IMAGES_PER_PATIENT = {"01": 7, "02": 3, "03": 5, "04": 8, "05": 4, "06": 3, "07": 3, "08": 4, "09": 6, "10": 4,
                      "11": 3}


def test_tnbc_counts_8_connected(tnbc_records):
    s = load_summary(str(tnbc_records))["splits"]["all"]
    assert (s["images"], s["nuclei"], s["sources"]) == (50, 4028, 11)
    nuclei, images = Counter(), Counter()
    for x in records.read_samples(records.list_shards(str(tnbc_records))):
        nuclei[x.source_id] += x.num_instances
        images[x.source_id] += 1
        assert x.image.shape == (512, 512, 3) and x.organ == "Breast"
    assert dict(nuclei) == PER_PATIENT_8 and dict(images) == IMAGES_PER_PATIENT


def test_tnbc_4_connected_and_rgb_slides(shared_data):
    reader = get_reader("tnbc")(str(shared_data / "tnbc"), connectivity=4)
    total, rgb = 0, []
    for path in reader.items():
        s = reader.read(path)
        total += s.num_instances
        with Image.open(path) as im:
            raw = np.asarray(im)
            mode = im.mode
        if mode == "RGB":
            rgb.append(s.image_id)
        np.testing.assert_array_equal(s.image, raw[:, :, :3])  # RGBA: alpha (all 255) dropped; RGB as is
    assert total == 4056
    assert rgb == ["09_2", "09_3", "09_4"]
