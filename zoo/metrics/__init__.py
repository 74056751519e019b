"""Metrics as pure numpy functions of masks, label maps and label vectors (vectorised; every function cites its
definition). Modules: pixel (Naylor, Yuan & Suh), object (Qu et al. / GlaS), instance (AJI, AJI+, PQ, mPQ, Hu et
al.'s IoU/F), clustering (Hu et al. eq. 13-14, Yuan & Suh), color (Yuan & Suh sec. 4.1).

The evaluation core calls ``segmentation_report(gt_instances, pred_instances, gt_classes, pred_classes)``.
"""

from zoo.metrics.clustering import classification_report, clustering_report, confusion_matrix, entropy, purity
from zoo.metrics.color import color_metrics, euclidean_distance, hellinger_distance, histogram_correlation
from zoo.metrics.instance import (aji, aji_plus, hu_segmentation, instance_metrics, overlap, per_class_pq, pq,
                                  remap_label, segmentation_report)
from zoo.metrics.object import classification_accuracy, detection_f1, object_dice, object_hausdorff
from zoo.metrics.pixel import pixel_metrics

__all__ = ["aji", "aji_plus", "classification_accuracy", "classification_report", "clustering_report",
           "color_metrics", "confusion_matrix", "detection_f1", "entropy", "euclidean_distance",
           "hellinger_distance", "histogram_correlation", "hu_segmentation", "instance_metrics", "object_dice",
           "object_hausdorff", "overlap", "per_class_pq", "pixel_metrics", "pq", "purity", "remap_label",
           "segmentation_report"]
