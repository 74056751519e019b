"""histozoo's library: data, metrics, stain, post-processing, models, losses, training, evaluation.

Nothing in ``zoo`` imports ``pipelines``, ``serving`` or ``histozoo`` (the CLI); see DESIGN.md.
"""

__version__ = "0.1.0"
