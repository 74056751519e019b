"""The Evaluator's baseline: the latest blessed model, resolved so that a re-run with nothing changed is a cache hit.

TFX's LatestBlessedModelStrategy hands the Evaluator a different baseline on the second run (the first run's own
model, blessed meanwhile), so the Evaluator, the Pusher (a new timestamped version) and the registry step would all
run again. ``StableBaselineStrategy`` resolves, for the candidate model (the Trainer's output):

- if the candidate was already evaluated: the baseline of its first evaluation (recorded on that ModelBlessing
  as ``baseline_model_id``; none when it had none) -- same inputs, so the Evaluator is a cache hit;
- otherwise: the latest blessed model other than the candidate (LatestBlessedModelStrategy's rule).

Kubeflow V2 compiles only TFX's built-in resolver policies, so the compiled pipelines use
LatestBlessedModelStrategy (pipelines/pipeline.py chooses).
"""

from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.dsl.components.common import resolver

MODEL, BLESSING, CANDIDATE = "model", "model_blessing", "candidate"


class StableBaselineStrategy(resolver.ResolverStrategy):
    """See the module docstring. Channels: ``model`` (all Models), ``model_blessing`` (all ModelBlessings),
    ``candidate`` (the Trainer's output)."""

    def resolve_artifacts(self, store, input_dict: dict[str, list[types.Artifact]]
                          ) -> Optional[dict[str, list[types.Artifact]]]:
        models = list(input_dict.get(MODEL) or [])
        blessings = list(input_dict.get(BLESSING) or [])
        candidates = list(input_dict.get(CANDIDATE) or [])
        cand_ids = {m.id for m in candidates}
        by_id = {m.id: m for m in models}
        prior = sorted((b for b in blessings if b.get_int_custom_property("current_model_id") in cand_ids),
                       key=lambda b: b.id)
        blessed = {b.get_int_custom_property("current_model_id"): b for b in sorted(blessings, key=lambda b: b.id)
                   if b.get_int_custom_property("blessed") == 1}
        if prior:
            bid = prior[0].get_int_custom_property("baseline_model_id")
            chosen = by_id.get(bid) if bid else None
        else:
            chosen = max((m for m in models if m.id in blessed and m.id not in cand_ids), key=lambda m: m.id,
                         default=None)
        return {MODEL: [chosen] if chosen is not None else [],
                BLESSING: [blessed[chosen.id]] if chosen is not None and chosen.id in blessed else [],
                CANDIDATE: candidates}
