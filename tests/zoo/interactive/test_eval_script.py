"""scripts/interactive_eval.py's aggregation on hand-made records with an oracle segmenter whose answers are known."""

import importlib.util
import pathlib

import numpy as np

from zoo.data import records
from zoo.data.sample import Sample

_SCRIPT = pathlib.Path(__file__).parents[3] / "scripts" / "interactive_eval.py"


def _script():
    spec = importlib.util.spec_from_file_location("interactive_eval", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _HalfThenWhole:
    """Click 1 reveals the top half of the clicked nucleus (IoU 0.5), click 2 all of it (IoU 1)."""

    def __init__(self, inst):
        self.inst = inst

    def segment(self, image, clicks, prev_mask=None, fbrs=False):
        y, x, _ = clicks[0]
        obj = self.inst == self.inst[y, x]
        if len(clicks) == 1:
            ys = np.nonzero(obj)[0]
            obj = obj & (np.arange(obj.shape[0])[:, None] < (ys.min() + ys.max() + 1) / 2)
        return obj


def test_noc_and_miou_of_a_known_segmenter(tmp_path):
    inst = np.zeros((40, 40), np.uint16)
    inst[4:14, 4:14], inst[20:30, 22:36], inst[30:38, 2:10] = 3, 7, 9
    sample = Sample(image=np.full((40, 40, 3), 200, np.uint8), image_id="a", dataset="handmade", source_id="a",
                    split="test", instances=inst)
    records.write_shards([sample], str(tmp_path), "test")
    mod = _script()
    samples, pairs = mod._nuclei(str(tmp_path), "test", 0, 0)
    assert sorted(k for _, k in pairs) == [3, 7, 9]
    assert len(mod._nuclei(str(tmp_path), "test", 2, 0)[1]) == 2
    row = mod.evaluate(_HalfThenWhole(inst.astype(int)), samples, pairs, fbrs=False, max_clicks=20, progress=False)
    assert row["nuclei"] == 3 and row["noc85"] == 2.0 and row["noc90"] == 2.0 and row["failed90"] == 0
    assert row["miou_at"]["1"] == 0.5 and row["miou_at"]["2"] == 1.0 and row["miou_at"]["20"] == 1.0
