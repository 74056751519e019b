"""The annotation tool's HTTP server: the static page and a small JSON API over a :class:`Workspace`.

stdlib ``http.server.ThreadingHTTPServer`` (one thread per connection), bound to 127.0.0.1 unless told otherwise.
Every request is answered; a refused one gets a JSON ``{"error": ...}`` with its status (400 bad request, 403 outside
the image folder, 404 unknown, 409 stale page, 411 / 413 / 415 malformed body, 500 a fault in the server, which is
logged), and the server keeps serving. POST bodies are JSON objects of at most 64 KiB with
``Content-Type: application/json`` (a plain cross-site form cannot send that), and on a loopback bind the ``Host``
header must name the loopback address (a DNS-rebinding page gets 403).

API (``name`` = an image's file name, ``version`` = the state version the page shows)::

    GET  /, /app.js, /style.css          the page
    GET  /api/images                     [{name, saved, instances}], models
    GET  /api/state?name=                the image's state (version, instances, clicks, pending, proposals, ...)
    GET  /api/image?name=                the image as PNG
    GET  /api/overlay?name=              RGBA PNG: accepted nuclei, pending mask, proposals
    POST /api/click    {name, version, y, x, positive, fbrs}
    POST /api/accept | /api/undo | /api/clear | /api/propose | /api/save    {name, version}
    POST /api/proposal {name, version, action: next | prev | accept | accept_all}
    POST /api/export   {}                the saved annotations -> training records in <out>/records
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from histozoo.annotate.workspace import AnnotateError, BadRequest, Forbidden, NotFound, Workspace

MAX_BODY = 64 * 1024
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _static(file: str) -> bytes:
    return resources.files("histozoo.annotate").joinpath("static", file).read_bytes()


def _post_routes(ws: Workspace) -> dict:
    def n(b):
        return b.get("name"), b.get("version")

    return {
        "/api/click": lambda b: ws.click(*n(b), b.get("y"), b.get("x"), b.get("positive", True), b.get("fbrs", False)),
        "/api/accept": lambda b: ws.accept(*n(b)),
        "/api/undo": lambda b: ws.undo(*n(b), fbrs=b.get("fbrs", False)),
        "/api/clear": lambda b: ws.clear(*n(b)),
        "/api/propose": lambda b: ws.propose(*n(b)),
        "/api/proposal": lambda b: ws.proposal(*n(b), b.get("action")),
        "/api/save": lambda b: ws.save(*n(b)),
        "/api/export": lambda b: _export(ws),
    }


def _export(ws: Workspace) -> dict:
    from histozoo.annotate.export import export_records

    s = export_records(ws, os.path.join(ws.out, "records"))
    sp = s["splits"].get("train", {"images": 0, "nuclei": 0})
    return {"records": os.path.join(ws.out, "records"), "images": sp["images"], "nuclei": sp["nuclei"],
            "message": f"exported {sp['images']} image(s), {sp['nuclei']} nuclei to {os.path.join(ws.out, 'records')}"}


class Handler(BaseHTTPRequestHandler):
    server_version = "histozoo-annotate/1"
    timeout = 60  # a client that stops sending mid-request frees its thread

    # ----------------------------------------------------------------------------------------------- replies
    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def log_message(self, fmt, *args) -> None:  # quiet: errors are logged by _dispatch
        if getattr(self.server, "verbose", False):
            super().log_message(fmt, *args)

    # ------------------------------------------------------------------------------------------------ input
    def _body(self) -> dict:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        length = self.headers.get("Content-Length")
        if length is None:
            raise _HTTP(411, "a POST needs a Content-Length")
        try:
            size = int(length)
        except ValueError:
            raise _HTTP(400, f"bad Content-Length {length!r}") from None
        if size < 0 or size > MAX_BODY:
            self.close_connection = True
            raise _HTTP(413, f"request body of {size} bytes refused (at most {MAX_BODY})")
        raw = self.rfile.read(size)
        if ctype != "application/json":
            raise _HTTP(415, "POST bodies must be JSON (Content-Type: application/json)")
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"the request body is not JSON ({e})") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    def _check_host(self) -> None:
        if self.server.server_address[0] not in ("127.0.0.1", "::1"):
            return
        h = self.headers.get("Host") or ""
        host = h[1:h.find("]")] if h.startswith("[") else (h.rsplit(":", 1)[0] if h.count(":") == 1 else h)
        if host not in LOOPBACK:
            raise Forbidden(f"Host {self.headers.get('Host')!r} refused: this server answers only to the loopback "
                            "address")

    # --------------------------------------------------------------------------------------------- dispatch
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        ws: Workspace = self.server.workspace
        try:
            self._check_host()
            url = urlsplit(self.path)
            path = url.path
            if method == "GET":
                q = {k: v[-1] for k, v in parse_qs(url.query).items()}
                if path in STATIC:
                    file, ctype = STATIC[path]
                    return self._send(200, _static(file), ctype)
                if path == "/api/images":
                    return self._json(200, {"images": ws.listing(), "folder": ws.root, "out": ws.out,
                                            "model": ws.model_uri, "interactive": ws.segmenter is not None,
                                            "auto_model": ws.auto_uri if ws.auto is not None else None})
                if path == "/api/state":
                    return self._json(200, ws.view(q.get("name")))
                if path == "/api/image":
                    return self._send(200, ws.image_png(q.get("name")), "image/png")
                if path == "/api/overlay":
                    return self._send(200, ws.overlay_png(q.get("name")), "image/png")
                raise NotFound(f"no such page {path!r}")
            body = self._body()
            route = _post_routes(ws).get(path)
            if route is None:
                raise NotFound(f"no such action {path!r}")
            return self._json(200, route(body))
        except _HTTP as e:
            self._json(e.status, {"error": str(e)})
        except AnnotateError as e:
            self._json(e.status, {"error": str(e)})
        except Exception as e:  # noqa: BLE001 — answer, log, keep serving
            from zoo.errors import ZooError

            if isinstance(e, ZooError):  # a user's file problem (unreadable image, ...)
                return self._json(400, {"error": str(e)})
            print(f"histozoo annotate: {method} {self.path}: {type(e).__name__}: {e}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            try:
                self._json(500, {"error": f"internal error ({type(e).__name__}: {e}); the server keeps running"})
            except OSError:
                pass


class _HTTP(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class AnnotateServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, workspace: Workspace, host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        self.workspace, self.verbose = workspace, verbose
        workspace.acquire()  # one server per output folder
        try:
            super().__init__((host, port), Handler)
        except BaseException:
            workspace.release()
            raise

    def server_close(self) -> None:
        super().server_close()
        self.workspace.release()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def start(self) -> threading.Thread:
        """Serve in a daemon thread (tests, notebooks); ``shutdown()`` then ``server_close()`` stops it."""
        t = threading.Thread(target=self.serve_forever, name="histozoo-annotate", daemon=True)
        t.start()
        return t
