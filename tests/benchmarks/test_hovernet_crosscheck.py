"""scripts/crosscheck_hovernet_stats.py and benchmarks/instance_metrics.py: the comparison with HoVer-Net's
compute_stats on hand-worked maps. HoVer-Net's code is never committed: the tests that run it need a working copy
($HOVERNET_REF, default /work/ref/hover_net) and skip without one; the rest use a stand-in with the same file
contract (.mat files with ``inst_map``, the 6 x N metrics array in compute_stats' row order)."""

import importlib.util
import json
import os
import pathlib
import sys
import types

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
REF = os.environ.get("HOVERNET_REF", "/work/ref/hover_net")


def _load(name, rel):
    spec = importlib.util.spec_from_file_location(name, REPO / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def cc():
    return _load("crosscheck_hovernet_stats", "scripts/crosscheck_hovernet_stats.py")


def _maps():
    """gt: nuclei 1 (rows 0-1, cols 0-3: 8 px) and 2 (rows 4-5, cols 0-1: 4 px); pred (raw ids 7, 9): 7 covers
    rows 0-1, cols 0-2 (6 px, IoU 6/8 with gt 1), 9 covers rows 4-6, cols 0-1 (6 px, IoU 4/6 with gt 2)."""
    gt = np.zeros((8, 8), np.int32)
    gt[0:2, 0:4] = 1
    gt[4:6, 0:2] = 2
    pred = np.zeros((8, 8), np.int32)
    pred[0:2, 0:3] = 7
    pred[4:7, 0:2] = 9
    return gt, pred


def test_our_side_on_hand_worked_maps(cc):
    gt, pred = _maps()
    s = cc.our_stats(gt, pred)
    # AJI = (6 + 4) / (8 + 6) ; both pairs IoU > 0.5: TP 2, SQ = (0.75 + 2/3) / 2 ; Dice = 2 * 10 / (12 + 12)
    assert s["aji"] == pytest.approx(10 / 14, abs=1e-15) and s["aji_plus"] == pytest.approx(10 / 14, abs=1e-15)
    assert (s["tp"], s["fp"], s["fn"], s["dq"]) == (2, 0, 0, 1.0)
    assert s["sq"] == pytest.approx((0.75 + 2 / 3) / 2, abs=1e-15) and s["pq"] == pytest.approx(s["sq"], abs=1e-15)
    assert s["dice"] == pytest.approx(20 / 24, abs=1e-15)


def test_the_sq_correction_undoes_hovernets_tp_plus_1e_6(cc):
    ref = {"dq": 0.8, "sq": 3.0 / (4 + 1e-6), "pq": 0.8 * 3.0 / (4 + 1e-6)}
    fixed = cc.corrected(ref, 4)
    assert fixed["sq"] == pytest.approx(0.75, abs=1e-15) and fixed["pq"] == pytest.approx(0.6, abs=1e-15)
    assert cc.corrected(ref, 0) == ref  # no match: nothing to undo


def test_reference_side_reads_the_mat_files_in_item_order(cc, monkeypatch):
    """A stand-in compute_stats that reads the .mat files as HoVer-Net's does and returns, per image, a row of
    recognisable numbers: the comparison must map compute_stats' rows (dice, aji, dq, sq, pq, aji+) and images back
    to the right names."""
    import glob

    import scipy.io as sio

    def run_nuclei_inst_stat(pred_dir, true_dir, print_img_stats=False, ext=".mat"):
        cols = []
        for f in sorted(glob.glob(f"{pred_dir}/*{ext}")):
            base = os.path.basename(f).split(".")[0]
            t = sio.loadmat(os.path.join(true_dir, base + ".mat"))["inst_map"]
            p = sio.loadmat(f)["inst_map"]
            cols.append([t.max(), p.max(), 0.5, 0.25, 0.125, t.sum()])
        return np.array(cols, float).T.tolist()

    fake = types.SimpleNamespace(run_nuclei_inst_stat=run_nuclei_inst_stat)
    gt, pred = _maps()
    items = [(f"image{k}", gt * (k + 1), pred + k) for k in range(12)]  # 12 > 10: the file names sort numerically
    ref = cc.reference_stats(fake, items)
    assert [r["dice"] for r in ref] == [2 * (k + 1) for k in range(12)]
    assert [r["aji"] for r in ref] == [9 + k for k in range(12)]
    assert ref[3]["aji_plus"] == (8 + 2 * 4) * 4 and (ref[3]["dq"], ref[3]["sq"], ref[3]["pq"]) == (0.5, 0.25, 0.125)


def test_cached_predictions_are_reused_only_for_the_same_model_data_and_split(cc, tmp_path, monkeypatch):
    gt, pred = _maps()
    data = tmp_path / "records"
    cache = tmp_path / "p.npz"
    meta = cc._cache_meta("pretrained:x", str(data), "test")
    np.savez(cache, meta=np.array(json.dumps(meta)), image_ids=np.array(["a", "b"]), **{"gt/a": gt, "pred/a": pred,
             "gt/b": gt[::-1], "pred/b": pred[::-1]})
    items = cc.cached_predictions("pretrained:x", str(data), "test", str(cache), max_images=1)
    assert [i for i, _, _ in items] == ["a"] and np.array_equal(items[0][2], pred)
    called = []
    monkeypatch.setitem(sys.modules, "zoo.training.tracking",
                        types.SimpleNamespace(load=lambda uri: called.append(uri) or (_ for _ in ()).throw(
                            RuntimeError("would predict"))))
    with pytest.raises(RuntimeError, match="would predict"):  # another split: not the cached maps
        cc.cached_predictions("pretrained:x", str(data), "train", str(cache))
    assert called == ["pretrained:x"]


@pytest.fixture(scope="module")
def reference(cc):
    if not os.path.isfile(os.path.join(REF, "compute_stats.py")):
        pytest.skip(f"no HoVer-Net working copy at {REF} (set HOVERNET_REF; it is never committed)")
    return cc.load_reference(REF)


def test_hovernet_compute_stats_agrees_on_hand_worked_maps(cc, reference):
    compute_stats, _ = reference
    gt, pred = _maps()
    res = cc.compare([("x", gt, pred)], cc.reference_stats(compute_stats, [("x", gt, pred)]))
    ref = res["per_image"][0]["hovernet"]
    assert ref["aji"] == pytest.approx(10 / 14, abs=1e-12) and ref["dq"] == 1.0
    # its SQ is sum IoU / (TP + 1e-6): lower than the exact mean by SQ * 1e-6 / (TP + 1e-6)
    exact = (0.75 + 2 / 3) / 2
    assert ref["sq"] == pytest.approx(exact * 2 / (2 + 1e-6), abs=1e-15) and ref["sq"] < exact
    assert max(res["max_abs_diff_corrected"].values()) <= 1e-12


def test_benchmark_perturbation_matches_the_reference_on_every_case(cc, reference):
    """The benchmark's perturbed maps (merges, splits, drops, shifts, scrambled ids) on a synthetic 64 x 64 map:
    HoVer-Net's stats_utils and zoo.metrics agree to 1e-9 after the SQ correction."""
    bench = _load("instance_metrics_bench", "benchmarks/instance_metrics.py")
    _, hv = reference
    gt = np.zeros((64, 64), np.int32)
    k = 0
    for y in range(2, 60, 9):
        for x in range(2, 60, 9):
            k += 1
            gt[y:y + 7, x:x + 6 + (k % 3)] = k
    pred = bench.perturb(gt, 3)
    ids = np.unique(pred)
    assert len(ids) > 10 and (np.diff(ids) > 1).all()  # scrambled, non-consecutive ids
    G, P = hv.remap_label(gt), hv.remap_label(pred)
    (dq, sq, _), pairing = hv.get_fast_pq(G, P)
    ours = cc.our_stats(gt, pred)
    fixed = cc.corrected({"dq": dq, "sq": sq, "pq": dq * sq}, ours["tp"])
    assert ours["tp"] == len(pairing[0]) > 0
    assert abs(ours["aji"] - hv.get_fast_aji(G, P)) <= 1e-9
    assert abs(ours["aji_plus"] - hv.get_fast_aji_plus(G, P)) <= 1e-9
    assert abs(ours["dq"] - dq) <= 1e-9 and abs(ours["sq"] - fixed["sq"]) <= 1e-9
