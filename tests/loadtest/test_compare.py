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


def test_teacher_row_and_ratio():
    rows = [
        Row("(3) Triton ensemble sentiment", 1000.0, "req/s", 40, 95, 60000, 0, 1.6, 0.3),
        Row("(4) Triton ensemble sentiment_teacher", 500.0, "req/s", 80, 190, 30000, 0, 1.7, 0.2),
    ]
    args = argparse.Namespace(model="sentiment", scenario="snippets", users=64, duration=60.0)
    assert "(3)/(4): **2.00×** the teacher ensemble's throughput" in markdown(rows, args, "", [])


@pytest.mark.server
@pytest.mark.slow
def test_student_and_teacher_ensembles_in_one_run(tmp_path):
    """--teacher-model loads a second ensemble of the same repository under the same
    Locust settings, each in its own server start, and reports both."""
    from loadtest.compare import main
    from tests.client.stub_models import write_stub_repository

    repository = write_stub_repository(tmp_path / "repository")
    output = tmp_path / "compare.md"
    code = main(["--checkpoint", "unused", "--model-repository", str(repository),
                 "--model", "sentiment", "--teacher-model", "tags", "--only", "triton",
                 "--only", "teacher", "--users", "2", "--duration", "2s",
                 "--report-dir", str(tmp_path / "reports"), "--output", str(output)])  # fmt: skip
    assert code == 0
    text = output.read_text()
    assert "| (3) Triton ensemble sentiment," in text and "| (4) Triton ensemble tags," in text
    assert "(3)/(4): **" in text
    assert (tmp_path / "reports" / "triton_model_stats_tags.json").is_file()
