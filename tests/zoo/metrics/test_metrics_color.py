"""Yuan & Suh sec. 4.1 colour metrics on 2x2 images, worked by hand with 2-bin histograms."""

import math

import numpy as np
import pytest

from zoo.errors import DataError
from zoo.metrics import color


def _img(red):
    a = np.zeros((2, 2, 3), np.uint8)
    a[..., 0] = np.array(red, np.uint8).reshape(2, 2)
    return a


A = _img([0, 0, 0, 255])       # R histogram (2 bins: <128, >=128) = [3, 1]; G and B = [4, 0]
B = _img([0, 255, 255, 255])   # R = [1, 3]


def test_euclidean():
    # pixels differ only in R: 0 vs 255 at 2 of 4 pixels -> sum of squares (unit range) 2 -> sqrt(2 / 4)
    assert color.euclidean_distance(A, B) == pytest.approx(math.sqrt(0.5))
    assert color.euclidean_distance(A, A) == 0.0
    with pytest.raises(DataError):
        color.euclidean_distance(A, np.zeros((2, 2)))


def test_histogram_correlation():
    # R: corr([3,1],[1,3]) = -1; G, B: identical constant-free [4,0] histograms -> 1; mean = 1/3
    assert color.histogram_correlation(A, B, bins=2) == pytest.approx(1 / 3)
    assert color.histogram_correlation(A, A) == pytest.approx(1.0)


def test_hellinger():
    # R: p = (.75, .25), q = (.25, .75): BC = 2 sqrt(.1875) -> H = sqrt(1 - BC) = 0.3660; G, B: 0 -> mean / 3
    h_r = math.sqrt(1 - 2 * math.sqrt(0.75 * 0.25))
    assert color.hellinger_distance(A, B, bins=2) == pytest.approx(h_r / 3)
    assert color.hellinger_distance(A, A) == 0.0
    black, white = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)
    assert color.hellinger_distance(black, white) == pytest.approx(1.0)   # disjoint histograms
    m = color.color_metrics(A, B, bins=2)
    assert set(m) == {"euclidean", "correlation", "hellinger"}
