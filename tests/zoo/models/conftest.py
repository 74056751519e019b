"""Exposes tests/zoo/models/harness.py to the test modules (pytest runs with --import-mode=importlib, so test
modules cannot import their neighbours)."""

import importlib.util
import pathlib
import sys

import pytest

_NAME = "histozoo_tests_model_harness"


def _load_harness():
    if _NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(_NAME, pathlib.Path(__file__).with_name("harness.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_NAME]


@pytest.fixture(scope="session")
def harness():
    return _load_harness()
