"""Bhatia's synthetic images with exact instance masks ("Ground-truth-free nuclei segmentation", chapter 3.2.1,
after Hou et al., CVPR 2019): random polygon masks (``masks``), real backgrounds with the nuclei removed and
inpainted (``background``), nuclear texture from sub-segmented real nuclei and eosin textures (``texture``), composed
as S = M * N + (1 - M) * B (``compose``); ``records`` writes them as records of the project's one schema. The SimGAN
refiner that makes them more realistic is the registered model ``simgan_refiner`` (zoo.models.simgan).

    from zoo.synthesis import SynthesisConfig, synthesize
    tile = synthesize(real_images, SynthesisConfig(), seed=0, index=0)   # tile.image, tile.instances
"""

from zoo.synthesis.compose import Synthetic, compose, synthesize
from zoo.synthesis.config import SynthesisConfig
from zoo.synthesis.masks import nucleus_stats, random_nuclei, size_ranges_from_records

__all__ = ["SynthesisConfig", "Synthetic", "compose", "synthesize", "random_nuclei", "nucleus_stats",
           "size_ranges_from_records"]
