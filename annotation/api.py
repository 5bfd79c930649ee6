"""The labelling HTTP API and its pages, a FastAPI router mounted at ``/annotate`` (in the app beside the
Gradio tabs, or alone with ``python -m annotation serve``).

Sign-in sets the ``avs_session`` cookie and also returns the token, which API clients send as
``Authorization: Bearer TOKEN``. Every error is JSON ``{"error": message}`` with a status code: 400 bad
input, 401 not signed in, 403 not allowed, 404 not found, 409 a clash with the store (a lease that went to
someone else), 413 an upload too big.

Annotator endpoints (``/annotate/api/...``)::

    POST login {name, password} -> {token, name, role}        GET me -> {name, role, tasks: [...]}
    POST tasks/{task}/next -> {assignment | null, progress}
    POST leases/{id}/heartbeat -> {expires_at, open} (open false: already submitted or skipped)
    POST leases/{id}/submit {client_id, choice | rating, tags, dwell_ms, played_ms, hum_sha256, client_time}
         -> {ack: {label_id, client_id, duplicate}, next: assignment | null, progress}
    POST leases/{id}/skip {client_id, reason} -> {ack, next, progress}
    POST tasks/{task}/undo {client_id} -> {undone, assignment, progress}
    GET  tasks/{task}/mine -> [own labels]        POST labels/{id}/revise {client_id, choice | rating, tags}
    POST hums (the recording as the raw body) -> {sha256, duration_s, warnings}
    GET  media/{lease_id}/{slot}   (slot: video, c0..cN | mix, speech, bgm; HTTP ranges)

Admin endpoints (``/annotate/api/admin/...``, role admin only): ``tasks``, ``tasks/{task}/stats``,
``tasks/{task}/labels``, ``tasks/{task}/export``, ``users`` (GET, POST), ``users/{name}`` (DELETE),
``users/{name}/invite``, ``tasks/{task}/pauses/{name}`` (DELETE lifts a pause).
"""

import mimetypes
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field, StrictInt
from sqlalchemy.exc import IntegrityError, OperationalError

from annotation import service
from annotation.errors import AnnotationError, NotAllowed, NotFound, NotSignedIn
from annotation.store import Store, UserInfo
from media.errors import AVStudioError

COOKIE = "avs_session"
Id = Annotated[int, PathParam(ge=1, le=2**62)]  # lease and label ids in paths
WEB = Path(__file__).resolve().parent / "web"
PREFIX = "/annotate"


class Login(BaseModel):
    name: str = Field(max_length=100)
    password: str = Field(max_length=200)


class Submit(BaseModel):
    client_id: str = Field(max_length=64)
    choice: StrictInt | None = None  # pair: position in the order shown; None: none fits
    rating: StrictInt | None = None  # bgm: 1..5 (true/false or "4" are refused, not read as numbers)
    tags: list[str] = Field(default_factory=list, max_length=10)
    dwell_ms: int = Field(default=0, ge=0, le=24 * 3600 * 1000)
    played_ms: int | None = Field(default=None, ge=0, le=24 * 3600 * 1000)
    hum_sha256: str | None = Field(default=None, max_length=64)
    client_time: float | None = None


class Skip(BaseModel):
    client_id: str = Field(max_length=64)
    reason: str = Field(max_length=500)


class ClientId(BaseModel):
    client_id: str = Field(max_length=64)


class Revise(BaseModel):
    client_id: str = Field(max_length=64)
    choice: StrictInt | None = None
    rating: StrictInt | None = None
    tags: list[str] = Field(default_factory=list, max_length=10)


class NewUser(BaseModel):
    name: str = Field(max_length=100)
    role: str = "annotator"
    password: str | None = Field(default=None, max_length=200)
    hf_username: str | None = Field(default=None, max_length=100)


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def _set_cookie(response, request: Request, token: str) -> None:
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    # on a Space the app runs in an iframe of huggingface.co: the cookie must be allowed cross-site there
    response.set_cookie(COOKIE, token, httponly=True, secure=secure, samesite="none" if secure else "lax",
                        max_age=14 * 24 * 3600, path="/")


