"""Data layer: the Sample dataclass, the one record schema, dataset readers and the record builder."""

from zoo.data.sample import Sample

__all__ = ["Sample"]
