"""``histozoo export``: a versioned SavedModel for TF Serving (serving.export, imported inside the command).

The model's InferenceSpec (resolution, classes, stain, post-processing) comes with the model (``zoo.training.tracking
.load``); a flag overrides one field of it and says so in one line."""

from __future__ import annotations

import os

from histozoo.commands import check_out, parse_key_values


def spec_overrides(args) -> dict:
    """{spec field: value} from the --mpp / --class-names / --postprocess / --stain flags (None = keep)."""
    from zoo.postprocess.config import PostprocessConfig

    out = {}
    if getattr(args, "mpp", None) is not None:
        out["mpp"] = args.mpp
    if getattr(args, "class_names", None):
        out["class_names"] = tuple(c.strip() for c in args.class_names.split(","))
    if getattr(args, "postprocess", None):
        out["postprocess"] = PostprocessConfig.from_dict(parse_key_values(args.postprocess))
    if getattr(args, "stain", None):
        import zoo.stain  # noqa: F401 — registers every method
        from zoo.stain.base import load

        out["stain"] = load(args.stain).to_json()
    return out


def _cmd_export(args) -> int:
    check_out(args.out)
    from serving.export import export
    from zoo.training.tracking import load

    loaded = load(args.model, default_spec=False)
    if hasattr(loaded.model, "sample_grid"):  # a GAN model (zoo.models.gan): serving.export writes its Q classifier
        path = export(loaded.model, args.out, args.version, metadata={"source": args.model})
        print(f"exported {args.model} -> {os.path.abspath(path)} (Q classifier: crops -> cluster probabilities, "
              f"cluster, embedding)")
        return 0
    if loaded.spec is None:  # saved without a spec: load again for the default one (and its one-line note)
        loaded = load(args.model)
    spec = loaded.spec.override(spec_overrides(args))
    path = export(loaded.model, args.out, args.version, spec=spec, max_iters=args.max_iters,
                  metadata={"source": args.model})
    where = "in the graph" if spec.postprocess.in_graph else "by the client (zoo.inference.predict)"
    print(f"exported {args.model} -> {os.path.abspath(path)} (post-processing {spec.postprocess.method}, {where})")
    return 0


def add_spec_flags(p) -> None:
    """The flags that override a field of the model's InferenceSpec (export, evaluate)."""
    p.add_argument("--postprocess", action="append", metavar="KEY=VALUE",
                   help="override the spec's post-processing, e.g. method=dynamics_watershed, lam=7 (repeatable)")
    p.add_argument("--mpp", type=float, default=None, help="override the microns per pixel the model works at")
    p.add_argument("--class-names", default=None, help="override the nucleus type names (comma-separated)")


def add(sub) -> None:
    p = sub.add_parser("export", help="export a model as a versioned SavedModel for TF Serving (OUT/<version>/)")
    p.add_argument("model", metavar="MODEL", help="a .keras file, a run folder, a run id, or an MLflow URI "
                                                  "(models:/NAME@ALIAS, runs:/ID/model)")
    p.add_argument("--out", required=True, help="model base path; the version folder is created inside it")
    p.add_argument("--version", type=int, default=None, help="version number (default: one more than the largest)")
    p.add_argument("--max-iters", type=int, default=1024, help="bound on in-graph label-propagation iterations")
    p.add_argument("--stain", default=None, help="override the spec's stain normalisation with a fitted normalizer "
                                                 "JSON (zoo.stain), applied in the graph")
    add_spec_flags(p)
    p.set_defaults(func=_cmd_export)