def _same_origin(request: Request) -> None:
    """Refuse a state-changing request sent by another site's page (the session cookie is SameSite=None
    on a Space, so the browser would attach it): its Origin header must be this server's."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    origin = request.headers.get("origin")
    hosts = {request.headers.get("host", ""), *request.headers.get("x-forwarded-host", "").split(",")}
    if origin and origin != "null" and origin.split("://", 1)[-1] not in {h.strip() for h in hosts if h.strip()}:
        raise NotAllowed("this request came from another site")


def make_router(store: Store) -> APIRouter:
    """The API and pages on ``store``."""
    router = APIRouter(prefix=PREFIX, dependencies=[Depends(_same_origin)])

    def user(request: Request) -> UserInfo:
        return store.session_user(_token(request))

    def admin(request: Request) -> UserInfo:
        who = user(request)
        if not who.is_admin:
            raise NotAllowed("only admins may do this")
        return who

    Annotator = Annotated[UserInfo, Depends(user)]
    Admin = Annotated[UserInfo, Depends(admin)]

    # ---------------------------------------------------------------------------------------------- pages
    @router.get("", response_class=HTMLResponse, include_in_schema=False)
    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse((WEB / "index.html").read_text(), headers={"Cache-Control": "no-store"})

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        path = WEB / Path(name).name
        if not path.is_file():
            raise NotFound("no such file")
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    @router.get("/invite/{secret}", include_in_schema=False)
    @router.get("/code/{secret}", include_in_schema=False)
    def sign_in_link(secret: str, request: Request):
        token = store.login_token(secret)
        response = RedirectResponse(f"{PREFIX}/#token={token}", status_code=303)
        _set_cookie(response, request, token)
        return response

    # ---------------------------------------------------------------------------------------- annotators
    @router.post("/api/login")
    def login(body: Login, request: Request):
        token = store.login_password(body.name, body.password)
        who = store.session_user(token)
        response = JSONResponse({"token": token, "name": who.name, "role": who.role})
        _set_cookie(response, request, token)
        return response

    @router.post("/api/logout")
    def logout(request: Request):
        token = _token(request)
        if token:
            store.logout(token)
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE, path="/")
        return response

    @router.get("/api/me")
    def me(who: Annotator) -> dict:
        tasks = [{"name": t["name"], "kind": t["kind"], "instructions": t["instructions"],
                  "min_play_s": t["min_play_s"], "progress": store.progress(who, t["name"])}
                 for t in store.tasks()]
        return {"name": who.name, "role": who.role, "tasks": tasks}

    @router.post("/api/tasks/{task}/next")
    def next_item(task: str, who: Annotator) -> dict:
        return store.next_and_progress(who, task)

    @router.post("/api/leases/{lease_id}/heartbeat")
    def heartbeat(lease_id: Id, who: Annotator) -> dict:
        expires = store.heartbeat(who, lease_id)
        return {"expires_at": expires, "open": expires is not None}

    @router.post("/api/leases/{lease_id}/submit")
    def submit(lease_id: Id, body: Submit, who: Annotator) -> dict:
        return store.submit(who, lease_id, body.client_id, choice=body.choice, rating=body.rating, tags=body.tags,
                            dwell_ms=body.dwell_ms, played_ms=body.played_ms, hum_sha256=body.hum_sha256,
                            client_time=body.client_time, then_next=True)

    @router.post("/api/leases/{lease_id}/skip")
    def skip(lease_id: Id, body: Skip, who: Annotator) -> dict:
        return store.skip(who, lease_id, body.client_id, body.reason, then_next=True)

    @router.post("/api/tasks/{task}/undo")
    def undo(task: str, body: ClientId, who: Annotator) -> dict:
        result = store.undo(who, task, body.client_id)
        return {**result, "progress": store.progress(who, task)}

    @router.get("/api/tasks/{task}/mine")
    def mine(task: str, who: Annotator) -> list[dict]:
        return store.my_labels(who, task)

    @router.post("/api/labels/{label_id}/revise")
    def revise(label_id: Id, body: Revise, who: Annotator) -> dict:
        return store.revise(who, label_id, body.client_id, choice=body.choice, rating=body.rating, tags=body.tags)

    @router.get("/api/labels/{label_id}")
    def label(label_id: Id, who: Annotator) -> dict:
        return store.label_of(who, label_id)

    @router.post("/api/hums")
    async def hum(request: Request, who: Annotator) -> dict:
        data = await service.read_limited(request.stream(), service.HUM_MAX_BYTES)
        return await run_in_threadpool(service.store_hum, store, who, data)  # decoding: off the event loop

    @router.get("/api/media/{lease_id}/{slot}")
    def media(lease_id: Id, slot: str, request: Request, t: str | None = None) -> FileResponse:
        try:  # a signed-in owner or admin, or a lease's media link (the client's <video> and <audio> use those)
            who = store.session_user(_token(request))
        except NotSignedIn:
            who = None
        if who is None and not t:
            raise NotSignedIn("sign in first")
        try:
            path = store.media_path(who, lease_id, slot, token=t)
        except NotFound:
            if who is None:  # only a media link came, and it is not valid for this lease (or has expired)
                raise NotSignedIn("this media link is not valid or has expired; reload the page") from None
            raise
        if not path.is_file():
            raise NotFound("this media file is gone from the server; skip the item and tell an admin")
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=kind, headers={"Cache-Control": "private, max-age=3600"})

    # -------------------------------------------------------------------------------------------- admins
    @router.get("/api/admin/tasks")
    def admin_tasks(_: Admin) -> list[dict]:
        return store.tasks()

    @router.get("/api/admin/tasks/{task}/stats")
    def admin_stats(task: str, _: Admin) -> dict:
        return service.stats(store, task)

    @router.get("/api/admin/tasks/{task}/labels")
    def admin_labels(task: str, _: Admin) -> list[dict]:
        return store.labels(task, history=True)

    @router.post("/api/admin/tasks/{task}/export")
    def admin_export(task: str, _: Admin) -> dict:
        return service.export_task(store, task, store.data / "exports")

    @router.get("/api/admin/users")
    def admin_users(_: Admin) -> list[dict]:
        return store.users()

    @router.post("/api/admin/users")
    def admin_add_user(body: NewUser, _: Admin) -> dict:
        who = store.add_user(body.name, role=body.role, password=body.password, hf_username=body.hf_username)
        return {"name": who.name, "role": who.role}

    @router.delete("/api/admin/users/{name}")
    def admin_remove_user(name: str, _: Admin) -> dict:
        store.remove_user(name)
        return {"removed": name}

    @router.post("/api/admin/users/{name}/invite")
    def admin_invite(name: str, request: Request, _: Admin) -> dict:
        secret = store.invite(name)
        return {"link": str(request.base_url).rstrip("/") + f"{PREFIX}/invite/{secret}"}

    @router.delete("/api/admin/tasks/{task}/pauses/{name}")
    def admin_lift(task: str, name: str, _: Admin) -> dict:
        store.lift_pause(task, name)
        return {"lifted": name}

    @router.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                      include_in_schema=False)
    def unknown(rest: str) -> None:
        raise NotFound(f"no such endpoint: /annotate/api/{rest}")

    return router


def add_error_handlers(app: FastAPI) -> None:
    """Annotation errors become ``{"error": message}`` with their status; other AV Studio errors are 400."""

    @app.exception_handler(AVStudioError)
    async def _handle(_request: Request, err: AVStudioError) -> JSONResponse:
        status = getattr(err, "status", 400) if isinstance(err, AnnotationError) else 400
        return JSONResponse({"error": str(err)}, status_code=status)

    @app.exception_handler(IntegrityError)
    async def _clash(_request: Request, _err: IntegrityError) -> JSONResponse:
        # two requests made the same new thing at once (a user name, a task, a hum): the other one won
        return JSONResponse({"error": "that clashes with something just made by another request (a name "
                                      "already taken?); reload and try again"}, status_code=409)

    @app.exception_handler(OperationalError)
    async def _busy(_request: Request, err: OperationalError) -> JSONResponse:
        # SQLite's write lock waited past its busy timeout, or the database server is unreachable: nothing
        # was stored, and a retry with the same request id is safe
        return JSONResponse({"error": "the server is busy; nothing was stored, try again in a moment"},
                            status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "the request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}".replace("Input should", "should")},
                            status_code=400)


def mount(app: FastAPI, store: Store) -> FastAPI:
    """Add the labelling API and pages (``/annotate``) and their error handling to ``app``."""
    add_error_handlers(app)
    app.include_router(make_router(store))
    return app


def create_app(store: Store | None = None) -> FastAPI:
    """The labelling server alone (no Gradio, no models): ``python -m annotation serve``."""
    store = store or Store()
    app = mount(FastAPI(title="AV Studio annotation"), store)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(PREFIX + "/")

    app.state.store = store
    return app


__all__: list[Any] = ["COOKIE", "add_error_handlers", "create_app", "make_router", "mount"]
