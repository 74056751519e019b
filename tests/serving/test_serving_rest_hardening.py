"""The REST door under malformed requests (issue 16): every bad body answers 4xx with ``{"error": "<one line>"}``
(never a 500 with a Python error), no request hangs a thread, the thread pool is bounded, and a valid request
succeeds after each bad one. Raw http.client / sockets, so the tests send exactly the bytes a careless or hostile
client would."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import numpy as np
import pytest

from serving.client import RestClient

PREDICT = "/v1/models/binary:predict"


def _post(port: int, body, *, path: str = PREDICT, headers: dict | None = None, timeout: float = 10.0):
    """POST ``body`` (bytes, or JSON-encoded) -> (status, decoded JSON answer)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def _raw(port: int, head: bytes, *, timeout: float = 5.0) -> tuple[int, dict]:
    """Send raw request bytes (no body unless in ``head``), keep the socket open, read one answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        return _read_answer(s)


def _read_answer(s: socket.socket) -> tuple[int, dict]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    n = next(int(ln.split(":", 1)[1]) for ln in lines[1:] if ln.lower().startswith("content-length"))
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, json.loads(rest[:n])


def _valid_ok(port: int) -> None:
    rest = RestClient(f"127.0.0.1:{port}", retries=0, timeout=30)
    out = rest.predict("binary", {"images": np.full((1, 8, 8, 3), 200, np.uint8)}, signature="predict_images")
    assert out["probabilities"].shape == (1, 8, 8, 2)


def _pool_threads(port: int) -> int:
    """The REST worker threads of the server on ``port`` (named ``rest:<port>_<i>``)."""
    return len([t for t in threading.enumerate() if t.name.startswith(f"rest:{port}_")])


PIX = [[[200, 100, 50]] * 4] * 4  # one 4x4 uint8 image as nested lists

BAD_BODIES = [
    # (id, body, status, text in the error)
    ("json-array", [1, 2, 3], 400, "JSON object"),
    ("json-string", "abc", 400, "JSON object"),
    ("not-json", b"{not json", 400, "not JSON"),
    ("instances-string", {"instances": "abc"}, 400, "'instances' must be a non-empty list"),
    ("instances-empty", {"instances": []}, 400, "'instances' must be a non-empty list"),
    ("instances-number", {"signature_name": "predict_images", "instances": 5}, 400, "'instances' must be"),
    ("inputs-string-for-floats", {"inputs": {"images": "abc"}}, 400, "expected float32 numbers"),
    ("strings-in-pixels", {"signature_name": "predict_images", "inputs": {"images": [[[["a", "b", "c"]]]]}},
     400, "expected uint8 numbers"),
    ("ragged-rows", {"signature_name": "predict_images", "instances": [[[[1, 2, 3]]], [[[1, 2, 3], [4, 5, 6]]]]},
     400, "ragged"),
    ("ragged-columns", {"inputs": {"images": [[[[0.1, 0.2, 0.3]], [[0.1, 0.2]]]]}}, 400, "ragged"),
    ("bad-base64", {"signature_name": "predict_bytes", "instances": [{"b64": "!!!not base64!!!"}]}, 400, "base64"),
    ("b64-not-string", {"signature_name": "predict_bytes", "instances": [{"b64": 5}]}, 400, "b64"),
    ("uint8-300", {"signature_name": "predict_images", "inputs": {"images": [[[[300, 0, 0]] * 4] * 4]}},
     400, "[0, 255], got 300"),
    ("uint8-negative", {"signature_name": "predict_images", "inputs": {"images": [[[[-5, 0, 0]] * 4] * 4]}},
     400, "[0, 255], got -5"),
    ("uint8-huge", {"signature_name": "predict_images", "inputs": {"images": [[[[2 ** 70, 0, 0]] * 4] * 4]}},
     400, "[0, 255]"),
    ("uint8-fraction", {"signature_name": "predict_images", "inputs": {"images": [[[[1.5, 0, 0]] * 4] * 4]}},
     400, "integers in [0, 255]"),
    ("mixed-rows", {"signature_name": "predict_images", "instances": [{"images": PIX}, PIX]}, 400,
     "every instance must be an object"),
    ("signature-not-string", {"signature_name": ["x"], "instances": [PIX]}, 400, "'signature_name' must be"),
    ("both-formats", {"signature_name": "predict_images", "instances": [PIX], "inputs": [PIX]}, 400, "not both"),
    ("no-payload", {"signature_name": "predict_images"}, 400, "needs 'instances' or 'inputs'"),
]


@pytest.mark.parametrize("body,status,text", [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies_answer_4xx_one_line_and_server_keeps_serving(server, body, status, text):
    code, answer = _post(server.rest_port, body)
    assert code == status, answer
    assert set(answer) == {"error"} and text in answer["error"], answer
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]
    _valid_ok(server.rest_port)


def test_uint8_values_are_never_wrapped(server):
    """300 used to become 44 (uint8 wrap) with HTTP 200; now 400, and 0 / 255 (the ends) are accepted."""
    img = [[[255, 0, 255]] * 4] * 4
    code, answer = _post(server.rest_port, {"signature_name": "predict_images", "inputs": {"images": [img]}})
    assert code == 200 and np.asarray(answer["outputs"]["probabilities"]).shape == (1, 4, 4, 2)


def test_content_length_negative_or_missing_answers_at_once(server):
    port = server.rest_port
    t0 = time.monotonic()
    code, answer = _raw(port, f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".encode())
    assert code == 400 and "Content-Length" in answer["error"]
    code, answer = _raw(port, f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".encode())
    assert code == 400 and "Content-Length" in answer["error"]
    code, answer = _raw(port, f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert code == 411 and "Content-Length" in answer["error"]
    code, answer = _raw(port, f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    assert code == 411
    assert time.monotonic() - t0 < 4.0  # each answered at once (the sockets stay open: nothing waits for EOF)
    _valid_ok(port)


def test_body_over_the_cap_is_413_before_reading_it(exported):
    from serving.config import ModelEntry
    from serving.local_server import LocalModelServer

    with LocalModelServer([ModelEntry("binary", str(exported["binary"]))], rest_port=0,
                          max_message_bytes=64 * 1024) as srv:
        # the header alone announces 10 MB; nothing more is sent, and the answer comes at once
        code, answer = _raw(srv.rest_port, f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
                                           "\r\n".encode())
        assert code == 413 and "over the limit of 65536 bytes" in answer["error"]
        big = {"signature_name": "predict_images", "inputs": {"images": np.zeros((1, 64, 128, 3), int).tolist()}}
        code, answer = _post(srv.rest_port, big)
        assert code == 413
        _valid_ok(srv.rest_port)


def test_stalled_body_frees_its_worker_after_the_timeout(exported):
    """Content-Length promises more bytes than ever come: the worker gives up after rest_timeout (408 / close)
    instead of waiting for ever, and with one worker the next request is served."""
    from serving.config import ModelEntry
    from serving.local_server import LocalModelServer

    with LocalModelServer([ModelEntry("binary", str(exported["binary"]))], rest_port=0, rest_workers=1,
                          rest_queue=4, rest_timeout=1.0) as srv:
        with socket.create_connection(("127.0.0.1", srv.rest_port), timeout=10) as s:
            s.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{\"inst".encode())
            t0 = time.monotonic()
            code, answer = _read_answer(s)
            assert code == 408 and time.monotonic() - t0 < 5.0
        _valid_ok(srv.rest_port)


def test_threads_are_bounded_and_excess_connections_get_503(exported):
    from serving.config import ModelEntry
    from serving.local_server import LocalModelServer

    with LocalModelServer([ModelEntry("binary", str(exported["binary"]))], rest_port=0, rest_workers=2,
                          rest_queue=1, rest_timeout=20.0) as srv:
        idle = [socket.create_connection(("127.0.0.1", srv.rest_port), timeout=10) for _ in range(3)]
        try:
            time.sleep(0.3)  # two held by the workers (waiting for a request line), one queued
            code, answer = _raw(srv.rest_port, b"", timeout=5)
            assert code == 503 and "busy" in answer["error"]
            assert _pool_threads(srv.rest_port) == 2
        finally:
            for s in idle:
                s.close()
        deadline = time.monotonic() + 10
        while True:  # the idle connections' workers see EOF and come back to the pool
            try:
                _valid_ok(srv.rest_port)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert _pool_threads(srv.rest_port) == 2


def test_many_concurrent_clients_never_exceed_the_pool(server, exported):
    from serving.config import ModelEntry
    from serving.local_server import LocalModelServer

    errors = []
    with LocalModelServer([ModelEntry("binary", str(exported["binary"]))], rest_port=0, rest_workers=3,
                          rest_queue=64) as srv:
        def worker():
            try:
                _valid_ok(srv.rest_port)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(12)]
        for t in threads:
            t.start()
        peak = 0
        while any(t.is_alive() for t in threads):
            peak = max(peak, _pool_threads(srv.rest_port))
            time.sleep(0.01)
        for t in threads:
            t.join()
    assert errors == [] and 1 <= peak <= 3


def test_stop_ends_workers_held_by_idle_keep_alive_connections(exported):
    from serving.config import ModelEntry
    from serving.local_server import LocalModelServer

    srv = LocalModelServer([ModelEntry("binary", str(exported["binary"]))], rest_port=0, rest_workers=2,
                           rest_timeout=60.0).start()
    port = srv.rest_port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/v1/models/binary")  # HTTP/1.1 keep-alive: the worker then waits for the next request
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["model_version_status"]
        assert _pool_threads(port) == 1
        t0 = time.monotonic()
        srv.stop()
        while _pool_threads(port) and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        assert _pool_threads(port) == 0 and time.monotonic() - t0 < 5  # not the 60 s idle timeout
    finally:
        conn.close()
