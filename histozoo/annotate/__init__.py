"""``histozoo annotate``: a local browser annotation tool (issue 23, Bhatia 2021 ch. 4's annotation step).

A small HTTP server (``server.py``, stdlib ``ThreadingHTTPServer``, loopback by default) serves one static page
(``static/``: plain HTML + JS, no build step, nothing fetched from the network) over a folder of images. The page
sends clicks; the server runs the interactive model (``zoo.interactive``: image + clicks -> nucleus mask), keeps
each image's working state (``workspace.py``: accepted instances, pending clicks and mask, undo log, the automatic
model's proposals from ``zoo.inference.predict``), autosaves it atomically on every change, and saves an image as a
16-bit instance PNG + QuPath GeoJSON (``zoo.data.geojson``). ``export.py`` turns the saved set into training
records of the one schema (``zoo.data.build.DatasetWriter``), which ``histozoo train --data`` reads.

Nothing here is imported by ``zoo``; TensorFlow is imported only when a model is loaded or records are written.
"""

from histozoo.annotate.workspace import Conflict, Forbidden, NotFound, BadRequest, Workspace

__all__ = ["Workspace", "Conflict", "Forbidden", "NotFound", "BadRequest"]
