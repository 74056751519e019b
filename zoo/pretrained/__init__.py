"""Pretrained models that ship inside the package (never downloaded): ``zoo/pretrained/<name>/``.

    from zoo import models
    m = models.pretrained()                      # the default nuclei model -> LoadedModel(model, spec, source)
    m = models.pretrained("nuclei-unet-monuseg")
    histozoo models list                         # the same, with each model's held-out metrics and size
    histozoo predict tile.png --out preds/       # in process, with the default pretrained model

Each folder holds ``model.keras`` (weights + architecture, no optimizer state), ``spec.json`` (its inference spec:
resolution, output channels, post-processing tuned on training images), ``card.json`` (training data, split,
command, commit, budget, held-out metrics, licence of the training data, sha256 of model.keras) and ``MODEL_CARD.md``
(the same for people), all written by ``scripts/ship_pretrained.py`` from a training run. Anywhere a model URI is
taken (``histozoo predict --model``, ``init_weights`` in an experiment config, ``zoo.training.tracking.load``),
``pretrained:NAME`` names one of these.
"""

from __future__ import annotations

import hashlib
import json
import os

from zoo.errors import ConfigError, DataError

DIR = os.path.dirname(os.path.abspath(__file__))
PREFIX = "pretrained:"
DEFAULT = "nuclei-unet-monuseg"
MODEL_FILE, SPEC_FILE, CARD_JSON, CARD_MD = "model.keras", "spec.json", "card.json", "MODEL_CARD.md"


def available() -> list[str]:
    """Names of the shipped models (folders with a model.keras and a card.json), sorted."""
    return sorted(n for n in os.listdir(DIR)
                  if os.path.isfile(os.path.join(DIR, n, MODEL_FILE)) and os.path.isfile(os.path.join(DIR, n, CARD_JSON)))


def path(name: str = DEFAULT) -> str:
    """The folder of shipped model ``name`` (``pretrained:`` prefix allowed); a one-line error lists the others."""
    name = name[len(PREFIX):] if name.startswith(PREFIX) else name
    names = available()
    if name not in names:
        raise ConfigError(f"no pretrained model {name!r}; shipped: {', '.join(names) or 'none'} (histozoo models list)")
    return os.path.join(DIR, name)


def card(name: str = DEFAULT) -> dict:
    """The model's card.json (training data, split, budget, held-out metrics, licence, sha256, size)."""
    with open(os.path.join(path(name), CARD_JSON)) as fh:
        return json.load(fh)


def sha256(file: str) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load(name: str = DEFAULT, verify: bool = True):
    """-> ``zoo.inference.LoadedModel`` (model, spec, source ``pretrained:NAME``). ``verify`` checks model.keras
    against the sha256 in card.json first (a truncated or edited file is a one-line DataError, not a wrong model)."""
    from zoo.inference import load_local

    folder = path(name)
    model_file = os.path.join(folder, MODEL_FILE)
    if verify:
        want = card(name).get("sha256", "")
        if want and sha256(model_file) != want:
            raise DataError(model_file, "sha256 differs from card.json: the shipped file is damaged or was replaced; "
                                        "reinstall histozoo")
    loaded = load_local(model_file)
    return type(loaded)(loaded.model, loaded.spec, PREFIX + os.path.basename(folder))
