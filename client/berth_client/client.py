"""`Classifier` (blocking) and `AsyncClassifier` (asyncio) over Triton's HTTP or gRPC API."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import numpy as np

from berth_client.errors import BerthError, ModelNotFoundError, ServerOverloadedError, translate
from berth_client.model import (
    PROBABILITIES,
    ModelInfo,
    chunks,
    decide,
    encode_texts,
    validate_texts,
)
from berth_client.retry import RetryPolicy, acall_with_retry, call_with_retry
from berth_core import throttle as throttling
from berth_core.traffic_sample import DEFAULT_MAX_TEXTS, DEFAULT_RATE, SampleConfig, TextSample

PROTOCOLS = ("http", "grpc")
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}


def normalize_url(url: str | None, protocol: str) -> str:
    """`host:port` as tritonclient wants it: no scheme, no trailing slash; the
    protocol's default port when none is given."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    url = (url or "localhost").strip()
    for scheme in ("http://", "grpc://", "https://"):
        if url.startswith(scheme):
            if scheme == "https://":
                raise ValueError("https URLs are not supported by berth-client yet")
            url = url[len(scheme) :]
    url = url.rstrip("/")
    if ":" not in url.rsplit("]", 1)[-1]:
        url = f"{url}:{DEFAULT_PORTS[protocol]}"
    return url


# gRPC channels back off their reconnects exponentially (1 s, then x1.6 up to 120 s by
# default): after a server restart a channel could wait seconds before it looks again,
# longer than the retry budget. Capped at 0.5 s, the same client object finds the new
# server within about half a second (tests/reliability/test_faults.py).
RECONNECT_BACKOFF_MS = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 500,
}


def grpc_channel_args() -> list[tuple[str, int]]:
    """tritonclient's default channel arguments (message size, keepalive; passing any
    replaces them all) plus the reconnect backoff above."""
    from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

    keepalive = KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        *RECONNECT_BACKOFF_MS.items(),
    ]


def _not_found(model: str, url: str, index: list[dict] | None, detail: str) -> ModelNotFoundError:
    available = None
    if index is not None:
        available = [
            f"{m.get('name')} ({m.get('state') or 'unknown state'})" for m in index if m.get("name")
        ]
    listing = f"; the server has: {', '.join(available)}" if available else ""
    if available == []:
        listing = "; the server's repository is empty"
    return ModelNotFoundError(
        f"model {model!r} is not served at {url} (server said: {detail}){listing}",
        model=model,
        available=available,
    )


def _sample(path: str | os.PathLike | None, rate: float, max_texts: int) -> TextSample | None:
    """The client's text sample (None: off); a bad setting or path raises `InputError`."""
    if path is None:
        return None
    config = SampleConfig(os.fspath(path), rate, max_texts)
    config.check_path()
    return TextSample(config)


def _index_entries(index: Any) -> list[dict]:
    if isinstance(index, dict):  # gRPC as_json
        return list(index.get("models", []))
    return list(index or [])


