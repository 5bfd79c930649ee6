"""The Label and Admin tabs' server side: who the visitor is, the hidden Admin tab and its guarded actions,
and the Hugging Face sign-in bridge (a one-time code for an account an admin added)."""
from __future__ import annotations

import gradio as gr
import pytest
from starlette.requests import Request

from annotation import admin_tab, label_tab, service
from annotation.api import COOKIE
from annotation.store import Store


def page_request(cookie: str | None = None) -> gr.Request:
    headers = [(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie else []
    return gr.Request(Request({"type": "http", "method": "POST", "path": "/", "headers": headers,
                               "query_string": b"", "server": ("127.0.0.1", 7860), "scheme": "http"}))


class Profile:  # what gr.OAuthProfile carries that the tabs read
    def __init__(self, username: str):
        self.username = username


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    opened = Store(f"sqlite:///{tmp_path / 'tabs.db'}", data=tmp_path)
    monkeypatch.setattr(service, "store", lambda: opened)
    opened.add_user("boss", role="admin", password="boss-password", hf_username="boss-hf")
    opened.add_user("ann", password="ann-password", hf_username="ann-hf")
    items = [{"key": "k", "payload": {"video": "v.mp4", "candidates": ["a.flac", "b.flac"]}}]
    opened.create_task("pairs", "pair", items, media_root=tmp_path)
    return opened


def test_admin_tab_shows_only_for_admins(store):
    boss = store.login_password("boss", "boss-password")
    ann = store.login_password("ann", "ann-password")
    tab, tasks = admin_tab.show(page_request(boss), None)
    assert tab.visible is True and [c[0] for c in tasks.choices] == ["pairs"]
    for visitor in (ann, None, "forged-token"):
        assert admin_tab.show(page_request(visitor), None)[0].visible is False


def test_admin_actions_check_the_role_on_the_server(store):
    ann = store.login_password("ann", "ann-password")
    add = admin_tab._guard(admin_tab.add_user)
    with pytest.raises(gr.Error, match="Only admins"):
        add("mallory", "admin", "", "", page_request(ann), None)
    with pytest.raises(gr.Error, match="Only admins"):
        admin_tab._guard(admin_tab.task_view)("pairs", page_request(None), None)
    assert "mallory" not in [u["name"] for u in store.users()]
    boss = store.login_password("boss", "boss-password")
    users, message = add("carol", "annotator", "", "", page_request(boss), None)
    assert "carol" in [row[0] for row in users] and "Added carol" in message
    summary, annotators, queue = admin_tab._guard(admin_tab.task_view)("pairs", page_request(boss), None)
    assert "0 labels" in summary and annotators == [] and queue == []
    with pytest.raises(gr.Error, match="no user named"):  # a store error becomes its message, no traceback
        admin_tab._guard(admin_tab.remove_user)("nobody", page_request(boss), None)


def test_hugging_face_sign_in_bridge(store):
    assert "/annotate/code/" in label_tab.sign_in(Profile("ann-hf"))
    assert label_tab.sign_in(Profile("stranger")).count("/annotate/\"") == 1  # no account: the sign-in page
    assert label_tab.sign_in(None).count("/annotate/\"") == 1
    code = label_tab.sign_in(Profile("ann-hf")).split("/annotate/code/")[1].split('"')[0]
    assert store.session_user(store.login_token(code)).name == "ann"
    with pytest.raises(Exception, match="already used"):
        store.login_token(code)
    assert admin_tab.visitor(page_request(None), Profile("boss-hf")).is_admin
    assert admin_tab.visitor(page_request(None), Profile("boss")) is None  # a Hugging Face "boss" is not ours


def test_admin_tab_creates_a_task_and_lists_refusals(store, media, tmp_path):
    boss = store.login_password("boss", "boss-password")
    root = tmp_path / "media"
    (root / "video").mkdir(parents=True)
    (root / "music").mkdir()
    import shutil

    shutil.copyfile(min((media / "video").glob("*.mp4")), root / "video" / "a.mp4")
    for path in sorted((media / "music").glob("*.flac"))[:2]:
        shutil.copyfile(path, root / "music" / path.name)
    (root / "music" / "broken.flac").write_bytes(b"not audio")
    report = admin_tab._guard(admin_tab.create)("clips", "pair", str(root), "video/*", 2, 0.0, "",
                                                page_request(boss), None)
    assert report.startswith("Task clips: 1 items") and "refused music/broken.flac" in report
    with pytest.raises(gr.Error, match="exists already"):
        admin_tab._guard(admin_tab.create)("clips", "pair", str(root), "", 2, 0.0, "", page_request(boss), None)
    assert admin_tab.users_on_load(page_request(None), None) == []  # no error for a visitor who is not an admin


def test_an_unreachable_database_stops_start_up_with_one_line(monkeypatch):
    from annotation.errors import AnnotationError

    monkeypatch.setenv("AVSTUDIO_DB_URL", "postgresql+psycopg://nobody@127.0.0.1:1/labels")
    with pytest.raises(AnnotationError, match="cannot open the label store"):
        service.store.__wrapped__()  # what the app's start-up calls (uncached)
