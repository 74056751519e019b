"""Exposes tests/zoo/models/harness.py to these tests (pytest runs with --import-mode=importlib)."""

import importlib.util
import pathlib
import sys

import pytest

_NAME = "histozoo_tests_model_harness"


@pytest.fixture(scope="session")
def harness():
    if _NAME not in sys.modules:
        path = pathlib.Path(__file__).parents[1] / "models" / "harness.py"
        spec = importlib.util.spec_from_file_location(_NAME, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[_NAME] = module
        spec.loader.exec_module(module)
    return sys.modules[_NAME]
