"""Shared fixtures. Real datasets come from ../shared/data (or $HISTOZOO_DATA) through ``shared_data`` only:
it skips with a clear reason on a machine without the data, and fails when CI=true."""

from __future__ import annotations

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def _data_root() -> pathlib.Path:
    return pathlib.Path(os.environ.get("HISTOZOO_DATA", DEFAULT_DATA))


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The folder holding tnbc/, monuseg2018/, crchistophenotypes/, bone_marrow_kainz2015/."""
    root = _data_root()
    if not (root / "tnbc").is_dir():
        msg = f"real datasets not found at {root} (set HISTOZOO_DATA to the folder holding tnbc/, monuseg2018/, ...)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg + "; CI=true requires them")
        pytest.skip(msg)
    return root


@pytest.fixture(scope="session")
def tnbc_records(shared_data, tmp_path_factory) -> pathlib.Path:
    """TNBC built once per session into a temporary folder (about 10 s)."""
    from zoo.data.build import build

    out = tmp_path_factory.mktemp("tnbc_records")
    build("tnbc", str(shared_data / "tnbc"), str(out), progress=False)
    return out


@pytest.fixture(scope="session")
def copy_real(shared_data):
    """``copy(dataset, dest, ids) -> dest``: a raw folder of real images in the dataset's own layout, for building
    small record sets. ``tnbc``: ids = {patient: [image ids]} (Slide_XX/ + GT_XX/ PNGs); ``crchistophenotypes``:
    ids = image folders (imgN/ with its typed-centre .mat files)."""
    import shutil

    def copy(dataset: str, dest: pathlib.Path, ids) -> pathlib.Path:
        if dataset == "tnbc":
            src = shared_data / "tnbc" / "TNBC_NucleiSegmentation"
            for patient, names in ids.items():
                for kind in ("Slide", "GT"):
                    (dest / f"{kind}_{patient}").mkdir(parents=True)
                    for i in names:
                        shutil.copy2(src / f"{kind}_{patient}" / f"{i}.png", dest / f"{kind}_{patient}" / f"{i}.png")
        elif dataset == "crchistophenotypes":
            src = shared_data / "crchistophenotypes" / "CRCHistoPhenotypes_2016_04_28"
            for i in ids:
                shutil.copytree(src / i, dest / i)
        else:
            raise ValueError(f"copy_real: no layout for {dataset!r}")
        return dest

    return copy


# issue 17's mixed supervision on real images (docs/results/joint.md's build/qu-mixed in small): TNBC patient 02 is
# the untyped training side, patient 01 the held-out test image; CRCHistoPhenotypes img1 / img2 (training split: image
# numbers not divisible by 4, PROVENANCE.md) the typed-centre side
QU_SMALL_TNBC = {"train": ("02", ("02_1", "02_2")), "test": ("01", ("01_1",))}
QU_SMALL_CRC = ("img1", "img2")


@pytest.fixture(scope="session")
def qu_mixed_small(copy_real, tmp_path_factory) -> pathlib.Path:
    """A mixed-supervision records folder from real images: ``train-*`` = 2 TNBC images (untyped instance maps) + 2
    CRCHistoPhenotypes images (typed centres, 4 types), ``test-*`` = 1 TNBC image of another patient."""
    import shutil

    from zoo.data.build import build

    root = tmp_path_factory.mktemp("qu_mixed_small")
    out = root / "mixed"
    out.mkdir()
    build("crchistophenotypes", str(copy_real("crchistophenotypes", root / "crc_raw", QU_SMALL_CRC)),
          str(root / "crc"), progress=False)
    for shard in sorted((root / "crc").glob("train-*.tfrecord.gz")):
        os.symlink(shard, out / f"train-crc-{shard.name[len('train-'):]}")
    for split, (patient, ids) in QU_SMALL_TNBC.items():
        raw = copy_real("tnbc", root / f"tnbc_raw_{split}", {patient: ids})
        build("tnbc", str(raw), str(root / f"tnbc_{split}"), progress=False)
        for shard in sorted((root / f"tnbc_{split}").glob("all-*.tfrecord.gz")):
            os.symlink(shard, out / f"{split}-tnbc-{shard.name[len('all-'):]}")
    shutil.copy2(root / "tnbc_train" / "summary.json", out / "summary.json")
    return out


@pytest.fixture(scope="session")
def qu_tiny_experiment():
    """``make(name, data_dir="") -> dict``: the tiny Qu experiment below (a fresh dict each call)."""
    return _qu_tiny_experiment


def _qu_tiny_experiment(name: str, data_dir: str = "") -> dict:
    """A ResNet34 U-Net of Qu et al. at tiny widths (one block per stage) on ``qu_mixed_small``: the shipped Qu configs'
    input, loss and in-graph post-processing, 1 epoch x 2 steps of 2 x 64 px patches."""
    return {"name": name, "model": "qu", "data_dir": data_dir, "train_split": "train", "val_split": "test",
            "model_config": {"num_types": 4, "encoder_blocks": [1, 1, 1, 1], "encoder_width": 1 / 16,
                             "decoder_filters": [8, 8, 8, 8, 8]},
            "input": {"patch_size": 64, "batch_size": 2, "target": "inner_contour", "types": "merged",
                      "num_types": 4, "mixed_supervision": True, "boundary_width": 2, "weight_map": "unet",
                      "point_radius": 3.0, "mpp": 0.5, "patches_per_image": 1, "shuffle_buffer": 1},
            "loss": "qu_mixed", "loss_config": {"num_types": 4, "beta": 0.1}, "epochs": 1, "steps_per_epoch": 2,
            "postprocess": {"method": "inner_contour", "threshold": 0.5, "radius": 2, "min_size": 20,
                            "grow": "dilate"},
            "tracking": {"enabled": True, "experiment": "qu-tiny", "register_as": "", "log_model": True}}


@pytest.fixture(scope="session")
def quickstart_model(tnbc_records, tmp_path_factory):
    """(model, spec, run folder): the README's own config (configs/quickstart.yaml) trained for 2 epochs x 10 steps
    on TNBC patients != 09 (fold 9), no MLflow, loaded back through the one loader (about 20 s)."""
    from zoo.inference import InferenceSpec
    from zoo.training import ExperimentConfig, train
    from zoo.training.tracking import load

    cfg = ExperimentConfig.load(str(REPO / "configs" / "quickstart.yaml")).replace(
        data_dir=str(tnbc_records), epochs=2, steps_per_epoch=10)
    out = tmp_path_factory.mktemp("quickstart_run")
    train(cfg, output_dir=str(out), tracking=False, verbose=0)
    loaded = load(str(out))  # a run folder -> checkpoints/last.keras + checkpoints/spec.json
    assert loaded.spec == InferenceSpec.load(str(out / "checkpoints" / "spec.json"))
    return loaded.model, loaded.spec, out


@pytest.fixture(scope="session")
def tnbc_patient09(tnbc_records):
    """TNBC patient 09's labelled samples (fold 9's test images), in memory."""
    from zoo.evaluation import iter_eval_samples

    return list(iter_eval_samples(str(tnbc_records), "test", fold=9))


@pytest.fixture(scope="session")
def disk_tiles():
    """make(n, side, val=()) -> n toy "synthetic" Samples: dark disks (6 per tile, radius 5, instance ids 1..) on a
    pale noisy background, tile k seeded by k; tiles whose index is in ``val`` go to split "val", the rest "train"
    (the annotation-cycle tests' synthetic records)."""
    import numpy as np

    from zoo.data.sample import Sample

    def make(n: int, side: int, val=()) -> list:
        yy, xx = np.mgrid[:side, :side]
        tiles = []
        for k in range(n):
            rng = np.random.default_rng(k)
            inst = np.zeros((side, side), np.uint16)
            image = (rng.random((side, side, 3)) * 40 + 200).astype(np.uint8)
            for j, (y, x) in enumerate(rng.integers(8, side - 8, (6, 2)), 1):
                m = ((yy - y) ** 2 + (xx - x) ** 2 <= 25) & (inst == 0)
                inst[m] = j
                image[m] = (80, 40, 150)
            tiles.append(Sample(image=image, image_id=f"synth{k}", dataset="synthetic", source_id=f"synth{k}",
                                split="val" if k in val else "train", instances=inst))
        return tiles

    return make


def write_toy_crops(root) -> str:
    """4 images of 48 x 48 px (2 train, 2 test), each with 6 discs of two colours = types a / b at jittered centres
    (seed 0), written as records under ``root/src`` and cut into 16-px centre crops (zoo.data.crops) in
    ``root/crops``; returns the crops folder."""
    import numpy as np

    from zoo.data.build import DatasetWriter
    from zoo.data.crops import CropConfig, write_crops
    from zoo.data.sample import Sample

    rng = np.random.default_rng(0)
    src = str(pathlib.Path(root) / "src")
    with DatasetWriter(src, ("a", "b")) as w:
        for i in range(4):
            img = np.full((48, 48, 3), 235, np.uint8)
            pts, cls = [], []
            for k in range(6):
                y, x = 8 + (k // 3) * 24 + rng.integers(0, 4), 8 + (k % 3) * 14 + rng.integers(0, 4)
                yy, xx = np.ogrid[:48, :48]
                img[(yy - y) ** 2 + (xx - x) ** 2 <= 9] = (70, 30, 120) if k % 2 else (170, 90, 150)
                pts.append((y, x))
                cls.append(1 + k % 2)
            w.add(Sample(image=img, image_id=f"img{i}", dataset="toy", source_id=f"s{i}",
                         split="test" if i % 2 else "train", points_yx=np.array(pts, np.float32),
                         point_classes=np.array(cls), class_names=("a", "b")))
        w.commit("toy", "synthetic", {})
    crops = str(pathlib.Path(root) / "crops")
    write_crops(src, crops, CropConfig(size=16), progress=False)
    return crops


@pytest.fixture
def toy_crops(tmp_path) -> str:
    """write_toy_crops in the test's tmp_path: centre-point crops of hand-drawn two-type nuclei for the GAN /
    clustering tests."""
    return write_toy_crops(tmp_path)
