"""The FastAPI application of ``fmhub serve``: endpoints, limits, errors, metrics."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import FmhubError, InputError, InvalidOptionError
from .batching import Batcher, QueueFull
from .inputs import decode_items, from_multipart
from .metrics import Metrics

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

__all__ = ["GENERATION_TASK", "ServeConfig", "create_app"]

#: The task of models the completion endpoints serve.
GENERATION_TASK = "text-generation"
#: OpenAI request fields passed to a generation model's predict/stream as per-call options.
_GEN_OPTIONS = {
    "max_tokens": "max_new_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "stop": "stop",
    "seed": "seed",
}


class ServeConfig(BaseModel):
    """Settings of one server (``fmhub serve`` flags)."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_batch: int = Field(32, ge=1, description="most items merged into one model call")
    max_wait_ms: float = Field(5.0, ge=0, description="longest wait for a batch to fill")
    batching: bool = True
    workers: int = Field(
        1, ge=1, description="model calls run at once per model, each on its own thread"
    )
    max_queue: int = Field(256, ge=1, description="requests waiting per model before 503")
    max_body_mb: float = Field(16.0, gt=0, description="largest request body (MiB) before 413")
    timeout_s: float = Field(60.0, gt=0, description="per-request timeout before 504")
    api_key: str | None = None
    graceful_timeout_s: float = Field(30.0, ge=0)
    retry_after_s: int = Field(1, ge=0)


@dataclass
class Served:
    """One served model: loaded in the background, then run by its batcher."""

    name: str
    source: Any
    options: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    batcher: Batcher | None = None
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.batcher is not None


#: The served model a request is for ("-" when unknown), the label of its metrics.
_current_model: contextvars.ContextVar[str] = contextvars.ContextVar("fmhub_model", default="-")


class _HTTPError(Exception):
    def __init__(
        self, status: int, message: str, kind: str = "error", headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}


