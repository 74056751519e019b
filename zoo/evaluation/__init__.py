"""Evaluation: a trained model + records -> every metric of the papers' tables (zoo.metrics), per image and mean.

``evaluate(model, source, split, spec=...)`` reads the split's full images (records.read_samples), runs THE inference
function ``zoo.inference.predict`` on each (the spec's resolution, stain normalisation, padding and post-processing:
exactly what a served model does) and scores the instances with ``zoo.metrics.segmentation_report``. Results are a
dict (``per_image`` list, ``mean``, the spec used) and, through ``format_table``, a readable table.
"""

from zoo.evaluation.evaluate import (evaluate, evaluate_centres, evaluate_classical, format_centres, format_table,
                                     iter_eval_samples, resolve_spec, save_overlays, score_centres)

__all__ = ["evaluate", "evaluate_centres", "evaluate_classical", "format_centres", "format_table", "iter_eval_samples",
           "resolve_spec", "save_overlays", "score_centres"]