class _Base:
    """What both clients take: the server, the model and how calls are bounded and
    retried (`Classifier` and `AsyncClassifier` add their own concurrency option).

    `sample_file` (opt-in, off by default) appends a random share `sample_rate` of the
    texts classified to that JSON Lines file, at most `sample_max_texts` of them, each
    once and nothing but the text: the next student's `python -m training distill
    --unlabelled-file` (`berth_core.traffic_sample`; a writing error stops the sample,
    never a call).

    `throttle` (on by default, k = 2; 0 or None turns it off): once the server has
    refused most of the client's recent inference calls (20 at least, in 10 s) as
    overloaded, the client refuses some itself
    (`ServerOverloadedError`, retried like the server's own refusals) so that it sends
    about k times what the server accepts; under overload the server's cores go to
    answering instead of refusing (`berth_core.throttle`). Nothing changes while the
    server accepts."""

    def __init__(
        self,
        url: str | None = "localhost:8000",
        model: str = "sentiment",
        protocol: str = "http",
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        model_version: str = "",
        sample_file: str | os.PathLike | None = None,
        sample_rate: float = DEFAULT_RATE,
        sample_max_texts: int = DEFAULT_MAX_TEXTS,
        throttle: float | None = throttling.DEFAULT_K,
    ) -> None:
        self.protocol = protocol.lower()
        self.url = normalize_url(url, self.protocol)
        if not isinstance(model, str) or not model:
            raise ValueError("model must be a non-empty string")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.model = model
        self.model_version = model_version
        self.timeout = float(timeout)
        self.retry_policy = RetryPolicy(retries=retries, backoff=backoff, max_backoff=max_backoff)
        self._info: ModelInfo | None = None
        self.sample = _sample(sample_file, sample_rate, sample_max_texts)
        self.throttle = throttling.from_k(throttle)
        if self.protocol == "http":
            import tritonclient.http as tc
        else:
            import tritonclient.grpc as tc
        self._tc = tc

    def _record(self, texts: Sequence[str]) -> None:
        """Offer the texts the server has just classified to the sample (if any)."""
        if self.sample is not None:
            self.sample.offer(texts)

    def _translate(self, exc: BaseException) -> BerthError:
        return translate(exc, url=f"{self.protocol}://{self.url}", model=self.model)

    def _admit(self) -> None:
        """Refuse an inference call locally when the throttle says so (transient: the
        retry policy backs off and tries again, as after the server's own refusal)."""
        if self.throttle is not None and not self.throttle.allow():
            raise ServerOverloadedError(self.throttle.refusal())

    def _settled(self, exc: BaseException | None) -> None:
        """Tell the throttle how the server answered: accepted unless overloaded."""
        if self.throttle is not None:
            overloaded = exc is not None and isinstance(self._translate(exc), ServerOverloadedError)
            self.throttle.record(not overloaded)

    @contextlib.contextmanager
    def _throttled(self) -> Iterator[None]:
        """One inference attempt behind the client-side throttle (both clients' `with`)."""
        self._admit()
        try:
            yield
        except Exception as exc:
            self._settled(exc)
            raise
        self._settled(None)

    def _grpc_kwargs(self) -> dict:
        return {"client_timeout": self.timeout} if self.protocol == "grpc" else {}

    def _index_kwargs(self) -> dict:
        """get_model_repository_index's: gRPC answers a protobuf unless asked for JSON."""
        return {"as_json": True, **self._grpc_kwargs()} if self.protocol == "grpc" else {}

    def _health_unknown(self) -> dict:
        """`health()`'s record before the server has answered anything."""
        return {
            "url": self.url,
            "protocol": self.protocol,
            "live": False,
            "ready": False,
            "model": self.model,
            "model_ready": False,
        }

    def _build_request(self, texts: Sequence[str], info: ModelInfo) -> tuple[list, list]:
        data = encode_texts(texts)
        if info.max_batch_size <= 0:
            data = data.reshape(-1)
        infer_input = self._tc.InferInput(info.input_name, list(data.shape), "BYTES")
        infer_input.set_data_from_numpy(data)
        return [infer_input], [self._tc.InferRequestedOutput(PROBABILITIES)]

    def _parse_result(self, result: Any, count: int, info: ModelInfo) -> np.ndarray:
        probs = result.as_numpy(PROBABILITIES)
        if probs is None:
            raise BerthError(f"model {self.model!r} returned no {PROBABILITIES} output")
        probs = np.asarray(probs, dtype=np.float32).reshape(-1, len(info.labels))
        if probs.shape[0] != count:
            raise BerthError(
                f"model {self.model!r} returned {probs.shape[0]} rows for {count} texts"
            )
        return probs

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(url={self.url!r}, model={self.model!r}, protocol={self.protocol!r})"


