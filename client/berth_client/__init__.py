"""berth-client: classify texts with a berth model served by Triton.

    from berth_client import Classifier

    with Classifier("localhost:8000", model="sentiment") as clf:
        clf.predict("a gripping, funny film")
        # {"label": "positive", "confidence": 0.97, "probabilities": {...}}

Needs only `tritonclient[http,grpc]` and `numpy`.
"""

from berth_client.client import AsyncClassifier, Classifier
from berth_client.errors import (
    BerthError,
    InvalidInputError,
    ModelNotFoundError,
    RequestTimeoutError,
    ServerOverloadedError,
    ServerUnavailableError,
)
from berth_client.model import ModelInfo, decide
from berth_client.retry import RetryPolicy

__all__ = [
    "AsyncClassifier",
    "BerthError",
    "Classifier",
    "InvalidInputError",
    "ModelInfo",
    "ModelNotFoundError",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerOverloadedError",
    "ServerUnavailableError",
    "decide",
]

__version__ = "0.1.0"
