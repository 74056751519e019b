"""HistoExampleGen: a raw dataset folder -> Examples of OUR record schema (zoo.data.records), through Beam.

    beam.Create(reader.items()) | Reshuffle | Map(read + records.encode -> (split, bytes))
        | Partition(train, eval, left out) | WriteToTFRecord(GZIP) per split

The reader (zoo.data.readers.get_reader(dataset)(root)) lists items cheaply on the launcher; reading, decoding and
encoding run on the Beam workers, so ingest scales out on Dataflow / Flink / Spark with the usual
``beam_pipeline_args``. Output: a standard ``Examples`` artifact with splits ``train`` and ``eval``
(``Split-<name>/data-*.tfrecord.gz``, payload FORMAT_TF_EXAMPLE), read by StatisticsGen, SchemaGen,
ExampleValidator and the Trainer like any ExampleGen's output. Split rules: pipelines/ingest.py.

Caching: the component has no input artifacts, so its cache key is its parameters; ``input_fingerprint``
(a hash of the files under the root, pipelines.ingest.input_fingerprint) makes a changed dataset a cache miss.
"""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component, base_beam_executor, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipelines import ingest

EXAMPLES_KEY = "examples"
RECORD_PREFIX = "data"
RECORD_SUFFIX = ".tfrecord.gz"


class HistoExampleGenSpec(ComponentSpec):
    PARAMETERS = {
        "dataset": ExecutionParameter(type=str),
        "data_root": ExecutionParameter(type=str),
        "reader_options": ExecutionParameter(type=str),  # JSON
        "split_spec": ExecutionParameter(type=str),  # JSON of ingest.SplitSpec
        "input_fingerprint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {}
    OUTPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}


def _make_reader(dataset: str, root: str, options: dict):
    from zoo.data.readers import get_reader

    return get_reader(dataset)(root, **options)


class _ReadEncode:
    """The Beam Map function: holds the reader settings (picklable) and builds the reader once per worker."""

    def __init__(self, dataset: str, root: str, options: dict, spec: ingest.SplitSpec, membership: Optional[dict]):
        self.dataset, self.root, self.options, self.spec, self.membership = dataset, root, options, spec, membership
        self._reader = None

    def __call__(self, item):
        if self._reader is None:
            self._reader = _make_reader(self.dataset, self.root, self.options)
        return ingest.read_encode(self._reader, item, self.spec, self.membership)


def _partition(kv, n: int) -> int:
    split = kv[0]
    return ingest.OUTPUT_SPLITS.index(split) if split in ingest.OUTPUT_SPLITS else n - 1


class Executor(base_beam_executor.BaseBeamExecutor):
    """Lists the reader's items here, reads + encodes + writes them on the Beam workers."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        import apache_beam as beam
        from tfx.components.util import examples_utils
        from tfx.proto import example_gen_pb2

        from zoo.errors import DataError

        self._log_startup(input_dict, output_dict, exec_properties)
        dataset, root = exec_properties["dataset"], exec_properties["data_root"]
        options = json.loads(exec_properties.get("reader_options") or "{}")
        spec = ingest.SplitSpec.from_json(exec_properties["split_spec"])
        reader = _make_reader(dataset, root, options)
        items = list(reader.items())
        if not items:
            raise DataError(root, f"no {dataset} images found")
        membership = ingest.fold_membership(reader.folds(), int(spec.fold), root) if spec.fold is not None else None

        examples = artifact_utils.get_single_instance(output_dict[EXAMPLES_KEY])
        examples.split_names = artifact_utils.encode_split_names(list(ingest.OUTPUT_SPLITS))
        n = len(ingest.OUTPUT_SPLITS) + 1
        with self._make_beam_pipeline() as p:
            parts = (p
                     | "Items" >> beam.Create([str(i) if isinstance(i, os.PathLike) else i for i in items])
                     | "Distribute" >> beam.Reshuffle()
                     | "ReadEncode" >> beam.Map(_ReadEncode(dataset, root, options, spec, membership))
                     | "Partition" >> beam.Partition(_partition, n))
            for k, split in enumerate(ingest.OUTPUT_SPLITS):
                out = os.path.join(artifact_utils.get_split_uri([examples], split), RECORD_PREFIX)
                (parts[k]
                 | f"Values[{split}]" >> beam.Values()
                 | f"Write[{split}]" >> beam.io.WriteToTFRecord(
                     out, file_name_suffix=RECORD_SUFFIX,
                     compression_type=beam.io.filesystem.CompressionTypes.GZIP))
        examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
        examples.set_string_custom_property("dataset", dataset)
        examples.set_string_custom_property("data_root", root)
        for split in ingest.OUTPUT_SPLITS:
            files = split_files(examples.uri, split)
            if not files:
                raise DataError(root, f"no images went to the {split!r} split (split rule {spec.to_json()})")


def split_files(examples_uri: str, split: str) -> list[str]:
    """The record files of one split of an Examples artifact written by this component."""
    import tensorflow as tf

    return sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", f"*{RECORD_SUFFIX}")))


class HistoExampleGen(base_beam_component.BaseBeamComponent):
    """Custom ExampleGen over ``zoo.data.readers`` (see the module docstring)."""

    SPEC_CLASS = HistoExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, dataset: str, data_root: str, split_spec: ingest.SplitSpec,
                 reader_options: Optional[dict] = None, input_fingerprint: str = ""):
        spec = HistoExampleGenSpec(
            dataset=dataset, data_root=data_root, reader_options=json.dumps(reader_options or {}, sort_keys=True),
            split_spec=split_spec.to_json(), input_fingerprint=input_fingerprint,
            examples=types.Channel(type=standard_artifacts.Examples))
        super().__init__(spec=spec)
