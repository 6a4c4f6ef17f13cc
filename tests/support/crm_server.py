"""A stand-in CRM on 127.0.0.1 that behaves as a real one does: it dedupes by Idempotency-Key.

Each test scripts the answers (201, 503 then 201, 429 with Retry-After, 400, slow, a body of its
choosing) and reads back every request it received, headers included.
"""
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class CrmState:
    # Answers to give before behaving normally: a status, (status, headers) or (status, headers, body),
    # e.g. [503, 503], [(429, {"Retry-After": "1"})], [(500, {}, "SECRET-BODY-123")]. A body is sent as
    # given (text/plain unless the headers say otherwise), even with a 2xx: a CRM that answers non-JSON.
    scripted: list = field(default_factory=list)
    slow_seconds: float = 0.0
    requests: list = field(default_factory=list)  # (method, path, headers, body)
    tasks: dict = field(default_factory=dict)  # task id -> body
    tasks_by_key: dict = field(default_factory=dict)  # Idempotency-Key -> task id
    lock: threading.Lock = field(default_factory=threading.Lock)

    def posts(self) -> list:
        return [request for request in self.requests if request[0] == "POST"]


class _Handler(BaseHTTPRequestHandler):
    state: CrmState

    def log_message(self, *args):  # keep test output clean
        pass

    def _answer(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
        payload = json.dumps(body or {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _answer_raw(self, status: int, body: str | bytes, headers: dict) -> None:
        payload = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        if not any(name.lower() == "content-type" for name in headers):
            self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _scripted(self):
        with self.state.lock:
            return self.state.scripted.pop(0) if self.state.scripted else None

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with self.state.lock:
            self.state.requests.append(("POST", self.path, dict(self.headers), body))
        if self.state.slow_seconds:
            time.sleep(self.state.slow_seconds)
        scripted = self._scripted()
        if scripted is not None:
            status, headers, *body = scripted if isinstance(scripted, tuple) else (scripted, {})
            if body:
                return self._answer_raw(status, body[0], headers)
            if status >= 300:
                return self._answer(status, {"error": "scripted"}, headers)
        key = self.headers.get("Idempotency-Key")
        with self.state.lock:
            if key and key in self.state.tasks_by_key:
                task_id = self.state.tasks_by_key[key]
                return self._answer(200, {"id": task_id, **self.state.tasks[task_id]})
            task_id = f"task-{uuid.uuid4().hex[:12]}"
            self.state.tasks[task_id] = body
            if key:
                self.state.tasks_by_key[key] = task_id
        self._answer(201, {"id": task_id, **body})

    def do_DELETE(self):
        with self.state.lock:
            self.state.requests.append(("DELETE", self.path, dict(self.headers), None))
            task_id = self.path.rsplit("/", 1)[-1]
            existed = self.state.tasks.pop(task_id, None) is not None
        self._answer(204 if existed else 404)


class CrmServer:
    def __init__(self):
        self.state = CrmState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "CrmServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