class Classifier(_Base):
    """Classify texts with a berth model served by Triton (blocking).

        with Classifier("localhost:8000", model="sentiment") as clf:
            clf.predict("a gripping, funny film")        # -> one record (dict)
            clf.predict(["great", "dull"])               # -> list of records

    Labels, problem type, thresholds and the max batch size are read from the
    served model's config on first use. Lists of any length are split into
    requests of at most `max_batch_size` texts. Transient failures (server
    unreachable, HTTP 503/429, gRPC UNAVAILABLE/RESOURCE_EXHAUSTED) are retried
    `retries` times with exponential backoff and full jitter; `timeout` bounds
    each call (connect and read) in seconds.

    Safe for use from one thread at a time (or one greenlet per client); for
    concurrency, create one `Classifier` per thread or use `AsyncClassifier`.
    """

    def __init__(self, *args: Any, concurrency: int = 1, **options: Any) -> None:
        """`url`, `model`, `protocol` and the keyword options as `_Base` takes them;
        `concurrency`: the HTTP client's connection pool size."""
        super().__init__(*args, **options)
        if self.protocol == "http":
            self._client = self._tc.InferenceServerClient(
                self.url,
                concurrency=concurrency,
                connection_timeout=self.timeout,
                network_timeout=self.timeout,
            )
        else:
            self._client = self._tc.InferenceServerClient(
                self.url, channel_args=grpc_channel_args()
            )

    # -- plumbing
    def _call(self, fn, *args, **kwargs):
        return call_with_retry(lambda: fn(*args, **kwargs), self.retry_policy, self._translate)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- model and server state
    def model_info(self, refresh: bool = False) -> ModelInfo:
        """The served model's labels, problem type, thresholds and max batch size."""
        if self._info is None or refresh:
            try:
                if self.protocol == "grpc":
                    config = self._call(
                        self._client.get_model_config,
                        self.model,
                        self.model_version,
                        as_json=True,
                        client_timeout=self.timeout,
                    )
                else:
                    config = self._call(
                        self._client.get_model_config, self.model, self.model_version
                    )
            except ModelNotFoundError as exc:
                raise _not_found(
                    self.model, self.url, self._repository_index(), exc.server_message
                ) from exc
            self._info = ModelInfo.from_config(config)
        return self._info

    @property
    def info(self) -> ModelInfo:
        return self.model_info()

    @property
    def labels(self) -> list[str]:
        return self.model_info().labels

    def _repository_index(self) -> list[dict] | None:
        try:
            return _index_entries(self._client.get_model_repository_index(**self._index_kwargs()))
        except Exception:
            return None

    def health(self) -> dict:
        """`{"url", "live", "ready", "model", "model_ready"}`; never raises for a down
        server (everything is False then, with `error` saying why)."""
        status = self._health_unknown()
        kwargs = self._grpc_kwargs()
        try:
            status["live"] = bool(self._client.is_server_live(**kwargs))
            status["ready"] = bool(self._client.is_server_ready(**kwargs))
            status["model_ready"] = bool(
                self._client.is_model_ready(self.model, self.model_version, **kwargs)
            )
        except Exception as exc:
            status["error"] = str(self._translate(exc))
        return status

    # -- inference
    def probabilities(self, texts: Iterable[str]) -> np.ndarray:
        """Probabilities, shape [len(texts), num_labels], float32."""
        items, _ = validate_texts(texts)
        info = self.model_info()
        if not items:
            return np.zeros((0, len(info.labels)), dtype=np.float32)
        parts = [self._infer_chunk(chunk, info) for chunk in chunks(items, info.chunk_size)]
        self._record(items)
        return np.concatenate(parts)

    def _infer_chunk(self, texts: Sequence[str], info: ModelInfo) -> np.ndarray:
        inputs, outputs = self._build_request(texts, info)

        def attempt():
            with self._throttled():
                return self._client.infer(
                    self.model,
                    inputs,
                    model_version=self.model_version,
                    outputs=outputs,
                    **self._grpc_kwargs(),
                )

        return self._parse_result(self._call(attempt), len(texts), info)

    @overload
    def predict(self, texts: str) -> dict: ...
    @overload
    def predict(self, texts: Iterable[str]) -> list[dict]: ...

    def predict(self, texts):
        """One text → its record (dict); a list (or any iterable) of texts → a list
        of records in the same order (an empty list → [])."""
        items, single = validate_texts(texts)
        records = decide(self.probabilities(items), self.model_info()) if items else []
        return records[0] if single else records


