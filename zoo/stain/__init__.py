"""Classical stain normalization and colour deconvolution in TensorFlow ops (batched, servable).

    from zoo import stain
    norm = stain.get_normalizer("macenko").fit(target)        # target: (H, W, 3) uint8
    out, info = norm.transform(batch, return_info=True)       # numpy or tf.Tensor, (H, W, 3) or (B, H, W, 3)
    norm.save("macenko.json"); norm = stain.load("macenko.json")
    out = stain.normalize(image, "reinhard", target)          # numpy in, numpy out

Methods: ``reinhard`` (Reinhard et al. 2001), ``macenko`` (Macenko et al. 2009), ``vahadane`` (Vahadane et al.
2016); the neural ``colorization`` (Yuan & Suh) and ``colornormnet`` (Bhatia), which take ``model=`` (zoo.stain.neural);
``rgb_to_hed`` / ``hed_to_rgb`` (Ruifrok & Johnston 2001). See ``zoo.stain.base`` for the fallbacks.
"""

from zoo.stain.base import (FALLBACK_NAMES, StainMatrixNormalizer, StainNormalizer, available, get_normalizer,
                            load, normalize)
from zoo.stain.deconvolution import hed_to_rgb, rgb_to_hed, separate_stains, stain_image
from zoo.stain.macenko import MacenkoNormalizer
from zoo.stain.neural import ColorizationNormalizer, ColorNormNetNormalizer
from zoo.stain.reinhard import ReinhardNormalizer, lab_to_rgb, lalphabeta_to_rgb, rgb_to_lab, rgb_to_lalphabeta
from zoo.stain.vahadane import VahadaneNormalizer

__all__ = ["ColorNormNetNormalizer", "ColorizationNormalizer", "FALLBACK_NAMES", "MacenkoNormalizer", "ReinhardNormalizer", "StainMatrixNormalizer", "StainNormalizer",
           "VahadaneNormalizer", "available", "get_normalizer", "hed_to_rgb", "lab_to_rgb", "lalphabeta_to_rgb", "load",
           "normalize", "rgb_to_hed", "rgb_to_lab", "rgb_to_lalphabeta", "separate_stains", "stain_image"]
