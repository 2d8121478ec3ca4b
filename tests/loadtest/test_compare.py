"""The side-by-side report (synthetic figures), the CPU meter and the reference service."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import urllib.request
from http.server import ThreadingHTTPServer

import pytest

from loadtest.compare import Row, markdown
from loadtest.cpu import CpuMeter
from loadtest.reference_service import make_handler


def test_markdown_table_and_ratios():
    rows = [
        Row("(1) PyTorch service", 60.0, "req/s", 900, 1500, 1000, 0, 1.9, 0.1),
        Row("(2) int8 ONNX alone, onnxruntime, batch 1, tokenization included", 700, "texts/s"),
        Row("(2) int8 ONNX alone, onnxruntime, batch 32, tokenization included", 1200, "texts/s"),
        Row("(2′) same, batch 32, texts sorted by length", 1500, "texts/s"),
        Row("(3) Triton ensemble", 900.0, "req/s", 40, 95, 27000, 0, 1.6, 0.3),
    ]
    args = argparse.Namespace(model="sentiment", scenario="snippets", users=64, duration=30.0)
    text = markdown(rows, args, "python -m loadtest.compare ...", [])
    assert "| (3) Triton ensemble | 900 req/s | 40 | 95 | 27,000 | 0 | 1.60 | 0.30 |" in text
    assert "(3)/(1): **15.0×**" in text
    # the ceiling is the best *random-order* batch, not the sorted one
    assert "(3)/(2): **0.75×** the model-only ceiling (batch 32)" in text


def test_cpu_meter_sees_a_busy_child():
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\n"
                             "while time.time()-t<1.5: pass"])  # fmt: skip
    meter = CpuMeter(interval=0.1)
    meter.watch("busy", busy.pid)
    with meter:
        busy.wait()
    assert 0.4 < meter.cores("busy") <= 1.2


def test_reference_service_contract():
    class Fake:
        def predict(self, text):
            return [{"label": "positive", "confidence": 0.9, "text_len": len(text)}]

    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Fake()))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        request = urllib.request.Request(
            f"{url}/predict", data=json.dumps({"text": "abc"}).encode()
        )
        with urllib.request.urlopen(request) as response:
            assert json.loads(response.read())["text_len"] == 3
        bad = urllib.request.Request(f"{url}/predict", data=b'{"text": 3}')
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(bad)
        assert info.value.code == 400
    finally:
        server.shutdown()
