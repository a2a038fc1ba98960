"""The explorer's ASGI app: the page (three fixed files, no path from a request reaches the file system) and its JSON
endpoints, each a thin wrapper around one call of ``calls.py`` run in a worker thread.

Errors come back as ``{"error": message}``: 400 for a request the page should not have sent (or an upload that is
refused), 503 when the server or the model set is not there (the page then polls ``/api/sets`` until it is back).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sae.core.errors import InvalidInputError, SAEError
from sae.serving.explorer import calls
from sae.serving.explorer.calls import RequestError
from sae.serving.explorer.sets import ModelSets
from sae.serving.explorer.uploads import MAX_UPLOAD_BYTES, UploadError, check_bytes, read_upload

STATIC = Path(__file__).resolve().parent / "static"
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/explorer.js": ("explorer.js", "text/javascript; charset=utf-8"),
    "/explorer.css": ("explorer.css", "text/css; charset=utf-8"),
}
MAX_JSON_BYTES = 1 << 20
MAX_DRAINED_BYTES = 64 << 20  # an oversized body is read this far at most before the refusal
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:",
}


class BodyTooLarge(SAEError, ValueError):
    pass


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused above ``limit`` bytes. What is over the limit is read and dropped (up to
    MAX_DRAINED_BYTES), so that the browser gets the refusal as an answer, not as a connection reset."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > MAX_DRAINED_BYTES:
            break
    if size > limit:
        raise BodyTooLarge(
            f"the request is too large ({size / 2**20:.1f} MiB; at most {limit / 2**20:.0f} MiB)"
            if size <= MAX_DRAINED_BYTES
            else f"the request is too large (more than "
            f"{MAX_DRAINED_BYTES / 2**20:.0f} MiB; at most {limit / 2**20:.0f} MiB)"
        )
    return b"".join(chunks)


async def _json(request: Request) -> dict:
    # JSON only: a form or text/plain POST from another site (a "simple" request, sent without asking) is refused.
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise RequestError("the request must be JSON (Content-Type: application/json)")
    try:
        body = json.loads(await _body(request, MAX_JSON_BYTES) or b"{}")
    except json.JSONDecodeError as e:
        raise RequestError(f"the request is not JSON ({e.msg})") from None
    if not isinstance(body, dict):
        raise RequestError("the request must be a JSON object")
    return body


def _error(e: Exception) -> JSONResponse:
    message = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, (RequestError, UploadError, BodyTooLarge, InvalidInputError)) or (
        isinstance(e, ValueError) and not isinstance(e, SAEError)
    ):
        status = 413 if isinstance(e, BodyTooLarge) or "too large" in message else 400
    else:
        status = 503
    return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)


def allowed_hosts(host: str) -> list[str]:
    """Host headers the app answers: loopback names (and ``host``), so that a page of another site cannot reach it
    through a DNS name rebound to 127.0.0.1; any name when bound to every address."""
    return ["*"] if host in ("0.0.0.0", "::") else sorted({"127.0.0.1", "localhost", "[::1]", "::1", host})


def build_app(sets: ModelSets, host: str = "127.0.0.1") -> Starlette:
    """The app over ``sets`` (the server's address and the offered model sets), bound to ``host``."""

    async def page(request: Request) -> Response:
        name, media_type = PAGE_FILES[request.url.path]
        return Response((STATIC / name).read_bytes(), media_type=media_type, headers=SECURITY_HEADERS)

    async def list_sets(request: Request) -> Response:
        try:
            described = await run_in_threadpool(sets.describe)
        except Exception as e:
            return _error(e)
        return JSONResponse({"url": sets.url, "sets": described}, headers=SECURITY_HEADERS)

    def model_call(call):
        async def endpoint(request: Request) -> Response:
            name = ""
            try:
                body = await _json(request)
                name = body.get("model", "")
                client = sets.client(name)
                result = await run_in_threadpool(call, client, body)
            except Exception as e:
                if not isinstance(e, ValueError) and isinstance(name, str):
                    sets.forget(name)  # the set may come back reloaded: read its configs again then
                return _error(e)
            return JSONResponse(result, headers=SECURITY_HEADERS)

        return endpoint

    async def upload(request: Request) -> Response:
        name = request.query_params.get("model", "")
        try:
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/octet-stream":
                raise UploadError("send the image's bytes as application/octet-stream")
            data = await _body(request, MAX_UPLOAD_BYTES)
            check_bytes(data)  # refused before the server is asked anything
            client = sets.client(name)
            side = await run_in_threadpool(lambda: int(client.model_info("encode").input("IMAGE").dims[0]))
            uploaded = await run_in_threadpool(read_upload, data, side)
            result = await run_in_threadpool(calls.encode, client, uploaded.image)
        except Exception as e:
            if not isinstance(e, ValueError):
                sets.forget(name)
            return _error(e)
        return JSONResponse({**result, "note": uploaded.note}, headers=SECURITY_HEADERS)

    async def npz(request: Request) -> Response:
        try:
            data = calls.npz_bytes(await _json(request))
        except Exception as e:
            return _error(e)
        return Response(
            data,
            media_type="application/octet-stream",
            headers={**SECURITY_HEADERS, "Content-Disposition": 'attachment; filename="samples.npz"'},
        )

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)

    routes = [Route(path, page, methods=["GET"]) for path in PAGE_FILES] + [Route("/favicon.ico", no_icon)]
    routes += [
        Route("/api/sets", list_sets, methods=["GET"]),
        Route("/api/sample", model_call(calls.hybrid), methods=["POST"]),
        Route("/api/prior", model_call(calls.prior), methods=["POST"]),
        Route("/api/decode", model_call(calls.decode), methods=["POST"]),
        Route("/api/traverse", model_call(calls.traversals), methods=["POST"]),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/npz", npz, methods=["POST"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        sets.close()

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))],
    )


def serve(url: str, models: tuple[str, ...] | None, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve the explorer for the server at ``url`` on http://HOST:PORT until interrupted."""
    import uvicorn

    uvicorn.run(build_app(ModelSets(url, models), host), host=host, port=port, log_level="warning")
