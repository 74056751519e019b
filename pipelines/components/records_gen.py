"""HistoRecordsGen: a built records folder (``histozoo data build``, ``histozoo synth``, ``histozoo cycle``'s
annotated crops: GZIP shards ``<split>-NNNNN.tfrecord.gz`` of the one schema, zoo.data.records) -> a standard
``Examples`` artifact, so records made outside the pipeline feed its Trainer and HistoEvaluator as they are.

``splits``: {pipeline split: the folder's split}, e.g. ``{"train": "train", "eval": "val"}``; the folder's shards of
each are COPIED into ``Split-<pipeline split>/`` (an artifact owns its files; a later change of the folder does not
change it). Every pipeline split of ``OUTPUT_SPLITS`` exists in the artifact, empty when ``splits`` leaves it out
(the Trainer's eval split then has no files and the training core runs without validation).

Caching: no input artifacts; ``input_fingerprint`` (pipelines.ingest.input_fingerprint of the folder) makes changed
records a cache miss.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipelines import ingest

EXAMPLES_KEY = "examples"


def split_shards(records_dir: str, splits: dict) -> dict:
    """{pipeline split: the shard paths of the folder's split} (DataError naming the folder when one has none)."""
    from zoo.data import records
    from zoo.errors import ConfigError

    unknown = sorted(set(splits) - set(ingest.OUTPUT_SPLITS))
    if unknown:
        raise ConfigError(f"splits: unknown pipeline split {unknown[0]!r} (known: {', '.join(ingest.OUTPUT_SPLITS)})")
    return {k: records.list_shards(records_dir, v) for k, v in splits.items() if v}


class HistoRecordsGenSpec(ComponentSpec):
    PARAMETERS = {
        "records": ExecutionParameter(type=str),
        "splits": ExecutionParameter(type=str),  # JSON {pipeline split: the folder's split}
        "input_fingerprint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


def fill_examples(examples, files: dict) -> None:
    """Lay out the Examples artifact ``examples`` for records of our schema: ``Split-<split>/`` for every split of
    ``OUTPUT_SPLITS`` holding COPIES of ``files[split]`` (paths, or ``(path, name)`` pairs; none when absent), payload
    tf.Example, GZIP TFRecords. A name given twice in one split raises (one file would hide the other)."""
    from tfx.components.util import examples_utils
    from tfx.proto import example_gen_pb2

    from zoo.errors import DataError

    examples.split_names = artifact_utils.encode_split_names(list(ingest.OUTPUT_SPLITS))
    for split in ingest.OUTPUT_SPLITS:
        dest = artifact_utils.get_split_uri([examples], split)
        os.makedirs(dest, exist_ok=True)
        for f in files.get(split, []):
            src, name = f if isinstance(f, tuple) else (f, os.path.basename(f))
            if os.path.exists(os.path.join(dest, name)):
                raise DataError(src, f"Split-{split} of {examples.uri} already holds a file named {name}")
            shutil.copy2(src, os.path.join(dest, name))
    examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, "tfrecords_gzip")


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        records_dir = exec_properties["records"]
        fill_examples(examples, split_shards(records_dir, json.loads(exec_properties["splits"])))
        summary = os.path.join(records_dir, "summary.json")
        if os.path.isfile(summary):
            shutil.copy2(summary, os.path.join(examples.uri, "summary.json"))
        examples.set_string_custom_property("data_root", records_dir)
        examples.set_string_custom_property("splits", exec_properties["splits"])


class HistoRecordsGen(base_component.BaseComponent):
    """A built records folder as an Examples artifact (see the module docstring)."""

    SPEC_CLASS = HistoRecordsGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, records: str, splits: dict, input_fingerprint: str = ""):
        if os.path.isdir(records):  # a local folder: check the splits hold shards now, not inside the step
            split_shards(records, splits)
        spec = HistoRecordsGenSpec(records=records, splits=json.dumps(dict(splits), sort_keys=True),
                                   input_fingerprint=input_fingerprint,
                                   examples=types.Channel(type=standard_artifacts.Examples))
        super().__init__(spec=spec)