def _jsonable(obj: Any) -> Any:
    """A result as JSON-ready data; an array becomes its ``tolist()`` (plain numbers already, so
    a 384-float embedding is not walked number by number)."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    elif hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj


try:  # orjson encodes a response of embeddings several times faster than json (fmhub[serve])
    import orjson as _orjson
except ImportError:  # pragma: no cover - the serve extra installs it
    _orjson = None


class _JSON(JSONResponse):
    """JSON response encoded with orjson when installed (the same JSON as ``json.dumps``: floats
    in their shortest round-trip form, UTF-8, no spaces)."""

    def render(self, content: Any) -> bytes:
        if _orjson is not None:
            try:
                return _orjson.dumps(content)
            except TypeError:  # what orjson does not take (an int beyond 64 bits ...)
                pass
        return super().render(content)


class _Limits:
    """Pure ASGI middleware: bearer token (401) and body size (413) before any handler runs."""

    def __init__(self, app: Any, config: ServeConfig, metrics: Metrics):
        self.app, self.config, self.metrics = app, config, metrics
        self.max_body = int(config.max_body_mb * 1024 * 1024)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.config.api_key and path.startswith("/v1/"):
            given = headers.get("authorization", "")
            if given != f"Bearer {self.config.api_key}":
                return await self._reject(
                    send,
                    path,
                    401,
                    "A valid bearer token is required: send 'Authorization: Bearer <key>'.",
                    "authentication_error",
                    {"www-authenticate": "Bearer"},
                )
        if scope["method"] in ("POST", "PUT", "PATCH"):
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                return await self._too_large(send, path)
            body, more = bytearray(), True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_body:
                    return await self._too_large(send, path)
            sent = False

            async def replay():
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": bytes(body), "more_body": False}
                return await receive()

            return await self.app(scope, replay, send)
        return await self.app(scope, receive, send)

    async def _too_large(self, send: Send, path: str):
        return await self._reject(
            send,
            path,
            413,
            f"The request body is larger than "
            f"{self.config.max_body_mb:g} MiB; send fewer or smaller inputs, "
            "or start the server with a larger --max-body-mb.",
            "request_too_large",
        )

    async def _reject(
        self,
        send: Send,
        path: str,
        status: int,
        message: str,
        kind: str,
        headers: Mapping[str, str] | None = None,
    ):
        self.metrics.request("-", path, status, 0.0)
        body = json.dumps({"error": {"message": message, "type": kind}}).encode()
        hdrs = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        hdrs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})


def create_app(
    models: Mapping[str, Any],
    config: ServeConfig | None = None,
    load_options: Mapping[str, dict[str, Any]] | None = None,
) -> Any:
    """The ASGI app serving ``models`` (served name -> a loaded ``Model``, or a name/folder that is
    loaded in the background once the server starts; ``/ready`` says when all are loaded)."""
    config = config or ServeConfig()
    metrics = Metrics()
    served = {
        name: Served(name, src, dict((load_options or {}).get(name, {})))
        for name, src in models.items()
    }
    lookup: dict[str, Served] = dict(served)

    def start_batcher(s: Served) -> None:
        model = s.model

        def predict(items: list[Any], **options: Any):
            return model.predict(items, batch_size=config.max_batch, progress=False, **options)

        s.batcher = Batcher(
            s.name,
            predict,
            max_batch=config.max_batch,
            max_wait_ms=config.max_wait_ms,
            max_queue=config.max_queue,
            batching=config.batching,
            metrics=metrics,
            workers=config.workers,
        )
        s.batcher.start()
        for alias in (s.model.spec.id, *s.model.spec.aliases):
            lookup.setdefault(alias, s)
        metrics.set_queue_depth(s.name, 0)

    async def load_all() -> None:
        from .. import load

        loop = asyncio.get_running_loop()
        for s in served.values():
            if s.model is None:
                try:
                    s.model = await loop.run_in_executor(
                        None, lambda s=s: load(s.source, **s.options)
                    )
                except Exception as exc:  # noqa: BLE001 - reported by /ready and the endpoints
                    s.error = f"{type(exc).__name__}: {exc}"
                    continue
            start_batcher(s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.get_running_loop().create_task(load_all())
        app.state.loader = loader
        try:
            yield
        finally:
            loader.cancel()
            for s in served.values():
                if s.batcher is not None:
                    await s.batcher.stop()

    app = FastAPI(title="fmhub serve", lifespan=lifespan)
    app.state.served = served
    app.state.metrics = metrics
    app.state.config = config

    def error_response(exc: _HTTPError) -> JSONResponse:
        return JSONResponse(
            {"error": {"message": exc.message, "type": exc.kind}},
            status_code=exc.status,
            headers=exc.headers,
        )

    def get_served(name: str, task: str | None = None) -> Served:
        s = lookup.get(name)
        _current_model.set(s.name if s is not None else "-")
        if s is None:
            raise _HTTPError(
                404,
                f"Model {name!r} is not served here; served: "
                f"{sorted(served)}. GET /v1/models lists them.",
                "model_not_found",
            )
        if s.error is not None:
            raise _HTTPError(500, f"Model {name!r} failed to load: {s.error}", "load_error")
        if not s.ready:
            raise _HTTPError(
                503,
                f"Model {name!r} is still loading; retry shortly.",
                "model_loading",
                {"retry-after": str(config.retry_after_s)},
            )
        if task is not None and s.model.task != task:
            raise _HTTPError(
                400,
                f"Model {name!r} does task {s.model.task!r}; this endpoint needs a {task!r} model.",
                "invalid_request_error",
            )
        return s

    async def run_batch(s: Served, items: list[Any], options: dict[str, Any]) -> list[Any]:
        assert s.batcher is not None
        try:
            return await asyncio.wait_for(s.batcher.submit(items, options), config.timeout_s)
        except QueueFull as exc:
            raise _HTTPError(
                503,
                f"{exc}; retry later.",
                "overloaded",
                {"retry-after": str(config.retry_after_s)},
            ) from None
        except asyncio.TimeoutError:
            raise _HTTPError(
                504, f"Model {s.name!r} did not answer within {config.timeout_s:g} s.", "timeout"
            ) from None
        except (InputError, InvalidOptionError) as exc:
            raise _HTTPError(422, str(exc), type(exc).__name__) from None
        except FmhubError as exc:
            raise _HTTPError(500, str(exc), type(exc).__name__) from None
        except Exception as exc:  # noqa: BLE001 - a failing batch fails its own requests
            raise _HTTPError(500, f"{type(exc).__name__}: {exc}", "server_error") from None

    async def answer(name: str, endpoint: str, work: Callable[[], Awaitable[Response]]) -> Response:
        started = time.monotonic()
        _current_model.set("-")
        try:
            response = await work()
            status = response.status_code
        except _HTTPError as exc:
            response, status = error_response(exc), exc.status
        metrics.request(_current_model.get(), endpoint, status, time.monotonic() - started)
        return response

    async def read_json(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _HTTPError(422, f"The body is not valid JSON: {exc}", "InputError") from None

    # -- health ---------------------------------------------------------------------------------

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        states = {
            n: ("ready" if s.ready else "failed" if s.error else "loading")
            for n, s in served.items()
        }
        errors = {n: s.error for n, s in served.items() if s.error}
        ok = all(s.ready for s in served.values())
        body = {"ready": ok, "models": states, **({"errors": errors} if errors else {})}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics_endpoint():
        for s in served.values():
            if s.batcher is not None:
                metrics.set_queue_depth(s.name, s.batcher.depth)
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def list_models():
        data = []
        for n, s in served.items():
            entry = {"id": n, "object": "model", "owned_by": "fmhub", "ready": s.ready}
            if s.model is not None:
                entry.update(model_id=s.model.spec.id, task=s.model.task)
            data.append(entry)
        return {"object": "list", "data": data}

    # -- predict --------------------------------------------------------------------------------

    @app.post("/v1/models/{name:path}/predict")
    async def predict(name: str, request: Request):
        async def work():
            s = get_served(name)
            ctype = request.headers.get("content-type", "")
            try:
                if ctype.startswith("multipart/form-data"):
                    items, options = await from_multipart(await request.form()), {}
                else:
                    items, options = decode_items(await read_json(request))
            except InputError as exc:
                raise _HTTPError(422, str(exc), "InputError") from None
            results = await run_batch(s, items, options)
            return _JSON(
                {"model": s.name, "task": s.model.task, "results": [_jsonable(r) for r in results]}
            )

        return await answer(name, "predict", work)

    # -- OpenAI-compatible ----------------------------------------------------------------------

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        body = {}

        async def work():
            nonlocal body
            body = await read_json(request)
            if not isinstance(body, dict) or "model" not in body or "input" not in body:
                raise _HTTPError(
                    422, "An embeddings request needs 'model' and 'input'.", "InputError"
                )
            s = get_served(str(body["model"]), "embedding")
            texts = _texts(s.model, body["input"])
            fmt = body.get("encoding_format") or "float"
            if fmt not in ("float", "base64"):
                raise _HTTPError(
                    422, f"encoding_format must be 'float' or 'base64', got {fmt!r}.", "InputError"
                )
            vectors = await run_batch(s, texts, {})
            dims = body.get("dimensions")
            if dims is not None and dims != len(vectors[0]):
                raise _HTTPError(
                    422,
                    f"Model {s.name!r} gives {len(vectors[0])}-dimensional "
                    f"embeddings; 'dimensions' {dims!r} cannot be served.",
                    "InputError",
                )
            import numpy as np

            data = []
            for i, v in enumerate(vectors):
                v = np.asarray(v, dtype=np.float32)
                emb = (
                    base64.b64encode(v.astype("<f4").tobytes()).decode()
                    if fmt == "base64"
                    else v.tolist()
                )
                data.append({"object": "embedding", "index": i, "embedding": emb})
            tokens = _count_tokens(s.model, texts)
            return _JSON(
                {
                    "object": "list",
                    "data": data,
                    "model": s.name,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            )

        response = await answer("-", "embeddings", work)
        return response

    @app.post("/v1/completions")
    async def completions(request: Request):
        async def work():
            body = await read_json(request)
            if not isinstance(body, dict) or "model" not in body or "prompt" not in body:
                raise _HTTPError(
                    422, "A completions request needs 'model' and 'prompt'.", "InputError"
                )
            s = get_served(str(body["model"]), GENERATION_TASK)
            prompts = body["prompt"]
            prompts = [prompts] if isinstance(prompts, str) else prompts
            if (
                not isinstance(prompts, list)
                or not prompts
                or not all(isinstance(p, str) for p in prompts)
            ):
                raise _HTTPError(
                    422, "'prompt' must be a string or a non-empty list of strings.", "InputError"
                )
            options = _gen_options(body)
            if body.get("stream"):
                if len(prompts) != 1:
                    raise _HTTPError(422, "Streaming takes one prompt.", "InputError")
                return await _sse(s, prompts[0], options, chat=False)
            results = await run_batch(s, prompts, options)
            choices = [
                {"index": i, "text": _gen_text(r), "logprobs": None, "finish_reason": _finish(r)}
                for i, r in enumerate(results)
            ]
            return JSONResponse(_completion_body(s, "text_completion", choices, prompts, results))

        return await answer("-", "completions", work)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        async def work():
            body = await read_json(request)
            if not isinstance(body, dict) or "model" not in body or "messages" not in body:
                raise _HTTPError(422, "A chat request needs 'model' and 'messages'.", "InputError")
            s = get_served(str(body["model"]), GENERATION_TASK)
            prompt = _chat_messages(body["messages"])
            options = _gen_options(body)
            if body.get("stream"):
                return await _sse(s, prompt, options, chat=True)
            results = await run_batch(s, [prompt], options)
            choices = [
                {
                    "index": 0,
                    "finish_reason": _finish(results[0]),
                    "message": {"role": "assistant", "content": _gen_text(results[0])},
                }
            ]
            return JSONResponse(_completion_body(s, "chat.completion", choices, [prompt], results))

        return await answer("-", "chat.completions", work)

    async def _sse(s: Served, prompt: Any, options: dict[str, Any], chat: bool) -> Any:
        """Server-sent events: the model's ``stream`` runs on its worker thread, chunks flow out."""
        assert s.batcher is not None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done = object()
        stop = threading.Event()

        finish = {"reason": "stop"}
        try:  # bad inputs and options raise here, before any event: a plain error response
            stream = await asyncio.wait_for(
                s.batcher.call(lambda: s.model.stream(prompt, **options)), config.timeout_s
            )
        except asyncio.TimeoutError:
            raise _HTTPError(
                504, f"Model {s.name!r} did not start within {config.timeout_s:g} s.", "timeout"
            ) from None
        except (InputError, InvalidOptionError) as exc:
            raise _HTTPError(422, str(exc), type(exc).__name__) from None

        def produce():
            try:
                try:
                    for chunk in stream:
                        if stop.is_set():
                            break
                        loop.call_soon_threadsafe(queue.put_nowait, chunk)
                finally:
                    if hasattr(stream, "close"):
                        stream.close()
                finish["reason"] = _finish(getattr(stream, "result", None))
            except Exception as exc:  # noqa: BLE001 - sent as an error event
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            loop.call_soon_threadsafe(queue.put_nowait, done)

        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        kind = "chat.completion.chunk" if chat else "text_completion"

        def event(delta: str | None, finish: str | None) -> str:
            if chat:
                d = {} if delta is None else {"role": "assistant", "content": delta}
                choice = {"index": 0, "delta": d, "finish_reason": finish}
            else:
                choice = {
                    "index": 0,
                    "text": delta or "",
                    "logprobs": None,
                    "finish_reason": finish,
                }
            body = {
                "id": ident,
                "object": kind,
                "created": created,
                "model": s.name,
                "choices": [choice],
            }
            return f"data: {json.dumps(body)}\n\n"

        async def events():
            future = asyncio.ensure_future(s.batcher.call(produce))
            try:
                while True:
                    item = await asyncio.wait_for(queue.get(), config.timeout_s)
                    if item is done:
                        break
                    if isinstance(item, Exception):
                        err = {"error": {"message": str(item), "type": type(item).__name__}}
                        yield f"data: {json.dumps(err)}\n\n"
                        break
                    yield event(_gen_text(item), None)
                yield event(None, finish["reason"])
                yield "data: [DONE]\n\n"
            finally:
                stop.set()
                await future

        return StreamingResponse(events(), media_type="text/event-stream")

    limited = _Limits(app, config, metrics)
    limited.state = app.state  # type: ignore[attr-defined]
    return limited


