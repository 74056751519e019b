"""HistoAnnotate: one annotation cycle's labelling as a TFX step (Bhatia, "Ground-truth-free nuclei segmentation",
sections 3.2.3 and 4.1; ``histozoo cycle`` steps 1-3, zoo/interactive/cycle.py).

Inputs: ``model``, the current automatic model (a Trainer's Model artifact: Format-Keras/model.keras + spec.json,
loaded as HistoEvaluator loads it), and ``train_examples``, the training Examples so far (the synthetic records at
cycle 2, the previous HistoAnnotate's output after). The step runs the CLI's function, ``zoo.interactive.cycle.
annotate_pool``: the centre ``crop`` of each pool image ``image_ids`` (split ``pool_split`` of the built records
folder ``pool_data``), the automatic model's proposals corrected by the interactive model ``interactive_model``
under simulated clicks (``clicks_per_image``, ``clicks_per_nucleus``, ``accept_iou``, ``fbrs``); the pool's ground
truth only places the clicks, every label written is a model's mask.

Output: an ``Examples`` artifact: ``Split-train/`` = COPIES of the input's train files + this cycle's annotated
crops (records of the one schema, ``cycleNN-train-*.tfrecord.gz``), ``Split-eval/`` = copies of the input's eval
files (an artifact owns its files, and the Trainer reads a split as every file in its folder); ``annotation.json``
(per-image stats: clicks, nuclei, accepted, corrected, ...) and ``annotated/`` (this cycle's crops alone, a records
folder with its summary.json) at its root. Custom properties: ``clicks`` (spent on this cycle's images),
``images_annotated`` (this cycle's), ``cycle``, ``clicks_per_image`` (the budget), ``image_ids`` (JSON).

Caching: the cache key holds the input artifacts and the parameters; ``input_fingerprint`` (of the pool folder and
the interactive model file) makes a changed pool or interactive model a cache miss.
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any, Sequence

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipelines import ingest

EXAMPLES_KEY = "examples"
ANNOTATED_DIR = "annotated"
LOG_FILE = "annotation.json"


def annotated_name(cycle: int, shard: str) -> str:
    """The name of an annotated shard in Split-train: ``cycleNN-<shard>`` (unique across cycles)."""
    return f"cycle{int(cycle):02d}-{os.path.basename(shard)}"


class HistoAnnotateSpec(ComponentSpec):
    PARAMETERS = {
        "pool_data": ExecutionParameter(type=str),
        "pool_split": ExecutionParameter(type=str),
        "image_ids": ExecutionParameter(type=str),  # JSON list
        "crop": ExecutionParameter(type=int),
        "clicks_per_image": ExecutionParameter(type=int),
        "clicks_per_nucleus": ExecutionParameter(type=int),
        "accept_iou": ExecutionParameter(type=float),
        "fbrs": ExecutionParameter(type=int),  # 0 / 1
        "interactive_model": ExecutionParameter(type=str),
        "cycle": ExecutionParameter(type=int),
        "input_fingerprint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "train_examples": ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        from pipelines.components.evaluator import load_model_artifact
        from pipelines.components.records_gen import fill_examples
        from zoo import atomic, interactive
        from zoo.interactive.cycle import annotate_pool

        self._log_startup(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(input_dict["model"])
        given = artifact_utils.get_single_instance(input_dict["train_examples"])
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        cycle, ids = int(exec_properties["cycle"]), json.loads(exec_properties["image_ids"])
        automatic = load_model_artifact(model.uri)

        records_dir = os.path.join(examples.uri, ANNOTATED_DIR)
        log = annotate_pool(exec_properties["pool_data"], exec_properties["pool_split"], ids, automatic,
                            interactive.load(exec_properties["interactive_model"]), records_dir,
                            crop=int(exec_properties["crop"]),
                            clicks_per_image=int(exec_properties["clicks_per_image"]),
                            clicks_per_nucleus=int(exec_properties["clicks_per_nucleus"]),
                            accept_iou=float(exec_properties["accept_iou"]), fbrs=bool(exec_properties["fbrs"]))
        atomic.write_json(os.path.join(examples.uri, LOG_FILE), {"cycle": cycle, **log})

        # the input's files (train and eval) + this cycle's crops under their own names, all copies
        files = {split: sorted(glob.glob(os.path.join(artifact_utils.get_split_uri([given], split), "*")))
                 for split in ingest.OUTPUT_SPLITS}
        files[ingest.TRAIN] += [(f, annotated_name(cycle, f))
                                for f in sorted(glob.glob(os.path.join(records_dir, "train-*.tfrecord.gz")))]
        fill_examples(examples, files)
        examples.set_int_custom_property("cycle", cycle)
        examples.set_int_custom_property("clicks", int(log["clicks"]))
        examples.set_int_custom_property("images_annotated", len(log["images"]))
        examples.set_int_custom_property("clicks_per_image", int(exec_properties["clicks_per_image"]))
        examples.set_string_custom_property("image_ids", json.dumps(ids))


class HistoAnnotate(base_component.BaseComponent):
    """One cycle's annotation of real pool images (see the module docstring)."""

    SPEC_CLASS = HistoAnnotateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, train_examples: types.BaseChannel, pool_data: str, pool_split: str,
                 image_ids: Sequence[str], interactive_model: str, cycle: int, crop: int = 400,
                 clicks_per_image: int = 200, clicks_per_nucleus: int = 3, accept_iou: float = 0.85,
                 fbrs: bool = False, input_fingerprint: str = ""):
        spec = HistoAnnotateSpec(
            model=model, train_examples=train_examples, pool_data=pool_data, pool_split=pool_split,
            image_ids=json.dumps(list(image_ids)), crop=int(crop), clicks_per_image=int(clicks_per_image),
            clicks_per_nucleus=int(clicks_per_nucleus), accept_iou=float(accept_iou), fbrs=int(bool(fbrs)),
            interactive_model=interactive_model, cycle=int(cycle), input_fingerprint=input_fingerprint,
            examples=types.Channel(type=standard_artifacts.Examples))
        super().__init__(spec=spec)
