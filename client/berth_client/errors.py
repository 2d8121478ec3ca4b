"""Typed errors, and the mapping from tritonclient / transport exceptions onto them.

Every error the client raises is a `BerthError` (berth's one hierarchy,
`berth_core.errors`): bad input is an `InputError`, the rest `ServingError`s.
`transient` marks the ones worth retrying (the server is down or busy); bad input and
unknown models never are.
"""

from __future__ import annotations

from berth_core.admission import ENTRANCE_REFUSAL, QUEUE_FULL, QUEUE_TIMEOUT
from berth_core.admission import REFUSAL as ADMISSION_REFUSAL
from berth_core.errors import BerthError, InputError, ServingError

__all__ = [
    "BerthError",
    "InvalidInputError",
    "ModelNotFoundError",
    "RequestTimeoutError",
    "ServerOverloadedError",
    "ServerUnavailableError",
    "translate",
]


class ServerUnavailableError(ServingError):
    """The server could not be reached (connection refused, reset, DNS, HTTP 503, gRPC
    UNAVAILABLE), or the model's Python-backend stub died and is being replaced."""

    transient = True

    def __init__(self, message: str, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class ServerOverloadedError(ServingError):
    """The server refused the request because it is busy (HTTP 429, gRPC
    RESOURCE_EXHAUSTED, Triton's "Exceeds maximum queue size" and "Request timeout
    expired" from a model's bounded queue policy, the tokenizer's "over the admission
    rate"), or the client refused it itself (`berth_core.throttle`) after the server had
    refused most recent requests."""

    transient = True


class ModelNotFoundError(ServingError):
    """The server does not serve the requested model (or it is not ready)."""

    def __init__(
        self,
        message: str,
        model: str,
        available: list[str] | None = None,
        server_message: str = "",
    ) -> None:
        super().__init__(message)
        self.model = model
        self.available = available
        self.server_message = server_message or message


class InvalidInputError(InputError):
    """The input is not what the model accepts: caught client-side when possible."""


class RequestTimeoutError(ServingError, TimeoutError):
    """The server did not answer within the client's timeout."""


_OVERLOAD_STATUSES = {"429", "StatusCode.RESOURCE_EXHAUSTED"}
_UNAVAILABLE_STATUSES = {"503", "StatusCode.UNAVAILABLE"}
_NOT_FOUND_STATUSES = {"404", "StatusCode.NOT_FOUND"}
_INVALID_STATUSES = {"400", "StatusCode.INVALID_ARGUMENT"}
_TIMEOUT_STATUSES = {"504", "StatusCode.DEADLINE_EXCEEDED"}
# Triton's queue policy (max_queue_size, timeout_action REJECT), the tokenizer's
# admission and the entrance in front of the server (nginx): HTTP 503 / UNAVAILABLE.
_OVERLOAD_MESSAGES = (
    QUEUE_FULL,
    QUEUE_TIMEOUT,
    ADMISSION_REFUSAL,
    ENTRANCE_REFUSAL,
)


def _dead_stub(lowered: str) -> bool:
    """A Python-backend stub that died (HTTP 500 / gRPC INTERNAL), until the server
    replaces it: berth's watchdog reloads the model within seconds, the model staying
    READY (so "unknown model" is never part of that window and stays permanent). The
    health mutex: the stub died holding its health lock."""
    return ("stub process" in lowered and "is not healthy" in lowered) or (
        "failed to obtain the health mutex" in lowered
    )


def _is_aiohttp_connection_error(exc: BaseException) -> bool:
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - aiohttp comes with tritonclient[http]
        return False
    return isinstance(exc, aiohttp.ClientConnectionError)


def translate(exc: BaseException, *, url: str, model: str | None = None) -> BerthError:
    """Map an exception raised by tritonclient (or the transport below it) to a
    `BerthError` subclass that says what was wrong."""
    if isinstance(exc, BerthError):
        return exc
    where = f" (server {url}" + (f", model {model!r})" if model else ")")
    if isinstance(exc, TimeoutError):  # socket.timeout, asyncio.TimeoutError
        return RequestTimeoutError(f"no answer within the timeout{where}: {exc!r}")
    if isinstance(exc, OSError) or _is_aiohttp_connection_error(exc):
        return ServerUnavailableError(f"cannot reach the server at {url}: {exc!r}", url=url)
    status = None
    message = str(exc)
    if hasattr(exc, "status") and hasattr(exc, "message"):  # InferenceServerException
        status = exc.status()
        message = exc.message() or message
    status = str(status) if status is not None else ""
    lowered = message.lower()
    if status in _OVERLOAD_STATUSES or any(m in lowered for m in _OVERLOAD_MESSAGES):
        return ServerOverloadedError(f"server overloaded{where}: {message}")
    if status in _UNAVAILABLE_STATUSES or "failed to connect" in lowered or _dead_stub(lowered):
        return ServerUnavailableError(f"server unavailable at {url} ({status}): {message}", url=url)
    if status in _TIMEOUT_STATUSES or "deadline exceeded" in lowered:
        return RequestTimeoutError(f"no answer within the timeout{where}: {message}")
    if status in _NOT_FOUND_STATUSES or "unknown model" in lowered:
        return ModelNotFoundError(
            f"model not found{where}: {message}", model=model or "", server_message=message
        )
    if status in _INVALID_STATUSES:
        return InvalidInputError(f"the server rejected the input{where}: {message}")
    return ServingError(f"server error{where} [{status or type(exc).__name__}]: {message}")
