"""The labelling HTTP API (annotation/api.py) on SQLite: who sees what, and one clear ``{"error": ...}`` for
bad input. The store's own rules are tested on both databases in test_annotation_store.py."""
from __future__ import annotations

import asyncio
import json
import uuid
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

import annotation.store as store_module
from annotation.api import create_app
from annotation.service import HUM_MAX_BYTES
from annotation.store import Store

API = "/annotate/api"
PASSWORDS = {"root": "root-password", "alice": "alice-password", "bob": "bob-password"}


def cid() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def api(tmp_path, monkeypatch):
    monkeypatch.setenv("AVSTUDIO_DATA", str(tmp_path / "data"))
    store = Store(f"sqlite:///{tmp_path / 'api.db'}", data=tmp_path / "data")
    media = tmp_path / "media"
    media.mkdir()
    pair = []
    for k in range(3):
        for name in (f"v{k}.mp4", f"a{k}.wav", f"b{k}.wav"):
            (media / name).write_bytes(f"{name} bytes".encode())
        pair.append({"key": f"p{k}", "payload": {"video": f"v{k}.mp4", "candidates": [f"a{k}.wav", f"b{k}.wav"]}})
    store.create_task("pairs", "pair", pair, media_root=media, per_item=2, gold_rate=0, lease_s=60)
    store.create_task("solo", "pair", pair[:1], media_root=media, per_item=1, gold_rate=0, lease_s=60)
    fit = [{"key": f"f{k}", "payload": {"speech": f"s{k}.wav", "bgm": f"m{k}.wav", "gains": {"bgm_db": -6.0},
                                        "prepared": {s: f"mixes/f{k}_{s}.wav" for s in ("mix", "speech", "bgm")}}}
           for k in range(2)]
    store.create_task("fit", "bgm", fit, media_root=media, per_item=2, gold_rate=0, lease_s=60)
    store.add_user("root", role="admin", password=PASSWORDS["root"])
    store.add_user("alice", password=PASSWORDS["alice"])
    store.add_user("bob", password=PASSWORDS["bob"])
    client = TestClient(create_app(store))
    tokens = {}
    for name, password in PASSWORDS.items():
        r = client.post(f"{API}/login", json={"name": name, "password": password})
        assert r.status_code == 200, r.text
        tokens[name] = r.json()["token"]
    client.cookies.clear()  # sign-in also sets the session cookie: each request below says who it is itself
    yield SimpleNamespace(client=client, store=store, tokens=tokens, media=media,
                          auth=lambda name: {"Authorization": f"Bearer {tokens[name]}"})
    client.close()
    store.close()


