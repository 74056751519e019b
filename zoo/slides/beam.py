"""Batch inference over many slides as an Apache Beam pipeline: ``run_batch(slides, model_uri, out_root)`` and
``histozoo slide batch --slides GLOB --model URI --out DIR`` (docs/scale.md).

Each slide is one element: ``beam.Create(slides) | Reshuffle | ParDo(PredictSlideFn)``. The DoFn loads the model
once per worker in ``setup`` (``load_model``: a run folder, .keras file or MLflow URI through
``zoo.training.tracking.load``, or an exported SavedModel folder through :class:`SavedModelForward`) and calls
``zoo.slides.predict_slide`` for each slide, writing ``<out_root>/<slide name>/`` (GeoJSON, CSV / Parquet, overlay,
summary.json). The same code runs on every Beam runner: DirectRunner here (``multi_processing`` runs the slides in
separate worker processes), Dataflow / Flink / Spark with their pipeline options; on a cluster the slides and
``out_root`` must be paths every worker reads and writes (a shared or object-store FUSE mount).

Idempotent: a slide whose folder holds a complete ``summary.json`` (it parses, names this slide, and every file it
lists exists) is skipped, by the driver before the pipeline starts (a rerun over finished slides starts no Beam
pipeline and loads no model) and again by the DoFn (a slide finished meanwhile, or a runner's retry). A slide that was
interrupted resumes from its written tiles (``predict_slide``'s own resume). A slide that fails (an unreadable or
truncated file, a bad option) is recorded in one line in ``<its folder>/error.txt`` and the others go on (a dead
letter, not a failed job: Beam runners would otherwise retry the bundle and then fail every slide); ``batch.json``
under ``out_root`` lists every slide's status.

Apache Beam is installed with TFX (constraints/tfx.txt pins apache-beam 2.77.0; it needs protobuf < 7, which the host
environment's tensorflow-serving-api 2.21 does not allow): run through ``scripts/tfx_env.sh run`` or the
docker/tfx image where the host environment lacks it.
"""

from __future__ import annotations

import glob
import json
import os
import threading
from typing import Optional, Sequence

from zoo import atomic
from zoo.errors import ConfigError, DataError, ZooError

SUMMARY = "summary.json"     # zoo.slides.outputs.FILES["summary"]
ERROR_FILE = "error.txt"
REPORT = "batch.json"
SLIDE_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".png",
                  ".jpg", ".jpeg")
SAVED_MODEL_INPUT = ("predict_images", "images")  # serving.export.SIGNATURES: uint8 images -> probabilities


def require_beam() -> None:
    """A one-line ConfigError when apache_beam is not importable here, saying where it is."""
    import importlib.util

    if importlib.util.find_spec("apache_beam") is None:
        raise ConfigError("apache-beam is not installed in this environment (it comes with TFX: constraints/tfx.txt);"
                          " run `sudo scripts/tfx_env.sh run histozoo slide batch ...` or use the docker/tfx image "
                          "(docs/scale.md)")


