"""histozoo's segmentation models, registered by name.

    from zoo import models
    models.available()                       # ['deconvnet', 'ensemble', 'fcn8s', 'pangnet', 'qu', 'unet']
    net = models.build("unet", {"num_classes": 3})
    probs = net(images)                      # float32 [B, H, W, 3] in [0, 1] -> softmax [B, H, W, num_classes]

Every model is a Keras 3 subclassed ``SegmentationModel`` built from a frozen, validated config dataclass
(``models.get(name).config_class``); the input/output contract, normalisation and padding to ``model.min_divisor`` are
described in zoo.models.base. Importing this package registers every model, layer and loss with Keras, which a
process must do before ``keras.saving.load_model`` reads a histozoo ``.keras`` file.

Papers: PangNet, FCN-8s, DeconvNet and their ensemble (Naylor et al. 2017, section 5) in ``naylor``; Yuan & Suh's
U-Net (section 3.2) in ``unet``; Qu et al.'s ResNet34 U-Net (section 2.1) in ``qu``; the VGG16 encoder and its
weight loading in ``vgg``; Hu et al.'s InfoWGAN-GP and Yuan & Suh's InfoGAN (nucleus crops, section III-A / 3.3;
not segmentation models: ``model(crops)`` gives cluster probabilities and an embedding) in ``gan``.
"""

import zoo.losses  # noqa: F401  (a compiled .keras file names histozoo losses: importing zoo.models must be enough)
from zoo.models.base import ModelConfig, SegmentationModel
from zoo.models.registry import available, build, get, register
from zoo.models.naylor import (DeconvNet, DeconvNetConfig, Ensemble, EnsembleConfig, EnsembleMember, FCN8s,
                               FCN8sConfig, PangNet, PangNetConfig)
from zoo.models.unet import UNet, UNetConfig
from zoo.models.qu import QuConfig, QuNet
from zoo.models.hovernet import HoVerNet, HoVerNetConfig
from zoo.models.gan import InfoGAN, InfoGANConfig, YuanSuhConfig, YuanSuhInfoGAN
from zoo.models.simgan import SimGANConfig, SimGANRefiner
from zoo.models.interactive import InteractiveConfig, InteractiveNet  # click-conditioned HRNet + OCR (issue 23)
from zoo.models.colorization import ColorizationConfig, ColorizationNet, ColorNormNet, ColorNormNetConfig



def pretrained(name: str = "nuclei-unet-monuseg"):
    """A model shipped in the package -> ``LoadedModel`` (model, spec, source); ``zoo.pretrained`` has the list."""
    from zoo import pretrained as _pretrained

    return _pretrained.load(name)


__all__ = ["pretrained", "ModelConfig", "SegmentationModel", "available", "build", "get", "register", "PangNet", "PangNetConfig",
           "FCN8s", "FCN8sConfig", "DeconvNet", "DeconvNetConfig", "Ensemble", "EnsembleConfig", "EnsembleMember",
           "UNet", "UNetConfig", "QuNet", "QuConfig", "HoVerNet", "HoVerNetConfig", "InfoGAN",
           "InfoGANConfig", "YuanSuhInfoGAN", "YuanSuhConfig", "SimGANRefiner", "SimGANConfig"]
