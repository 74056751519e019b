"""Hand-made label maps shared by the metric tests (answers worked out by hand in each test)."""

import numpy as np
import pytest

# ---- case A: touching nuclei merged by the prediction, one nucleus split, one missed, one false detection
# GT ids (non-consecutive): 10 = A (rows 0-1, cols 0-2), 20 = B (rows 0-1, cols 3-5, touching A),
# 30 = C (rows 3-4, cols 0-3), 40 = D (row 5, cols 6-7)
GT_A = np.array([
    [10, 10, 10, 20, 20, 20, 0, 0],
    [10, 10, 10, 20, 20, 20, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [30, 30, 30, 30, 0, 0, 0, 0],
    [30, 30, 30, 30, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0, 40, 40],
])
# pred: 7 merges A+B, 3 and 5 split C, 9 (row 5, cols 0-1) is a false detection, D is missed
PR_A = np.array([
    [7, 7, 7, 7, 7, 7, 0, 0],
    [7, 7, 7, 7, 7, 7, 0, 0],
    [0, 0, 0, 0, 0, 0, 0, 0],
    [3, 3, 5, 5, 0, 0, 0, 0],
    [3, 3, 5, 5, 0, 0, 0, 0],
    [9, 9, 0, 0, 0, 0, 0, 0],
])
# areas: A 6, B 6, C 8, D 2 (sum 22); pred 7: 12, 3: 4, 5: 4, 9: 2 (sum 22)
# pairs: (A,7) inter 6 union 12 IoU .5; (B,7) 6/12 = .5; (C,3) 4/8 = .5; (C,5) 4/8 = .5


@pytest.fixture
def case_a():
    """(gt, pred) of case A."""
    return GT_A.copy(), PR_A.copy()