# ------------------------------------------------------------------------------------------------ slides and outputs
def list_slides(patterns: Sequence[str]) -> list[str]:
    """The absolute, sorted, de-duplicated slide paths that ``patterns`` (files, globs, or text files ending in .txt
    listing one path or glob a line) name; a pattern that matches nothing is a one-line DataError."""
    if isinstance(patterns, str):
        patterns = [patterns]
    found: list[str] = []
    for pat in patterns:
        if pat.endswith(".txt") and os.path.isfile(pat):
            with open(pat) as fh:
                lines = [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
            base = os.path.dirname(os.path.abspath(pat))
            found += list_slides([ln if os.path.isabs(ln) else os.path.join(base, ln) for ln in lines])
            continue
        hits = sorted(glob.glob(os.path.expanduser(pat), recursive=True)) if glob.has_magic(pat) else \
            ([pat] if os.path.exists(pat) else [])
        hits = [h for h in hits if os.path.isfile(h)]
        if not hits:
            raise DataError(pat, "no slide files match")
        found += [os.path.abspath(h) for h in hits]
    return sorted(set(found))


def slide_name(path: str) -> str:
    """The output folder name of a slide: its file name without the slide suffix (``a/b/S1.ome.tif`` -> ``S1``)."""
    base = os.path.basename(path)
    for suf in SLIDE_SUFFIXES:
        if base.lower().endswith(suf) and len(base) > len(suf):
            return base[:-len(suf)]
    return os.path.splitext(base)[0] or base


def output_dirs(slides: Sequence[str], out_root: str) -> dict:
    """{slide: its output folder}; two slides with the same name are a one-line ConfigError (rename one)."""
    dirs: dict = {}
    by_name: dict = {}
    for s in slides:
        name = slide_name(s)
        if name in by_name:
            raise ConfigError(f"{s}: has the output name {name!r} of {by_name[name]} too (both would write "
                              f"{os.path.join(out_root, name)}); rename one, or batch them into different --out")
        by_name[name] = s
        dirs[s] = os.path.join(out_root, name)
    return dirs


def completed(slide: str, out_dir: str) -> Optional[dict]:
    """The summary of ``slide``'s finished output in ``out_dir``, or None when it is not complete (no summary, an
    unreadable one, or a file it lists missing). A summary of another slide is a one-line ConfigError."""
    path = os.path.join(out_dir, SUMMARY)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as fh:
            summary = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or "files" not in summary:
        return None
    if os.path.abspath(summary.get("slide", "")) != os.path.abspath(slide):
        raise ConfigError(f"{out_dir}: holds the output of another slide ({summary.get('slide')}), not {slide}; use "
                          "another --out")
    if not all(os.path.isfile(os.path.join(out_dir, f)) for f in summary["files"].values()):
        return None
    return summary


# ------------------------------------------------------------------------------------------------ models
class SavedModelForward:
    """An exported SavedModel (serving.export: ``<dir>/saved_model.pb`` and ``assets/histozoo.json``) as the
    inference function's probability function, in process: uint8 [B, H, W, 3] at the model's resolution -> float32
    [B, H, W, C] through its ``predict_images`` signature, which applies the spec's stain normalisation and padding
    in-graph as ``zoo.inference`` does (the served == evaluated contract)."""

    is_forward = True

    def __init__(self, path: str):
        import tensorflow as tf

        self.path = path
        try:
            module = tf.saved_model.load(path)
        except Exception as e:  # noqa: BLE001 — a corrupt or foreign folder: say which and why, in one line
            raise DataError(path, f"cannot load the SavedModel ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
        sig, self.key = SAVED_MODEL_INPUT
        if sig not in module.signatures:
            raise DataError(path, f"no {sig!r} signature (export it with `histozoo export`)")
        self.module, self.fn = module, module.signatures[sig]

    def __call__(self, images):
        import numpy as np
        import tensorflow as tf

        out = self.fn(**{self.key: tf.constant(np.asarray(images, np.uint8))})
        return np.asarray(out["probabilities"], np.float32)


def saved_model_dir(uri: str) -> Optional[str]:
    """``uri`` when it is a SavedModel folder; its highest integer version folder when it is an export base folder
    (``histozoo export --out BASE``); else None."""
    if not os.path.isdir(uri):
        return None
    if os.path.isfile(os.path.join(uri, "saved_model.pb")):
        return uri
    versions = sorted(int(v) for v in os.listdir(uri)
                      if v.isdigit() and os.path.isfile(os.path.join(uri, v, "saved_model.pb")))
    return os.path.join(uri, str(versions[-1])) if versions else None


def load_model(uri: str):
    """(model or probability function, InferenceSpec) for ``uri``: an exported SavedModel folder (its spec from
    ``assets/histozoo.json``), else whatever ``zoo.training.tracking.load`` reads (run folder, .keras, MLflow)."""
    sm = saved_model_dir(uri)
    if sm is not None:
        from zoo.inference import InferenceSpec

        meta = os.path.join(sm, "assets", "histozoo.json")  # serving.export.METADATA_ASSET
        if not os.path.isfile(meta):
            raise DataError(sm, "a SavedModel without assets/histozoo.json (not a histozoo export: no spec)")
        spec = InferenceSpec.from_dict(atomic.read_json(meta, "SavedModel metadata").get("spec") or {}, meta)
        return SavedModelForward(sm), spec
    from zoo.training.tracking import load

    loaded = load(uri)
    return loaded.model, loaded.spec


# ------------------------------------------------------------------------------------------------ the pipeline
def _dofn_class():
    import apache_beam as beam

    class PredictSlideFn(beam.DoFn):
        """One slide -> its output folder, via zoo.slides.predict_slide; the model loaded once per worker."""

        def __init__(self, model_uri: str, dirs: dict, options: dict):
            super().__init__()
            self.model_uri, self.dirs, self.options = model_uri, dirs, options
            self.model = self.spec = None

        def setup(self):
            self.model, self.spec = load_model(self.model_uri)

        def process(self, slide):
            from zoo.slides import predict_slide

            out = self.dirs[slide]
            if completed(slide, out) is not None:
                yield slide, "skipped"
                return
            err = os.path.join(out, ERROR_FILE)
            try:
                predict_slide(slide, self.model, self.spec, out, progress=False, **self.options)
            except Exception as e:  # noqa: BLE001 — one bad slide must not stop thousands: record it, go on
                msg = str(e) if isinstance(e, ZooError) else f"{slide}: {type(e).__name__}: {e}"
                os.makedirs(out, exist_ok=True)
                atomic.write_text(err, " ".join(msg.split()) + "\n")
                yield slide, "failed"
                return
            if os.path.exists(err):
                os.remove(err)
            yield slide, "done"

    return PredictSlideFn


def beam_options(beam_args: Optional[Sequence[str]] = None, workers: int = 0,
                 running_mode: str = "multi_processing"):
    """Beam PipelineOptions: ``beam_args`` when given (``--runner=DataflowRunner --project=... --region=...``,
    ``--runner=FlinkRunner --flink_master=...``, ``--runner=SparkRunner ...``), else DirectRunner in
    ``running_mode`` with ``workers`` processes (0 = one per CPU)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(beam_args or [])
    runner = [a.split("=", 1)[-1] for a in args if a.startswith("--runner=")]
    direct = not runner or runner[-1] in ("DirectRunner", "direct")
    if direct and not any(a.startswith(("--direct_running_mode", "--direct_num_workers")) for a in args):
        if running_mode not in ("in_memory", "multi_threading", "multi_processing"):
            raise ConfigError(f"--direct-running-mode must be in_memory, multi_threading or multi_processing, got "
                              f"{running_mode!r}")
        if workers < 0:
            raise ConfigError(f"--direct-num-workers must be >= 0 (0 = one per CPU), got {workers}")
        args = ([] if runner else ["--runner=DirectRunner"]) + [
            f"--direct_running_mode={running_mode}", f"--direct_num_workers={int(workers) or os.cpu_count() or 1}"
        ] + args
    return PipelineOptions(args)


def run_batch(slides: Sequence[str], model_uri: str, out_root: str, *, beam_args: Optional[Sequence[str]] = None,
              workers: int = 0, running_mode: str = "multi_processing", mpp: Optional[float] = None,
              tile_size: Optional[int] = None, overlap: Optional[int] = None, batch: int = 4,
              progress: bool = False) -> dict:
    """Predict every slide ``slides`` names (files, globs, .txt lists) with the model at ``model_uri`` into
    ``out_root/<slide name>/`` through a Beam pipeline (module docstring); returns the report also written to
    ``out_root/batch.json``: {"slides": [{slide, out, status (done | skipped | failed), nuclei, error}], "counts",
    "ran"} where ``ran`` is the number of slides sent to the pipeline (0 on a rerun over finished slides)."""
    paths = list_slides(slides)
    out_root = atomic.check_output_dir(out_root, "--out")
    dirs = output_dirs(paths, out_root)
    before = {s: completed(s, d) for s, d in dirs.items()}
    todo = [s for s in paths if before[s] is None]
    if todo:
        require_beam()
        os.makedirs(out_root, exist_ok=True)
        import apache_beam as beam

        opts = {"mpp": mpp, "tile_size": tile_size, "overlap": overlap, "batch": batch}
        options = beam_options(beam_args, workers, running_mode)
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(todo, dirs, stop), daemon=True) if progress else None
        if watcher:
            watcher.start()
        try:
            with beam.Pipeline(options=options) as p:
                _ = (p | "Slides" >> beam.Create(todo) | "Spread" >> beam.Reshuffle()
                     | "Predict" >> beam.ParDo(_dofn_class()(model_uri, {s: dirs[s] for s in todo}, opts)))
        finally:
            stop.set()
            if watcher:
                watcher.join()
    rows = []
    for s in paths:
        d = dirs[s]
        summary = completed(s, d)
        err_path = os.path.join(d, ERROR_FILE)
        if before[s] is not None:
            status = "skipped"
        elif summary is not None:
            status = "done"
        else:
            status = "failed"
        error = None
        if status == "failed":
            error = open(err_path).read().strip() if os.path.isfile(err_path) else "no output (the worker stopped)"
        rows.append({"slide": s, "out": d, "status": status, "nuclei": summary["nuclei"] if summary else None,
                     "error": error})
    counts = {k: sum(r["status"] == k for r in rows) for k in ("done", "skipped", "failed")}
    report = {"model": model_uri, "ran": len(todo), "counts": counts, "slides": rows}
    if todo:
        atomic.write_json(os.path.join(out_root, REPORT), report, indent=2)
    return report


def _watch(todo, dirs, stop) -> None:
    """A progress bar over the slides being predicted (a finished slide has a complete summary)."""
    from tqdm import tqdm

    with tqdm(total=len(todo), unit="slide", desc="slides", dynamic_ncols=True) as bar:
        seen: set = set()
        while True:
            finished = stop.wait(1.0)
            for s in todo:
                if s not in seen and (os.path.isfile(os.path.join(dirs[s], ERROR_FILE)) or
                                      os.path.isfile(os.path.join(dirs[s], SUMMARY))):
                    seen.add(s)
                    bar.update(1)
            if finished:
                return
