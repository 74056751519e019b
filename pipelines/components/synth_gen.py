"""HistoSynthGen: ``histozoo synth`` as a TFX step (Bhatia, "Ground-truth-free nuclei segmentation", ch. 3).

Runs the same function as the CLI (``histozoo.commands.synth.synthesize_records`` -> zoo.synthesis.dataset.
write_synthetic: synthetic tiles with exact instance maps, optionally refined by a trained SimGAN refiner) and
writes a standard ``Examples`` artifact of the project's record schema (zoo.data.records), laid out like
HistoExampleGen's: ``Split-train/`` (the synthetic "train" images) and ``Split-eval/`` (the synthetic "val" images,
Bhatia's 80-20 split), GZIP TFRecords of tf.Example, plus ``summary.json`` at the artifact root. The pipeline
(``create_pipeline(..., synth={...})``) feeds it to the Trainer in place of HistoExampleGen's output, so the model
trains on synthetic data only; StatisticsGen / SchemaGen and the Evaluator keep the real dataset.

Caching: no input artifacts, so the cache key is the parameters; ``input_fingerprint`` (pipelines.ingest.
input_fingerprint of the images folder) makes changed real images a cache miss.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from typing import Any, Optional

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipelines import ingest

EXAMPLES_KEY = "examples"
#: write_synthetic's split -> the pipeline's split
SPLITS = {"train": ingest.TRAIN, "val": ingest.EVAL}
SUMMARY = "summary.json"


class HistoSynthGenSpec(ComponentSpec):
    PARAMETERS = {
        "images": ExecutionParameter(type=str),
        "n": ExecutionParameter(type=int),
        "seed": ExecutionParameter(type=int),
        "options": ExecutionParameter(type=str),  # JSON of SynthesisConfig options
        "refiner": ExecutionParameter(type=str, optional=True),
        "input_fingerprint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


class Executor(base_executor.BaseExecutor):
    """Synthesizes into the artifact folder, then moves each split's shards into ``Split-<split>/``."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        from tfx.components.util import examples_utils
        from tfx.proto import example_gen_pb2

        from histozoo.commands.synth import synthesize_records
        from zoo.errors import DataError

        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        images = exec_properties["images"]
        summary = synthesize_records(images, int(exec_properties["n"]), examples.uri,
                                     json.loads(exec_properties.get("options") or "{}"),
                                     seed=int(exec_properties["seed"]), refiner=exec_properties.get("refiner") or "",
                                     progress=False)
        examples.split_names = artifact_utils.encode_split_names(list(ingest.OUTPUT_SPLITS))
        for src, split in SPLITS.items():
            files = sorted(glob.glob(os.path.join(examples.uri, f"{src}-*.tfrecord.gz")))
            if not files:
                raise DataError(images, f"no synthetic images went to the {split!r} split (n="
                                        f"{exec_properties['n']}; the synthetic val split is 20 %: use n >= 3)")
            dest = artifact_utils.get_split_uri([examples], split)
            os.makedirs(dest, exist_ok=True)
            for f in files:
                shutil.move(f, os.path.join(dest, os.path.basename(f)))
        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
        examples.set_string_custom_property("dataset", "synthetic")
        examples.set_string_custom_property("data_root", images)
        examples.set_float_custom_property("images_per_s", float(summary["images_per_s"]))


class HistoSynthGen(base_component.BaseComponent):
    """``histozoo synth`` as a pipeline step (see the module docstring)."""

    SPEC_CLASS = HistoSynthGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, images: str, n: int, seed: int = 0, options: Optional[dict] = None, refiner: str = "",
                 input_fingerprint: str = ""):
        spec = HistoSynthGenSpec(
            images=images, n=int(n), seed=int(seed), options=json.dumps(options or {}, sort_keys=True),
            refiner=refiner or "", input_fingerprint=input_fingerprint,
            examples=types.Channel(type=standard_artifacts.Examples))
        super().__init__(spec=spec)
