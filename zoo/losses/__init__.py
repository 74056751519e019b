"""histozoo's losses, registered by name: ``get_loss(name, **options)``; ``available_losses()``.

Segmentation losses take integer labels ``[B, H, W]``, softmax probabilities ``[B, H, W, C]`` and Keras' per-pixel
``sample_weight`` ``[B, H, W]`` (zoo.losses.pixel):

- ``weighted_ce``: Naylor et al.'s per-pixel weighted log loss (class weights and/or weight maps);
- ``dice``: soft multi-class Dice;
- ``ce_dice``: their weighted sum;
- ``qu_mixed``: Qu et al.'s L_ce + beta * L_per (frozen-VGG16 perceptual term, zoo.losses.perceptual) under mixed
  supervision (untyped instances, typed centres, typed instances in one batch; zoo.losses.mixed);
- ``hovernet``: Graham et al.'s NP (CE + Dice), HV (MSE + MSGE) and TP (CE + Dice) terms on HoVer-Net's stacked
  float target [B, H, W, 3 (+1)] (zoo.losses.hovernet);
- ``infowgan_gp``: Hu et al.'s InfoWGAN-GP game (critic with gradient penalty, generator, mutual information;
  zoo.losses.gan), taken by the GAN models' compile;
- ``simgan``: Shrivastava et al.'s SimGAN discriminator and refiner losses (zoo.losses.simgan), taken by the refiner.

Importing this package registers the loss classes with Keras (a compiled ``.keras`` file names them).
"""

from zoo.losses.registry import available_losses, get_loss, register_loss
from zoo.losses.pixel import PixelLoss
from zoo.losses.cross_entropy import WeightedCrossEntropy, pixel_cross_entropy
from zoo.losses.dice import CrossEntropyDice, SoftDice
from zoo.losses.mixed import QuMixedLoss
from zoo.losses.hovernet import HoVerNetLoss
from zoo.losses.gan import InfoWGANGPLoss, gradient_penalty, mutual_information_loss
from zoo.losses.simgan import SimGANLoss

__all__ = ["available_losses", "get_loss", "register_loss", "PixelLoss", "WeightedCrossEntropy",
           "pixel_cross_entropy", "SoftDice", "CrossEntropyDice", "QuMixedLoss", "HoVerNetLoss", "InfoWGANGPLoss",
           "gradient_penalty", "mutual_information_loss", "SimGANLoss"]
