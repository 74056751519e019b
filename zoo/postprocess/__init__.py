"""Post-processing: from per-pixel predictions (or a stained image) to nucleus instance maps.

- watershed.dynamics_watershed: Naylor et al. 2017's watershed from minima of large dynamics (h-minima).
- instances: Qu et al. 2019's inner/contour recovery, Yuan & Suh 2018's three-class decoding, label-map chores.
- classical: Hu et al. 2018's unsupervised colour-deconvolution pipeline and Yuan & Suh's LoG blob detection
  (imported lazily: it needs zoo.stain).
"""

from zoo.postprocess.instances import (instance_classes, instances_from_inner_contour,  # noqa: F401
                                       instances_from_three_class, label_components, relabel_sequential,
                                       remove_small)
from zoo.postprocess.watershed import dynamics_markers, dynamics_watershed  # noqa: F401
