"""The FastAPI application: routes, authentication, the body-size limit, and error answers.

Every refusal is one line of JSON, `{"error": "..."}`, with a 4xx status: 400 for an input
the library refuses (one class, empty text, bad base64, a corrupt image, an unknown encoder), 401
without the token, 404 for an unknown task, 409 for changing a task served from a model folder,
413 past a limit, 415 for a body not sent as JSON, 422 for a body of the wrong JSON shape. An
error of the service's own is a 500 with one line too; its traceback goes to the log, never to the client."""
from __future__ import annotations

import hmac
import sys
import time
from typing import Annotated, Any, Optional, Union

import anyio
import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from starlette.exceptions import HTTPException

from quickadapt import __version__
from quickadapt.errors import first_line
from quickadapt.serve.errors import ApiError
from quickadapt.serve.tasks import TaskStore

Label = Union[Annotated[StrictStr, Field(min_length=1)], StrictInt]  # as a class name: text or a whole number


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key ("exmaples") is refused by name, not ignored


class Example(Strict):
    text: Any = None  # checked as the library reads it (inputs.py), so the message names the example
    image: Any = None  # base64 of an image file (png, jpeg, ...)
    label: Any  # text or a whole number, all of one kind (tasks.check_examples)


class NewTask(Strict):
    name: StrictStr = ""
    encoder: Optional[StrictStr] = None  # None: minilm for text, efficientnet-lite0 for images
    strategy: Optional[StrictStr] = None  # None: probe
    # folds of the accuracy estimate (0: none, the fast default); 2 or more also calibrates abstain's threshold
    cv: Annotated[StrictInt, Field(ge=0, le=10)] = 0
    examples: list[Example]


class MoreExamples(Strict):
    examples: list[Example]


class PredictRequest(Strict):
    inputs: list[Any]
    top_k: Optional[Annotated[StrictInt, Field(ge=1)]] = None
    # the likeliest classes `scores` lists (None: all of a task's classes up to tasks.MAX_SCORES, that many of more)
    max_scores: Optional[Annotated[StrictInt, Field(ge=1)]] = None
    abstain: StrictBool = False
    # implies abstain, as the command line's --threshold does; strict: `true` was read as 1.0 and withheld every answer
    threshold: Optional[StrictFloat] = None
    none_label: Label = "__none__"


def create_app(store: TaskStore | None = None, *, token: str | None = None) -> FastAPI:
    """The service over `store`'s tasks. With `token`, every /v1 request must carry
    `Authorization: Bearer <token>`."""
    store = store or TaskStore()
    app = FastAPI(title="quickadapt", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, max_bytes=store.limits.max_body_bytes, max_mb=store.limits.max_body_mb)
    if token is not None:  # added last, so outermost: asked before a body is read
        app.add_middleware(TokenCheck, token=token)
    app.state.store = store

    v1 = APIRouter(prefix="/v1")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "version": __version__, "tasks": len(store.all())}

    # fits run one at a time (the store's fit lock); the queued ones wait here, in the event loop, not
    # in a worker thread each: 70 queued POST /v1/tasks held all 40 of the pool's threads, and a
    # GET /healthz or a predict sent meanwhile waited 13.7 s for one
    fits = anyio.CapacityLimiter(1)

    @v1.post("/tasks", status_code=201)
    async def create_task(body: NewTask):
        examples = [e.model_dump() for e in body.examples]
        task = await anyio.to_thread.run_sync(
            lambda: store.create(body.name, examples, body.encoder, body.strategy, body.cv), limiter=fits)
        return task.describe()

    @v1.get("/tasks")
    def list_tasks():
        return {"tasks": [t.describe() for t in store.all()]}

    @v1.get("/tasks/{task_id}")
    def get_task(task_id: str):
        return store.get(task_id).describe()

    @v1.delete("/tasks/{task_id}")
    def delete_task(task_id: str):
        store.delete(task_id)
        return {"task_id": task_id, "deleted": True}

    @v1.post("/tasks/{task_id}/examples")
    async def add_examples(task_id: str, body: MoreExamples):
        examples = [e.model_dump() for e in body.examples]
        task = await anyio.to_thread.run_sync(lambda: store.add_examples(task_id, examples), limiter=fits)
        return task.describe()

    @v1.post("/tasks/{task_id}/predict")
    def predict(task_id: str, body: PredictRequest):
        started = time.perf_counter()
        predictions = store.predict(task_id, body.inputs, top_k=body.top_k, abstain=body.abstain,
                                    threshold=body.threshold, none_label=body.none_label,
                                    max_scores=body.max_scores)
        return {"task_id": task_id, "predictions": predictions,
                "predict_ms": round((time.perf_counter() - started) * 1000, 1)}

    app.include_router(v1)

    @app.exception_handler(ApiError)
    def api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    def wrong_shape(request: Request, exc: RequestValidationError):
        kind = request.headers.get("content-type", "")
        media = kind.split(";")[0].strip().lower()
        if request.method == "POST" and media != "application/json" and not media.endswith("+json"):
            # curl's -d alone sends a form's type, and FastAPI then reads no JSON at all: "input should
            # be a valid dictionary" would not say why
            return JSONResponse({"error": f"send the body as JSON with the header Content-Type: application/json "
                                          f"(curl: -H 'Content-Type: application/json'); got "
                                          f"{kind or 'no Content-Type'}"}, status_code=415)
        return JSONResponse({"error": shape_error(exc.errors())}, status_code=422)

    @app.exception_handler(HTTPException)
    def http_error(request: Request, exc: HTTPException):  # unknown paths (404), wrong methods (405)
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path} (see docs/serve.md)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        elif exc.status_code == 400 and exc.__cause__ is not None:
            # a body that json could not decode for another reason than its syntax (bytes not UTF-8, arrays
            # nested past the recursion limit, a number of over 4,300 digits): fastapi's 400 'There was an
            # error parsing the body' said none of it; this is the 422 of any body that is not JSON
            return JSONResponse({"error": f"the request body is not valid JSON ({first_line(exc.__cause__)})"},
                                status_code=422)
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    def internal_error(request: Request, exc: Exception):
        # on stderr even with --quiet; uvicorn logs the traceback after this answer is sent
        print(f"error: {request.method} {request.url.path}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); the service's log has the details"},
                            status_code=500)

    return app


