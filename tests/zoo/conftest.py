"""Shared by the tests under tests/zoo (pytest runs with --import-mode=importlib, so test modules cannot import their
neighbours): the model harness tests/zoo/models/harness.py as the ``harness`` fixture (``toy_crops`` is in
tests/conftest.py: the pipeline tests use it too)."""

import importlib.util
import pathlib
import sys

import pytest

_HARNESS = "histozoo_tests_model_harness"


def load_harness():
    if _HARNESS not in sys.modules:
        path = pathlib.Path(__file__).parent / "models" / "harness.py"
        spec = importlib.util.spec_from_file_location(_HARNESS, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_HARNESS] = module
        spec.loader.exec_module(module)
    return sys.modules[_HARNESS]


@pytest.fixture(scope="session")
def harness():
    return load_harness()
