"""benchmarks/inference_speed.py's ideal maps: the output a perfect model would give for a ground-truth instance map,
per post-processing method. Post-processed through the one inference function they must give the ground truth back,
or the benchmark would time post-processing on something other than a well-trained model's output."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

from inference_speed import ideal_maps  # noqa: E402

from zoo.inference import InferenceSpec, predict  # noqa: E402
from zoo.metrics import aji  # noqa: E402
from zoo.postprocess.config import PostprocessConfig  # noqa: E402


def _instances():
    """Two touching 12 x 12 squares and a lone disc-like block, on a 48 x 48 map."""
    inst = np.zeros((48, 48), np.int32)
    inst[4:16, 4:16] = 1
    inst[4:16, 16:28] = 2
    inst[30:42, 30:40] = 3
    return inst


@pytest.mark.parametrize("channels, method", [
    (("background", "nucleus", "hv:x", "hv:y"), {"method": "hovernet", "sobel_size": 11}),
    (("background", "nucleus", "hv:x", "hv:y", "tp:background", "type:a", "type:b"),
     {"method": "hovernet", "sobel_size": 11}),
    (("background", "interior", "boundary"), {"method": "three_class"}),
    (("background", "inner:a", "inner:b", "contour"), {"method": "inner_contour", "min_size": 5}),
])
def test_ideal_maps_post_process_back_to_the_ground_truth(channels, method):
    inst = _instances()
    spec = InferenceSpec(channels=channels, class_names=("a", "b") if any(":" in c for c in channels[4:]) or
                         "inner:a" in channels else (), postprocess=PostprocessConfig.from_dict(method))
    probs = ideal_maps(spec, inst)
    assert probs.shape == inst.shape + (len(channels),)
    pred = predict(None, spec, np.zeros(inst.shape + (3,), np.uint8), probabilities=probs)
    assert pred.num_instances == 3
    assert aji(inst, pred.instances) > 0.95
