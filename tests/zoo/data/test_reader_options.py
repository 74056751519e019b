"""Dataset-reader options (`histozoo data build NAME --option key=value`, ``build(..., **options)``) are checked
against the reader's keyword parameters when the reader is created: an unknown key or a wrong type is a one-line
ConfigError that names the option and lists the accepted ones, before any file is read or written."""

from __future__ import annotations

import pytest

from zoo.data.build import build
from zoo.data.readers import available, get_reader, reader_options
from zoo.errors import ConfigError


@pytest.fixture
def fake_tnbc(tmp_path):
    """Enough of a TNBC folder for the reader's constructor (a Slide_XX folder; no images are read)."""
    root = tmp_path / "tnbc"
    (root / "Slide_01").mkdir(parents=True)
    return root


def test_every_reader_lists_its_options():
    assert reader_options("tnbc") == {"connectivity": 8}
    assert reader_options("bone_marrow") == {}
    assert {"images", "labels", "test_fraction", "seed"} <= set(reader_options("folder"))
    for name in available():
        assert "root" not in reader_options(name) and "self" not in reader_options(name)


def test_unknown_option_fails_before_anything_is_written(fake_tnbc, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as e:
        build("tnbc", str(fake_tnbc), str(out), progress=False, bogus=1)
    msg = str(e.value)
    assert "\n" not in msg
    assert "option 'bogus'" in msg and "dataset 'tnbc'" in msg and "(options: connectivity)" in msg
    assert not out.exists()


@pytest.mark.parametrize("name,options,key", [
    ("tnbc", {"connectivity": "eight"}, "connectivity"),
    ("tnbc", {"connectivity": True}, "connectivity"),
    ("tnbc", {"connectivity": 8.0}, "connectivity"),
    ("consep", {"mpp": "fine"}, "mpp"),
    ("folder", {"test_fraction": "a lot"}, "test_fraction"),
    ("folder", {"binary": "yes"}, "binary"),
    ("folder", {"images": ["a", "b"]}, "images"),
    ("pannuke", {"fold_splits": [1, 2]}, "fold_splits"),
    ("monuseg2018", {"train_labels": 3}, "train_labels"),
])
def test_wrong_type_names_the_option_and_lists_the_accepted_ones(tmp_path, name, options, key):
    with pytest.raises(ConfigError) as e:
        get_reader(name)(str(tmp_path / "does-not-matter"), **options)
    msg = str(e.value)
    assert f"option {key!r} of dataset {name!r} must be" in msg and "(options: " in msg, msg


def test_bad_value_is_a_config_error(fake_tnbc):
    with pytest.raises(ConfigError, match="'connectivity' must be 4 or 8, got 5"):
        get_reader("tnbc")(str(fake_tnbc), connectivity=5)
    assert get_reader("tnbc")(str(fake_tnbc), connectivity=4).connectivity == 4


def test_reader_without_options_rejects_any(tmp_path):
    with pytest.raises(ConfigError, match=r"option 'classes': not an option of dataset 'bone_marrow' \(options: none\)"):
        get_reader("bone_marrow")(str(tmp_path), classes=4)


def test_cli_option_typo_exits_2_with_one_line(fake_tnbc, tmp_path, capsys):
    from histozoo.cli import main

    out = tmp_path / "out"
    rc = main(["data", "build", "tnbc", "--root", str(fake_tnbc), "--out", str(out), "--quiet",
               "--option", "bogus=1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "option 'bogus'" in err and "connectivity" in err, err
    assert not out.exists()
