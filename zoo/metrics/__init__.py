"""Metrics as pure numpy functions of masks, label maps and label vectors (vectorised; every function cites its
definition). Modules: pixel (Naylor, Long et al.'s mean IU, Yuan & Suh), labels (the overlap table and per-instance
classes that object and instance share), object (Qu et al. / GlaS), instance (AJI, AJI+, PQ, mPQ, Hu et al.'s
IoU/F), report (all three levels in one dict), clustering (Hu et al. eq. 13-14, Yuan & Suh), color (Yuan & Suh
sec. 4.1). Imports point one way: report -> pixel, object, instance -> labels.

The evaluation core calls ``segmentation_report(gt_instances, pred_instances, gt_classes, pred_classes)``.
"""

from zoo.metrics.clustering import classification_report, clustering_report, confusion_matrix, entropy, purity
from zoo.metrics.color import color_metrics, euclidean_distance, hellinger_distance, histogram_correlation
from zoo.metrics.instance import aji, aji_plus, hu_segmentation, instance_metrics, per_class_pq, pq
from zoo.metrics.labels import instance_classes, overlap, remap_label
from zoo.metrics.object import classification_accuracy, detection_f1, object_dice, object_hausdorff
from zoo.metrics.pixel import mean_iou, pixel_metrics
from zoo.metrics.report import segmentation_report

__all__ = ["aji", "aji_plus", "classification_accuracy", "classification_report", "clustering_report",
           "color_metrics", "confusion_matrix", "detection_f1", "entropy", "euclidean_distance",
           "hellinger_distance", "histogram_correlation", "hu_segmentation", "instance_classes", "instance_metrics",
           "mean_iou", "object_dice", "object_hausdorff", "overlap", "per_class_pq", "pixel_metrics", "pq", "purity",
           "remap_label", "segmentation_report"]
