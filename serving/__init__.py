"""Serve a berth model repository with the pip `tritonserver` (no Docker, CPU)."""

from serving.server import TritonServer, TritonServerError

__all__ = ["TritonServer", "TritonServerError"]
