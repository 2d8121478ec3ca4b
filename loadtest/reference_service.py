"""The reference PyTorch predictor behind a plain Python HTTP service: the way a
tutorial's `SentimentAnalyzer` is served (one text per request, eager PyTorch, a
thread per connection). The baseline of `python -m loadtest.compare`.

    python -m loadtest.reference_service --checkpoint runs/sentiment/model --port 8080
    curl -d '{"text": "a gripping film"}' localhost:8080/predict
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from berth_args import option, parse_config


def make_handler(predictor):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Locust's clients expect

        def _send(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"status": "ok"})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/predict":
                self._send(404, {"error": "not found"})
                return
            try:
                length = int(self.headers.get("Content-Length", 0))
                text = json.loads(self.rfile.read(length))["text"]
                if not isinstance(text, str):
                    raise ValueError("text must be a string")
            except (ValueError, KeyError, TypeError) as exc:
                self._send(400, {"error": f"expected {{'text': str}}: {exc}"})
                return
            self._send(200, predictor.predict(text)[0])

        def log_message(self, *args) -> None:  # quiet
            pass

    return Handler


@dataclass
class ReferenceServiceConfig:
    checkpoint: str = option(help="runs/<run>/model")
    host: str = "127.0.0.1"
    port: int = 8080


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_config(ReferenceServiceConfig, argv, "python -m loadtest.reference_service")
    from training.predict import Predictor

    predictor = Predictor(args.checkpoint)
    predictor.predict("warm up")
    server = ThreadingHTTPServer((args.host, args.port), make_handler(predictor))
    server.daemon_threads = True
    print(f"reference service on http://{args.host}:{args.port}/predict", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