# -- helpers of the OpenAI endpoints --------------------------------------------------------------


def _texts(model: Any, value: Any) -> list[str]:
    """OpenAI ``input``: a string, a list of strings, or token ids (decoded with the tokenizer)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    tok = getattr(getattr(model, "processor", None), "tokenizer", None)
    if isinstance(value, list) and value and tok is not None:
        rows = [value] if all(isinstance(v, int) for v in value) else value
        if all(isinstance(r, list) and all(isinstance(t, int) for t in r) for r in rows):
            return [tok.decode(r) for r in rows]
    raise _HTTPError(
        422,
        "'input' must be a string, a non-empty list of strings, or token ids "
        "(for a model with a tokenizer).",
        "InputError",
    )


def _count_tokens(model: Any, texts: list[str]) -> int:
    tok = getattr(getattr(model, "processor", None), "tokenizer", None)
    if tok is None:
        return sum(len(t.split()) for t in texts)
    return sum(len(ids) for ids in tok(texts, add_special_tokens=True)["input_ids"])


def _gen_options(body: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, option in _GEN_OPTIONS.items():
        if body.get(key) is not None:
            out[option] = body[key]
    return out


def _gen_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    text = getattr(result, "text", None)
    if text is None and isinstance(result, dict):
        text = result.get("text")
    return "" if text is None else str(text)


def _finish(result: Any) -> str:
    reason = getattr(result, "finish_reason", None)
    return reason if isinstance(reason, str) else "stop"


def _completion_body(s: Served, kind: str, choices: list, prompts: list, results: list) -> dict:
    if all(hasattr(r, "prompt_tokens") for r in results):
        prompt_tokens = sum(int(r.prompt_tokens) for r in results)
        completion_tokens = sum(int(r.completion_tokens) for r in results)
    else:
        prompt_tokens = _count_tokens(s.model, [p for p in prompts if isinstance(p, str)])
        completion_tokens = _count_tokens(s.model, [_gen_text(r) for r in results])
    return {
        "id": f"{'chatcmpl' if kind.startswith('chat') else 'cmpl'}-{uuid.uuid4().hex[:24]}",
        "object": kind,
        "created": int(time.time()),
        "model": s.name,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _chat_messages(messages: Any) -> list[dict[str, Any]]:
    """OpenAI messages as the chat input generation models take (a list of role/content dicts;
    the plugin applies the tokenizer's chat template)."""
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages)
    ):
        raise _HTTPError(
            422,
            '\'messages\' must be a non-empty list of {"role", "content"} '
            "objects with text content.",
            "InputError",
        )
    return [{"role": str(m.get("role", "user")), "content": m["content"]} for m in messages]


def env_api_key() -> str | None:
    """The bearer token from ``FMHUB_API_KEY`` (``--api-key`` wins)."""
    return os.environ.get("FMHUB_API_KEY") or None
