"""Interactive (click-conditioned) nuclei segmentation with f-BRS (Bhatia, "Ground-truth-free nuclei segmentation",
chapter 3.2 / 4; Sofiiuk et al., "f-BRS: Rethinking Backpropagating Refinement for Interactive Segmentation", CVPR
2020). The public API the annotation tool (``histozoo annotate``) and the evaluation script code against:

    from zoo import interactive
    seg = interactive.load("runs/interactive/model.keras")     # or a run id, runs:/..., models:/..., a built model
    mask = seg.segment(image, [(120, 88, True)])                # one positive click on a nucleus at row 120, col 88
    mask = seg.segment(image, [(120, 88, True), (131, 97, False)], prev_mask=mask, fbrs=True)
    seg = interactive.tiny(seed=0)                              # random-initialised, tiny: for tests only

``load(uri) -> Segmenter``
    ``uri``: anything ``zoo.training.tracking.load`` accepts (a ``.keras`` file, a training run folder, an MLflow run
    id, ``runs:/<id>/model``, ``models:/<name>/<version>``, ``models:/<name>@alias``), or an already built
    ``zoo.models.interactive.InteractiveNet`` (in memory). A model that is not a click-conditioned network raises
    ``zoo.errors.ConfigError`` naming the uri.

``Segmenter.segment(image, clicks, prev_mask=None, fbrs=False) -> np.ndarray``
    ``image``: uint8 ``H x W x 3`` RGB, at the model's working resolution (the caller resamples; ``seg.mpp`` says
    which, 0 = unknown). ``clicks``: a non-empty list of ``(y, x, positive)`` tuples in the order the user made them,
    ``y, x`` integer pixel coordinates inside the image (row, column), ``positive`` True for a click on the object,
    False for a click on background. ``prev_mask``: the mask returned for the previous click of the same object (bool
    ``H x W``), or None for the first click; it is the network's feedback input and widens the zoom-in crop.
    ``fbrs``: run f-BRS-B (optimise a channel-wise scale and bias on the backbone features with L-BFGS so that the
    clicked pixels are classified as clicked) before the final prediction.
    Returns a bool ``H x W`` mask of ONE object (the object the positive clicks mark), the same size as ``image``;
    pixels outside the zoom-in crop are False. The zoom-in crop (the bounding box of the clicks and of
    ``prev_mask``, widened by ``seg.expand`` and at least ``seg.crop_size`` pixels square, clipped to the image) is
    handled inside; the caller always passes and gets whole images. Deterministic: the same arguments give the same
    mask. Bad arguments (wrong dtype / shape, a click outside the image, no clicks, a prev_mask of another shape)
    raise ``zoo.errors.ConfigError`` with a one-line message.

``Segmenter.probabilities(...)``: the same arguments, the float32 ``H x W`` object probability (0 outside the crop).

``tiny(seed=0) -> Segmenter``
    A Segmenter around a tiny random-initialised InteractiveNet (a few thousand weights, builds in about a second);
    its masks are meaningless but obey the whole contract above. For tests of code built on this API.

The network (zoo.models.interactive, registered "interactive_hrnet"), the click maps both training and inference use
(zoo.interactive.maps), f-BRS (zoo.interactive.fbrs) and the click simulation / NoC metrics (zoo.interactive.simulate)
are documented in their own modules.
"""

from __future__ import annotations

from zoo.interactive.segmenter import Segmenter, load, tiny

__all__ = ["Segmenter", "load", "tiny"]
