"""Security defaults: loopback binding, no remote code unless asked, safetensors only.
RELIABILITY.md, "Security"."""

from __future__ import annotations

import ipaddress
import shutil

import psutil
import pytest
import torch


@pytest.mark.server
def test_server_listens_on_loopback_only(served):
    """Every listening socket of the server's process tree (HTTP, gRPC, metrics) is
    bound to 127.0.0.1."""
    root = psutil.Process(served.server.process.pid)
    listening = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        listening += [c.laddr for c in conns if c.status == psutil.CONN_LISTEN]
    ports = {a.port for a in listening}
    assert {served.server.http_port, served.server.grpc_port, served.server.metrics_port} <= ports
    # gRPC reports its socket as the IPv4-mapped "::ffff:127.0.0.1": the same address
    addresses = {ipaddress.ip_address(a.ip) for a in listening}
    addresses = {getattr(a, "ipv4_mapped", None) or a for a in addresses}
    assert addresses == {ipaddress.ip_address("127.0.0.1")}, listening


def test_trust_remote_code_only_when_asked(monkeypatch):
    """training passes trust_remote_code to transformers only with --trust-remote-code."""
    import transformers

    from training import train

    seen = []

    class Tok:
        is_fast = True

    def fake(model, **kwargs):
        seen.append(kwargs)
        return Tok()

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake)
    train.load_hf_tokenizer("some/model", trust_remote_code=False)
    train.load_hf_tokenizer("some/model", trust_remote_code=True)
    assert seen == [{}, {"trust_remote_code": True}]
    assert train.TrainConfig().trust_remote_code is False


@pytest.fixture
def pickle_only_checkpoint(tmp_path, sentiment_checkpoint):
    """The sentiment checkpoint with its weights as pytorch_model.bin (pickle) only."""
    from safetensors.torch import load_file

    out = tmp_path / "pickle-only"
    shutil.copytree(sentiment_checkpoint, out)
    state = load_file(out / "model.safetensors")
    (out / "model.safetensors").unlink()
    torch.save(state, out / "pytorch_model.bin")
    return out


def test_predictor_refuses_pickle_weights(pickle_only_checkpoint):
    from training.predict import Predictor

    with pytest.raises(OSError, match="safetensors"):
        Predictor(pickle_only_checkpoint)


def test_export_refuses_pickle_weights(pickle_only_checkpoint, tmp_path):
    from berth_core.checkpoint import BerthConfig
    from export.onnx_export import export_fp32

    with pytest.raises(OSError, match="safetensors"):
        berth = BerthConfig.load(pickle_only_checkpoint)
        export_fp32(pickle_only_checkpoint, tmp_path / "model.onnx", berth)