def assert_error(response, status: int, phrase: str = "") -> str:
    """One clear JSON error: ``{"error": message}`` and nothing else, with ``status``."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"].strip(), body
    assert phrase.lower() in body["error"].lower(), body
    return body["error"]


def next_item(api, name: str, task: str = "pairs") -> dict:
    r = api.client.post(f"{API}/tasks/{task}/next", headers=api.auth(name))
    assert r.status_code == 200, r.text
    return r.json()["assignment"]


def submit(api, name: str, lease_id: int, **body):
    return api.client.post(f"{API}/leases/{lease_id}/submit", headers=api.auth(name),
                           json={"client_id": cid(), **body})


ADMIN = [("GET", "/admin/tasks", None), ("GET", "/admin/tasks/pairs/stats", None),
         ("GET", "/admin/tasks/pairs/labels", None), ("POST", "/admin/tasks/pairs/export", None),
         ("GET", "/admin/users", None), ("POST", "/admin/users", {"name": "eve", "password": "eve-password"}),
         ("POST", "/admin/users/bob/invite", None), ("DELETE", "/admin/tasks/pairs/pauses/bob", None),
         ("DELETE", "/admin/users/bob", None)]


# ----------------------------------------------------------------------------------------------------
# who sees what
# ----------------------------------------------------------------------------------------------------
def test_no_session_gets_401(api):
    lease = next_item(api, "alice")
    label = submit(api, "alice", lease["lease_id"], choice=0).json()["ack"]["label_id"]
    annotator = [("GET", "/me", None), ("POST", "/tasks/pairs/next", None),
                 ("POST", f"/leases/{lease['lease_id']}/heartbeat", None),
                 ("POST", f"/leases/{lease['lease_id']}/submit", {"client_id": cid(), "choice": 0}),
                 ("GET", f"/labels/{label}", None), ("GET", f"/media/{lease['lease_id']}/video", None),
                 ("GET", "/tasks/pairs/mine", None), ("POST", "/hums", None)]
    for headers in ({}, {"Authorization": "Bearer not-a-session"}, {"Authorization": f"Bearer {cid()}"}):
        for method, path, body in annotator + ADMIN:
            r = api.client.request(method, API + path, json=body, headers=headers)
            assert_error(r, 401)
    for method, path, body in annotator + ADMIN:  # no way in through parameters either
        r = api.client.request(method, API + path, json=body, params={"who": "root", "_": "root", "t": ""})
        assert_error(r, 401)
    r = api.client.get(f"{API}/media/{lease['lease_id']}/video", params={"t": "not-a-session"})
    assert_error(r, 401)
    assert_error(api.client.post(f"{API}/login", json={"name": "alice", "password": "wrong-password"}), 401,
                 "wrong user name or password")
    assert {u["name"] for u in api.store.users() if u["active"]} == {"root", "alice", "bob"}


def test_an_annotator_gets_403_on_every_admin_endpoint(api):
    for method, path, body in ADMIN:
        r = api.client.request(method, API + path, json=body, headers=api.auth("alice"))
        assert_error(r, 403, "only admins")
    users = {u["name"]: u["active"] for u in api.store.users()}
    assert users == {"root": True, "alice": True, "bob": True}, "a refused admin request changed something"


def test_an_admin_gets_200(api):
    lease = next_item(api, "alice")
    assert submit(api, "alice", lease["lease_id"], choice=1).status_code == 200
    for method, path, body in ADMIN:
        if path.endswith("/export"):
            continue  # test_an_admin_can_export
        r = api.client.request(method, API + path, json=body, headers=api.auth("root"))
        assert r.status_code == 200, (path, r.text)
        if path.endswith("/labels"):
            assert [row["annotator"] for row in r.json()] == ["alice"]
        if path.endswith("/invite"):
            assert "/annotate/invite/" in r.json()["link"]
    assert {u["name"]: u["active"] for u in api.store.users()} == \
        {"root": True, "alice": True, "bob": False, "eve": True}


def test_an_admin_can_export(api):
    pytest.importorskip("annotation.checks", reason="annotation/checks.py (hum checks, used by the export)")
    pytest.importorskip("datasets")
    lease = next_item(api, "alice")
    assert submit(api, "alice", lease["lease_id"], choice=1).status_code == 200
    r = api.client.post(f"{API}/admin/tasks/pairs/export", headers=api.auth("root"))
    assert r.status_code == 200, r.text


def test_another_users_label_is_not_found(api):
    lease = next_item(api, "alice")
    label = submit(api, "alice", lease["lease_id"], choice=0).json()["ack"]["label_id"]
    own = api.client.get(f"{API}/labels/{label}", headers=api.auth("alice")).json()
    assert own["label_id"] == label and "gold_answer" not in own and "is_gold" not in own
    assert api.client.get(f"{API}/labels/{label}", headers=api.auth("root")).status_code == 200
    theirs = assert_error(api.client.get(f"{API}/labels/{label}", headers=api.auth("bob")), 404)
    missing = assert_error(api.client.get(f"{API}/labels/{label + 1000}", headers=api.auth("bob")), 404)
    assert theirs == missing, "a 404 for someone else's label must read like one for no label at all"
    r = api.client.post(f"{API}/labels/{label}/revise", headers=api.auth("bob"), json={"client_id": cid(), "choice": 1})
    assert_error(r, 404)
    assert api.client.get(f"{API}/tasks/pairs/mine", headers=api.auth("bob")).json() == []


def test_another_users_media_and_lease_are_not_found(api):
    assignment = next_item(api, "alice")
    lease = assignment["lease_id"]
    own = api.client.get(f"{API}/media/{lease}/video", headers=api.auth("alice"))
    assert own.status_code == 200 and own.content.endswith(b"bytes")
    # the <video>/<audio> elements use the lease's signed media link, never the session token
    assert api.client.get(f"{API}/media/{lease}/c1", params={"t": assignment["media_token"]}).status_code == 200
    assert_error(api.client.get(f"{API}/media/{lease}/c1", params={"t": api.tokens["alice"]}), 401)
    assert_error(api.client.get(f"{API}/media/{lease + 1}/c1", params={"t": assignment["media_token"]}), 401)
    assert api.client.get(f"{API}/media/{lease}/video", headers=api.auth("root")).status_code == 200
    for slot in ("video", "c0", "c1"):
        assert_error(api.client.get(f"{API}/media/{lease}/{slot}", headers=api.auth("bob")), 404)
        assert_error(api.client.get(f"{API}/media/{lease}/{slot}", params={"t": api.tokens["bob"]}), 401)
    assert_error(api.client.get(f"{API}/media/{lease}/c9", headers=api.auth("alice")), 404)
    sneaky = api.client.get(f"{API}/media/{lease}/..%2F..%2Fapi.db", headers=api.auth("alice"))
    assert sneaky.status_code == 404 and b"SQLite" not in sneaky.content
    bob = api.auth("bob")
    assert_error(api.client.post(f"{API}/leases/{lease}/heartbeat", headers=bob), 404)
    assert_error(api.client.post(f"{API}/leases/{lease}/submit", headers=bob, json={"client_id": cid()}), 404)
    r = api.client.post(f"{API}/leases/{lease}/skip", headers=bob, json={"client_id": cid(), "reason": "x"})
    assert_error(r, 404)
    assert api.store.labels("pairs", history=True) == []


# ----------------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------------
def test_a_duplicate_submit_gets_the_first_ack(api):
    lease = next_item(api, "alice")["lease_id"]
    body = {"client_id": cid(), "choice": 1, "dwell_ms": 2000}
    first = api.client.post(f"{API}/leases/{lease}/submit", headers=api.auth("alice"), json=body)
    again = api.client.post(f"{API}/leases/{lease}/submit", headers=api.auth("alice"), json=body)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json()["ack"]["duplicate"] is False
    assert again.json()["ack"] == {**first.json()["ack"], "duplicate": True}
    assert again.json()["next"]["lease_id"] == first.json()["next"]["lease_id"], "a retry must not take a new item"
    rows = [r for r in api.store.labels("pairs", history=True) if r["client_id"] == body["client_id"]]
    assert len(rows) == 1


def test_a_submit_after_the_lease_went_to_someone_else_is_409(api, monkeypatch):
    now = [store_module._now()]
    monkeypatch.setattr(store_module, "_now", lambda: now[0])
    lease = next_item(api, "alice", "solo")["lease_id"]
    now[0] += 61
    taken = next_item(api, "bob", "solo")
    assert taken is not None
    r = submit(api, "alice", lease, choice=0)
    message = assert_error(r, 409, "ran out")
    assert "not stored" in message
    assert submit(api, "bob", taken["lease_id"], choice=1).status_code == 200
    assert [row["annotator"] for row in api.store.labels("solo", history=True)] == ["bob"]


def test_a_huge_hum_upload_is_413(api):
    chunk = b"\0" * 65536

    def body():
        for _ in range(HUM_MAX_BYTES // len(chunk) + 20):  # a little over 5 MB, as a stream (no length)
            yield chunk

    headers = {**api.auth("alice"), "Content-Type": "audio/webm"}
    assert_error(api.client.post(f"{API}/hums", headers=headers, content=body()), 413, "MB")


def test_a_huge_hum_upload_is_refused_without_reading_it_whole(api):
    """Straight through ASGI, counting what the app reads: it stops soon after the limit (the test client
    would read the whole stream itself first)."""
    app = api.client.app
    chunk, total = b"\0" * 65536, 50_000_000
    read, sent = [0], []

    async def receive():
        if read[0] >= total:
            return {"type": "http.disconnect"}
        read[0] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": read[0] < total}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": f"{API}/hums", "raw_path": f"{API}/hums".encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"content-type", b"audio/webm"),
                         (b"authorization", f"Bearer {api.tokens['alice']}".encode())],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 413 and set(json.loads(body)) == {"error"}
    assert read[0] <= HUM_MAX_BYTES + 2 * len(chunk), f"read {read[0]} bytes of a {total}-byte upload"


def test_a_bad_rating_or_choice_is_400(api):
    lease = next_item(api, "alice", "fit")["lease_id"]
    for rating in (0, 6, 7, -1, None):
        assert_error(submit(api, "alice", lease, rating=rating), 400, "rate the fit from 1 to 5")
    assert_error(submit(api, "alice", lease, rating=3, tags=["too loud", "made-up"]), 400, "unknown reason tags")
    pair = next_item(api, "alice")["lease_id"]
    assert_error(submit(api, "alice", pair, choice=2), 400, "choose a track 1 to 2")
    assert_error(submit(api, "alice", pair, rating=3), 400, "takes a choice")
    assert_error(api.client.post(f"{API}/leases/{pair}/submit", headers=api.auth("alice"),
                                 json={"client_id": "short", "choice": 0}), 400, "request id")
    assert_error(api.client.post(f"{API}/leases/{pair}/skip", headers=api.auth("alice"),
                                 json={"client_id": cid(), "reason": " "}), 400, "why")
    assert api.store.labels("fit", history=True) == [] and api.store.labels("pairs", history=True) == []
    assert submit(api, "alice", lease, rating=4, tags=["too loud"]).status_code == 200


def test_a_boolean_rating_or_choice_is_refused(api):
    """JSON ``true`` is not a rating of 1 (pydantic's lax mode turns it into 1 before the store's own
    bool check can see it)."""
    lease = next_item(api, "alice", "fit")["lease_id"]
    assert_error(submit(api, "alice", lease, rating=True), 400)
    pair = next_item(api, "alice")["lease_id"]
    assert_error(submit(api, "alice", pair, choice=True), 400)
    assert api.store.labels("fit", history=True) == [] and api.store.labels("pairs", history=True) == []


def test_malformed_bodies_get_the_error_json(api):
    """Every error is ``{"error": message}`` (the API's docstring), request validation included."""
    lease = next_item(api, "alice", "fit")["lease_id"]
    url, headers = f"{API}/leases/{lease}/submit", api.auth("alice")
    bad = [api.client.post(url, headers=headers, json={"client_id": cid(), "rating": "five"}),
           api.client.post(url, headers=headers, json={"client_id": "x" * 65, "rating": 3}),
           api.client.post(url, headers=headers, json={"rating": 3}),
           api.client.post(url, headers={**headers, "Content-Type": "application/json"}, content=b"{not json"),
           api.client.post(f"{API}/login", json={"name": "alice"})]
    for r in bad:
        assert_error(r, 400)
    assert_error(api.client.get(f"{API}/no-such-endpoint", headers=headers), 404)
    assert api.store.labels("fit", history=True) == []


def test_a_request_from_another_site_is_refused(api):
    """The session cookie is SameSite=None on a Space: a state-changing request must come from this site."""
    url, headers = f"{API}/tasks/pairs/next", api.auth("alice")
    assert_error(api.client.post(url, headers={**headers, "Origin": "https://evil.example"}), 403, "another site")
    assert api.client.post(url, headers={**headers, "Origin": "http://testserver"}).status_code == 200
    proxied = {**headers, "Origin": "https://me-labels.hf.space", "X-Forwarded-Host": "me-labels.hf.space"}
    assert api.client.post(url, headers=proxied).status_code == 200
    assert api.client.get(f"{API}/me", headers={**headers, "Origin": "https://evil.example"}).status_code == 200
