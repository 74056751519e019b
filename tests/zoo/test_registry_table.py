"""zoo.registry.Registry: the one name -> class table of models, losses, dataset readers and stain methods."""

import pytest

from zoo.errors import ConfigError
from zoo.registry import Registry


class A:
    pass


class B:
    pass


def test_add_get_available_and_errors():
    r = Registry("widget")
    assert r.add("b", B) is B and r.add("a", A) is A
    assert r.get("a") is A and "a" in r and "c" not in r
    assert r.available() == ["a", "b"]
    r.add("a", A)  # the same class again (a module re-import) is fine
    with pytest.raises(ValueError, match=r"widget name 'a' is already registered by .*test_registry_table\.A"):
        r.add("a", B)
    with pytest.raises(ConfigError, match=r"^unknown widget 'c' \(available: a, b\)$"):
        r.get("c")
    with pytest.raises(ConfigError, match="unknown widget"):
        r.get(["unhashable"])


def test_every_kind_uses_it():
    from zoo.data.readers import get_reader
    from zoo.losses import get_loss
    from zoo.models import get
    from zoo.stain import get_normalizer

    for fn, kind in ((get_reader, "dataset"), (get, "model"), (get_normalizer, "stain method"), (get_loss, "loss")):
        with pytest.raises(ConfigError, match=f"^unknown {kind} 'nope' \\(available: "):
            fn("nope")
