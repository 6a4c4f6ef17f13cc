"""A stand-in OpenAI-compatible chat endpoint on 127.0.0.1: each test sets the answer's content."""
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class LlmState:
    content: str = "{}"  # the assistant message's content, as the model would write it
    delay_seconds: float = 0.0
    requests: list = field(default_factory=list)


def _handler(state: LlmState):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            state.requests.append((self.path, dict(self.headers),
                                   json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            time.sleep(state.delay_seconds)
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": state.content}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


class LlmServer:
    def __init__(self):
        self.state = LlmState()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
