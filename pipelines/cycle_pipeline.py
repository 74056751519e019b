"""``create_cycle_pipeline``: Bhatia's annotation cycle (Table 4.1; ``histozoo cycle``, zoo/interactive/cycle.py) as
one TFX pipeline, an unrolled static DAG with one instance id per cycle, driven by the same cycle config
(``configs/cycle/monuseg.yaml``, zoo.interactive.cycle.CycleConfig):

    SyntheticRecords (HistoRecordsGen: synthetic_data, train <- synthetic_split, eval <- the experiment's val_split)
    EvalRecords      (HistoRecordsGen: eval_data, eval <- eval_split; MoNuSeg test)
    cycle 1:  Trainer_c1 (train_config as it is, from scratch, on SyntheticRecords) -> HistoEvaluator_c1
    cycle c = 2..N:
              HistoAnnotate_c  (model: Trainer_c-1's; train_examples: SyntheticRecords at c = 2, HistoAnnotate_c-1's
                                after; batches[c - 2] of the pool) -> Examples: the input's train files + the crops
              -> Trainer_c     (train_config + train_overrides on HistoAnnotate_c's examples; base_model:
                                Trainer_c-1's model, the warm start the CLI's init_weights is)
              -> HistoEvaluator_c (EvalRecords' eval split, as the main pipeline's evaluator)

Differences from ``histozoo cycle``: cycle 1 is trained by the pipeline (the config's ``initial_model`` is not used);
nothing is pushed or registered (each Trainer's MLflow run is logged as usual); the per-cycle table comes from the
MLMD store (:func:`cycle_rows`). The TFX pipeline keeps its artifacts immutable, so each cycle's Examples hold copies
of the earlier cycles' records (HistoAnnotate's module doc).
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence, TextIO

from pipelines import configs, ingest

SYNTHETIC_ID, EVAL_ID = "SyntheticRecords", "EvalRecords"


def node_id(kind: str, cycle: int) -> str:
    """``Trainer_c2``, ``HistoAnnotate_c2``, ``HistoEvaluator_c2``: one instance id per cycle."""
    return f"{kind}_c{int(cycle)}"


def load_cycle_config(config):
    """A CycleConfig from a CycleConfig, a dict or a YAML/JSON path."""
    from zoo.interactive.cycle import CycleConfig

    if isinstance(config, CycleConfig):
        return config
    if isinstance(config, dict):
        return CycleConfig.from_dict(config)
    return CycleConfig.load(str(config))


def _local(path: str) -> str:
    """An existing local path made absolute (the steps' parameters must not depend on the working directory)."""
    return os.path.abspath(path) if "://" not in path and os.path.exists(path) else path


def _fingerprint(path: str) -> str:
    if os.path.isdir(path):
        return ingest.input_fingerprint(path)
    if os.path.isfile(path):
        st = os.stat(path)
        return f"{st.st_size}:{int(st.st_mtime)}"
    return ""


def create_cycle_pipeline(config, pipeline_root: str, metadata_path: Optional[str] = None,
                          beam_args: Optional[Sequence[str]] = None, *, pipeline_name: Optional[str] = None,
                          cycles: Optional[int] = None, module_file: Optional[str] = configs.MODULE_FILE,
                          run_fn: Optional[str] = None, thresholds: Optional[dict] = None, eval_max_images: int = 0,
                          mlflow_tracking_uri: str = "", enable_cache: bool = True, verbose: int = 2):
    """The annotation cycle's pipeline (module doc) for cycles 1..``cycles`` (default: all the config has).

    config: CycleConfig, dict or YAML/JSON path. pipeline_root / metadata_path / beam_args / module_file / run_fn /
    thresholds / eval_max_images / mlflow_tracking_uri / enable_cache / verbose: as ``create_pipeline``'s."""
    from tfx import v1 as tfx

    from pipelines.components.annotate import HistoAnnotate
    from pipelines.components.evaluator import HistoEvaluator
    from pipelines.components.records_gen import HistoRecordsGen
    from zoo.errors import ConfigError
    from zoo.interactive.cycle import base_experiment, cycle_experiment

    cfg = load_cycle_config(config)
    n = cfg.cycles if cycles is None else int(cycles)
    if not 1 <= n <= cfg.cycles:
        raise ConfigError(f"cycles {n}: the config has cycles 1..{cfg.cycles} (one per batch, plus cycle 1)")
    base = base_experiment(cfg)
    experiments = [base.replace(name=f"{base.name}-cycle1", fold=None)]
    experiments += [cycle_experiment(cfg, c, "") for c in range(2, n + 1)]
    val = cycle_experiment(cfg, 1, "").val_split  # the synthetic validation split (train_config + overrides)
    synthetic, pool, evald = _local(cfg.synthetic_data), _local(cfg.pool_data), _local(cfg.eval_data)
    interactive_model = _local(cfg.interactive_model)

    synthetic_gen = HistoRecordsGen(records=synthetic, splits={ingest.TRAIN: cfg.synthetic_split, ingest.EVAL: val},
                                    input_fingerprint=_fingerprint(synthetic)).with_id(SYNTHETIC_ID)
    eval_gen = HistoRecordsGen(records=evald, splits={ingest.EVAL: cfg.eval_split},
                               input_fingerprint=_fingerprint(evald)).with_id(EVAL_ID)
    components = [synthetic_gen, eval_gen]
    examples, model = synthetic_gen.outputs["examples"], None
    for c, exp in enumerate(experiments, 1):
        if c > 1:
            annotate = HistoAnnotate(
                model=model, train_examples=examples, pool_data=pool, pool_split=cfg.pool_split,
                image_ids=cfg.batches[c - 2], interactive_model=interactive_model, cycle=c, crop=cfg.crop,
                clicks_per_image=cfg.clicks_per_image, clicks_per_nucleus=cfg.clicks_per_nucleus,
                accept_iou=cfg.accept_iou, fbrs=cfg.fbrs,
                input_fingerprint=f"{_fingerprint(pool)}:{_fingerprint(interactive_model)}",
            ).with_id(node_id("HistoAnnotate", c))
            components.append(annotate)
            examples = annotate.outputs["examples"]
        trainer = tfx.components.Trainer(
            module_file=module_file if not run_fn else None, run_fn=run_fn or None, examples=examples,
            base_model=model,
            train_args=tfx.proto.TrainArgs(splits=[ingest.TRAIN], num_steps=exp.epochs * exp.steps_per_epoch),
            eval_args=tfx.proto.EvalArgs(splits=[ingest.EVAL]),
            custom_config={"experiment": exp.to_dict(), "mlflow_tracking_uri": mlflow_tracking_uri,
                           "verbose": verbose}).with_id(node_id("Trainer", c))
        model = trainer.outputs["model"]
        evaluator = HistoEvaluator(
            examples=eval_gen.outputs["examples"], model=model, experiment=exp.to_dict(),
            thresholds=configs.EVAL_THRESHOLDS if thresholds is None else thresholds,
            max_images=eval_max_images).with_id(node_id("HistoEvaluator", c))
        components += [trainer, evaluator]

    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name or configs.pipeline_name(f"{base.name}-cycles"), pipeline_root=pipeline_root,
        components=components, enable_cache=enable_cache,
        metadata_connection_config=(tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path)
                                    if metadata_path else None),
        beam_pipeline_args=list(configs.BEAM_PIPELINE_ARGS if beam_args is None else beam_args))


