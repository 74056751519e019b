"""Evaluation: a trained model + records -> every metric of the papers' tables (zoo.metrics), per image and mean.

``evaluate(model, source, split)`` reads the split's full images (records.read_samples), predicts probabilities
(padded to the model's divisor), turns them into instances (zoo.postprocess) and scores them with
``zoo.metrics.segmentation_report``. Results are a dict (``per_image`` list, ``mean``) and, through
``format_table``, a readable table.
"""

from zoo.evaluation.evaluate import (evaluate, format_table, instances_from_probabilities, iter_eval_samples,
                                     predict_probabilities, save_overlays)

__all__ = ["evaluate", "format_table", "instances_from_probabilities", "iter_eval_samples",
           "predict_probabilities", "save_overlays"]
