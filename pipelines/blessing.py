"""The Evaluator's blessing rule (pure Python, no tfx): a model is blessed when every configured metric meets its
threshold and, when a blessed baseline exists, the comparison metric beats the baseline's by more than
``min_improvement`` on the same eval images (strictly: a tie keeps the baseline). All metrics here are
higher-is-better: pixel Dice/IoU, AJI (Kumar et al. 2017, TMI 36(7):1550-1560, eq. 1), PQ (Kirillov et al. 2019,
CVPR, eq. 1), as computed by zoo.metrics.segmentation_report.
"""

from __future__ import annotations

import math
from typing import Optional

from zoo.errors import ConfigError


def check_thresholds(thresholds: dict) -> dict:
    """``{metric: minimum}`` with float values; raises ConfigError on anything else."""
    if not isinstance(thresholds, dict):
        raise ConfigError(f"thresholds must be a mapping metric -> minimum, got {type(thresholds).__name__}")
    out = {}
    for k, v in thresholds.items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"threshold for {k!r} must be a number, got {v!r}") from None
    return out


def decide(current: dict, thresholds: dict, baseline: Optional[dict] = None, compare_metric: str = "aji",
           min_improvement: float = 0.0) -> tuple[bool, list[str]]:
    """(blessed, reasons). ``current`` / ``baseline``: mean metrics of the candidate / the blessed baseline."""
    reasons, ok = [], True
    for m, lo in check_thresholds(thresholds).items():
        v = current.get(m)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            ok = False
            reasons.append(f"{m}: missing from the evaluation (have {', '.join(sorted(current))})")
        elif v < lo:
            ok = False
            reasons.append(f"{m}={v:.4f} < threshold {lo:g}")
        else:
            reasons.append(f"{m}={v:.4f} >= threshold {lo:g}")
    if baseline is not None:
        c, b = current.get(compare_metric), baseline.get(compare_metric)
        if c is None or b is None:
            ok = False
            reasons.append(f"{compare_metric}: missing for the candidate or the baseline")
        elif c - b > min_improvement:
            reasons.append(f"{compare_metric}={c:.4f} beats baseline {b:.4f} by {c - b:+.4f} > {min_improvement:g}")
        else:
            ok = False
            reasons.append(f"{compare_metric}={c:.4f} vs baseline {b:.4f}: {c - b:+.4f} <= {min_improvement:g}")
    else:
        reasons.append("no blessed baseline: thresholds only")
    return ok, reasons