class AsyncClassifier(_Base):
    """The asyncio twin of `Classifier` (`tritonclient.http.aio` / `tritonclient.grpc.aio`).

        async with AsyncClassifier("localhost:8001", model="sentiment", protocol="grpc") as clf:
            records = await clf.predict(texts)

    The chunks of a long list are sent concurrently, at most `max_concurrency` at a time.
    """

    def __init__(self, *args: Any, max_concurrency: int = 4, **options: Any) -> None:
        """`url`, `model`, `protocol` and the keyword options as `_Base` takes them;
        `max_concurrency`: chunks of one call in flight at a time."""
        super().__init__(*args, **options)
        if self.protocol == "http":
            import tritonclient.http.aio as aio
        else:
            import tritonclient.grpc.aio as aio
        self._aio = aio
        self._client: Any = None
        self.max_concurrency = max(1, int(max_concurrency))
        self._info_lock: asyncio.Lock | None = None

    def _get_client(self) -> Any:
        # Created lazily, inside the running event loop (aiohttp and grpc.aio bind to it).
        if self._client is None:
            if self.protocol == "http":
                self._client = self._aio.InferenceServerClient(self.url, conn_timeout=self.timeout)
            else:
                self._client = self._aio.InferenceServerClient(
                    self.url, channel_args=grpc_channel_args()
                )
        return self._client

    async def _call(self, fn, *args, **kwargs):
        return await acall_with_retry(
            lambda: fn(*args, **kwargs), self.retry_policy, self._translate
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> AsyncClassifier:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def model_info(self, refresh: bool = False) -> ModelInfo:
        if self._info_lock is None:
            self._info_lock = asyncio.Lock()
        async with self._info_lock:
            if self._info is None or refresh:
                client = self._get_client()
                try:
                    if self.protocol == "grpc":
                        config = await self._call(
                            client.get_model_config,
                            self.model,
                            self.model_version,
                            as_json=True,
                            client_timeout=self.timeout,
                        )
                    else:
                        config = await self._call(
                            client.get_model_config, self.model, self.model_version
                        )
                except ModelNotFoundError as exc:
                    index = await self._repository_index()
                    raise _not_found(self.model, self.url, index, exc.server_message) from exc
                self._info = ModelInfo.from_config(config)
        return self._info

    async def _repository_index(self) -> list[dict] | None:
        client = self._get_client()
        try:
            return _index_entries(await client.get_model_repository_index(**self._index_kwargs()))
        except Exception:
            return None

    async def health(self) -> dict:
        status = self._health_unknown()
        client = self._get_client()
        kwargs = self._grpc_kwargs()
        try:
            status["live"] = bool(await client.is_server_live(**kwargs))
            status["ready"] = bool(await client.is_server_ready(**kwargs))
            status["model_ready"] = bool(
                await client.is_model_ready(self.model, self.model_version, **kwargs)
            )
        except Exception as exc:
            status["error"] = str(self._translate(exc))
        return status

    async def probabilities(self, texts: Iterable[str]) -> np.ndarray:
        items, _ = validate_texts(texts)
        info = await self.model_info()
        if not items:
            return np.zeros((0, len(info.labels)), dtype=np.float32)
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def run(chunk: Sequence[str]) -> np.ndarray:
            async with semaphore:
                return await self._infer_chunk(chunk, info)

        parts = await asyncio.gather(*(run(c) for c in chunks(items, info.chunk_size)))
        self._record(items)
        return np.concatenate(parts)

    async def _infer_chunk(self, texts: Sequence[str], info: ModelInfo) -> np.ndarray:
        inputs, outputs = self._build_request(texts, info)
        client = self._get_client()

        async def attempt():
            with self._throttled():
                return await client.infer(
                    self.model,
                    inputs,
                    model_version=self.model_version,
                    outputs=outputs,
                    **self._grpc_kwargs(),
                )

        return self._parse_result(await self._call(attempt), len(texts), info)

    async def predict(self, texts):
        """One text → its record (dict); a list of texts → a list of records."""
        items, single = validate_texts(texts)
        records = decide(await self.probabilities(items), await self.model_info()) if items else []
        return records[0] if single else records
