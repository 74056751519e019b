"""A fit target with no tissue is refused by every stain method with the same rule and message (issue 16): Reinhard
used to accept one and normalise every tile towards flat background, while Macenko and Vahadane refused it."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.errors import ConfigError
from zoo.stain import base
from zoo.stain.macenko import MacenkoNormalizer
from zoo.stain.reinhard import ReinhardNormalizer
from zoo.stain.vahadane import VahadaneNormalizer

METHODS = [("reinhard", ReinhardNormalizer), ("macenko", MacenkoNormalizer), ("vahadane", VahadaneNormalizer)]


@pytest.mark.parametrize("name,cls", METHODS, ids=[m[0] for m in METHODS])
@pytest.mark.parametrize("tile", ["near_white", "speck"])
def test_every_method_refuses_a_no_tissue_target_alike(blank_tiles, name, cls, tile):
    with pytest.raises(ConfigError) as err:
        cls(jit=False).fit(blank_tiles[tile])
    msg = str(err.value)
    assert msg.startswith(f"{name} target has no tissue (tissue fraction ")
    assert msg.endswith("choose a target tile with tissue") and "\n" not in msg


def test_one_rule_shared_by_all(blank_tiles, monkeypatch):
    """The methods call the one check in zoo.stain.base (not a copy of it each)."""
    seen = []
    real = base.require_target_tissue

    def spy(method, no_tissue, fraction):
        seen.append((method, bool(no_tissue)))
        return real(method, no_tissue, fraction)

    monkeypatch.setattr(base, "require_target_tissue", spy)
    import zoo.stain.reinhard as reinhard_mod

    monkeypatch.setattr(reinhard_mod, "require_target_tissue", spy)
    for _, cls in METHODS:
        with pytest.raises(ConfigError, match="no tissue"):
            cls(jit=False).fit(blank_tiles["speck"])
    assert [m for m, _ in seen] == ["reinhard", "macenko", "vahadane"] and all(nt for _, nt in seen)


def test_reinhard_still_fits_a_tissue_target_and_flags_blank_tiles(tiles, blank_tiles):
    norm = ReinhardNormalizer(jit=False).fit(tiles["target"])
    out, info = norm.transform(blank_tiles["near_white"], return_info=True)
    assert info["fallback"] == "no_tissue"
    np.testing.assert_array_equal(out, blank_tiles["near_white"])