def run_cycle_local(config, name: str, home: Optional[str] = None, cycles: Optional[int] = None,
                    beam_args: Optional[Sequence[str]] = None, quiet: bool = False,
                    progress: Optional[TextIO] = None, **kwargs) -> dict:
    """Create and run the cycle pipeline with LocalDagRunner (as ``local_runner.run_local``: the same layout under
    ``home``, the same quiet mode) -> ``{"pipeline_name", "paths", "wall_s", "log", "steps", "rows"}``, rows
    :func:`cycle_rows`. kwargs go to ``create_cycle_pipeline``."""
    from pipelines.local_runner import execute, summarize

    paths = configs.local_paths(name, home)
    os.makedirs(os.path.dirname(paths.metadata_path), exist_ok=True)
    pipeline = create_cycle_pipeline(config, paths.pipeline_root, paths.metadata_path, beam_args, pipeline_name=name,
                                     cycles=cycles, **kwargs)
    result = execute(pipeline, name, paths, quiet, progress)
    result.update(steps=summarize(paths.metadata_path, name), rows=cycle_rows(paths.metadata_path, name))
    return result


def run_outputs(metadata_path: str, pipeline_name: str, run: int = -1) -> dict:
    """``{(node, output key): artifact}`` of one pipeline run in the MLMD store (run=-1: the latest), cached steps
    included (their artifacts are the earlier run's)."""
    from pipelines.local_runner import _OUTPUT_EVENT, _run_executions, _store

    if not os.path.isfile(metadata_path):
        return {}
    store = _store(metadata_path)
    execs = _run_executions(store, pipeline_name, run)
    node_of = {e.id: node for node, e in execs}
    events = [ev for ev in (store.get_events_by_execution_ids(list(node_of)) if node_of else [])
              if ev.type == _OUTPUT_EVENT and ev.path.steps]
    by_id = {a.id: a for a in store.get_artifacts_by_id(sorted({ev.artifact_id for ev in events}))}
    return {(node_of[ev.execution_id], ev.path.steps[0].key): by_id[ev.artifact_id] for ev in events
            if ev.artifact_id in by_id}


def cycle_rows(metadata_path: str, pipeline_name: str, run: int = -1) -> list[dict]:
    """The per-cycle table of one run, the columns of ``histozoo cycle``'s (zoo.interactive.cycle.COLUMNS; run_dir
    is the Trainer's Model artifact): each cycle whose HistoEvaluator finished, with its annotation's clicks and
    images (cumulative images, as the CLI's table)."""
    outputs = run_outputs(metadata_path, pipeline_name, run)
    rows, c = [], 1
    while (node_id("HistoEvaluator", c), "evaluation") in outputs:
        with open(os.path.join(outputs[(node_id("HistoEvaluator", c), "evaluation")].uri, "metrics.json")) as fh:
            ev = json.load(fh)["current"]
        ann = outputs.get((node_id("HistoAnnotate", c), "examples"))
        props = {k: v.int_value for k, v in ann.custom_properties.items()} if ann is not None else {}
        clicks, images = int(props.get("clicks", 0)), int(props.get("images_annotated", 0))
        model = outputs.get((node_id("Trainer", c), "model"))
        m = ev["mean"]
        rows.append({"cycle": c, "images_annotated": images + (rows[-1]["images_annotated"] if rows else 0),
                     "clicks": clicks, "clicks_total": clicks + sum(r["clicks"] for r in rows),
                     "clicks_per_image": props.get("clicks_per_image"),
                     "dice": m["pixel_dice"], "aji": m["aji"], "aji_pooled": m.get("aji_pooled"), "pq": m["pq"],
                     "eval_images": ev["images"], "run_dir": model.uri if model is not None else ""})
        c += 1
    return rows
