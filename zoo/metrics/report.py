"""The evaluation core's one entry point: pixel, object and instance metrics of one image in one flat dict.

It sits above zoo.metrics.pixel, zoo.metrics.object and zoo.metrics.instance (which share zoo.metrics.labels and
never import each other).
"""

from __future__ import annotations

from zoo.metrics import object as obj
from zoo.metrics.instance import instance_metrics_from_overlap, overlap, per_class_pq
from zoo.metrics.pixel import pixel_metrics

__all__ = ["segmentation_report", "PIXEL_KEYS"]

# the pixel_metrics keys reported (as pixel_<key>)
PIXEL_KEYS = ("accuracy", "precision", "recall", "specificity", "dice", "jaccard", "mean_iou", "performance")


def segmentation_report(gt_instances, pred_instances, gt_classes=None, pred_classes=None,
                        hausdorff: bool = True) -> dict:
    """Pixel, object and instance metrics of one image in one flat dict (the evaluation core's entry point).

    Keys (all scalars):
      pixel level (zoo.metrics.pixel, foreground = id > 0): ``pixel_accuracy, pixel_precision, pixel_recall,
        pixel_specificity, pixel_dice`` (= pixel F1, the "Dice" of nuclei papers), ``pixel_jaccard`` (nucleus IoU),
        ``pixel_mean_iou`` (mean of the background and nucleus IoU: Naylor et al.'s Table 1 "IU", FCN's mean IU),
        ``pixel_performance`` (Naylor's (TPR + TNR) / 2);
      object level (zoo.metrics.object, Qu et al. / GlaS): ``det_precision, det_recall, det_f1, det_tp, det_fp,
        det_fn`` (> 50 % of a gt nucleus covered), ``obj_dice``, ``obj_hausdorff`` (omitted when
        ``hausdorff=False``);
      instance level (zoo.metrics.instance): ``aji, aji_plus, pq, dq, sq, pq_tp, pq_fp, pq_fn, pq_sum_iou, aji_c, aji_u,
        hu_iou, hu_fscore, n_gt, n_pred``;
      with both ``gt_classes`` and ``pred_classes`` (formats: ``instance_classes``): ``cls_accuracy`` (Qu: accuracy
        over detection true positives, NaN when there is none), ``cls_tp``, ``mpq`` and ``pq_class_<t>`` per type.
    """
    ov = overlap(gt_instances, pred_instances)
    out = {}
    px = pixel_metrics(gt_instances, pred_instances)
    for k in PIXEL_KEYS:
        out[f"pixel_{k}"] = px[k]
    det = obj.detection_f1(ov)
    out.update({"det_precision": det["precision"], "det_recall": det["recall"], "det_f1": det["f1"],
                "det_tp": det["tp"], "det_fp": det["fp"], "det_fn": det["fn"]})
    out["obj_dice"] = obj.object_dice(ov)
    if hausdorff:
        out["obj_hausdorff"] = obj.object_hausdorff(gt_instances, pred_instances, overlap_table=ov)
    out.update(instance_metrics_from_overlap(ov))
    if gt_classes is not None and pred_classes is not None:
        ca = obj.classification_accuracy(gt_instances, pred_instances, gt_classes, pred_classes, overlap_table=ov)
        out["cls_accuracy"] = ca["accuracy"]
        out["cls_tp"] = ca["tp"]
        pc = per_class_pq(gt_instances, pred_instances, gt_classes, pred_classes)
        out["mpq"] = pc["mpq"]
        for t, v in pc["per_class"].items():
            out[f"pq_class_{t}"] = v["pq"]
    return out