UNION_TAGS = {"constrained-str", "str", "int"}


def shape_error(errors) -> str:
    """pydantic's list of problems with a body as one line: the first, where it is, and how many more."""
    # a misspelt key first: it explains the "required" of the key meant
    errors = sorted(errors, key=lambda e: e.get("type") != "extra_forbidden")
    first = errors[0]
    # without "body", and without a union's member tags (`constrained-str`, `int`), which are no field of the client's
    loc = [p for p in first.get("loc", ()) if p != "body" and not (isinstance(p, str) and p in UNION_TAGS)]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    kind = first.get("type", "")
    if kind == "json_invalid":
        message = f"the request body is not valid JSON ({first.get('ctx', {}).get('error', first.get('msg'))})"
    elif kind == "missing" and not where:
        message = "the request body is missing: send a JSON object (Content-Type: application/json)"
    elif kind == "extra_forbidden":
        message = f"{where}: unknown field"
    elif kind == "missing":
        message = f"{where}: required"
    elif kind in ("model_attributes_type", "dict_type"):
        message = f"{where or 'the request body'} must be a JSON object"
    else:
        msg = first.get("msg", "invalid")
        message = f"{where}: {msg[0].lower() + msg[1:]}" if where else f"the request body: {msg[0].lower() + msg[1:]}"
    more = len(errors) - 1
    return message + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


class TokenCheck:
    """Refuse (401) a /v1 request without `Authorization: Bearer <token>` before anything else
    reads it: as a route's dependency the check came after the body was read (up to --max-body-mb
    of it held for a client without the token) and parsed (a malformed body answered 422, not 401)."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token.encode()  # as a client's UTF-8 header sends it

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/v1" or path.startswith("/v1/")):
            return await self.app(scope, receive, send)
        # the header's bytes as sent: decoded as latin-1 (starlette's way), a non-ASCII token sent as
        # UTF-8 never matched
        scheme, _, given = dict(scope.get("headers") or []).get(b"authorization", b"").partition(b" ")
        # compare_digest: the time taken says nothing of how much of the token was right
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token):
            return await self.app(scope, receive, send)
        response = JSONResponse({"error": "missing or wrong token: send the header 'Authorization: Bearer "
                                          "<QUICKADAPT_TOKEN>'"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


class BodyLimit:
    """Refuse (413) a request body over `max_bytes` before the application reads it: by its
    Content-Length, and, for a body sent without one (chunked), as it arrives."""

    def __init__(self, app, max_bytes: int, max_mb: float):
        self.app = app
        self.max_bytes = max_bytes
        self.max_mb = max_mb  # the limit as given: back from whole bytes, 0.3 MB read 0.299999, 0.0001 MB 9.91821e-05

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self.refuse(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self.refuse(send)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def refuse(self, send):
        response = JSONResponse({"error": f"the request body is over the limit of {self.max_mb:.15g} MB "
                                          "(--max-body-mb); send fewer or smaller inputs a call"}, status_code=413)
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})
