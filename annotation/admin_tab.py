"""The Admin tab: tasks, progress, annotators, agreement, the adjudication queue, users and export.

Only admins see it (its visibility is set per visitor when the page loads), and every action checks the
admin role again on the server, so a hidden tab is not the only guard.
"""
from __future__ import annotations

import inspect
import shutil
import tempfile
from pathlib import Path

import gradio as gr

from annotation import service
from annotation.api import COOKIE
from annotation.errors import AnnotationError, NotSignedIn
from annotation.store import UserInfo
from media.errors import AVStudioError

TITLE = "Admin"
VISIBLE = False
ANNOTATOR_COLUMNS = ["annotator", "n_labels", "n_gold", "gold_accuracy", "rolling_gold_accuracy",
                     "median_dwell_s", "throughput_per_hour", "paused"]


def load() -> None:
    service.store()


def visitor(request: gr.Request | None, profile: gr.OAuthProfile | None = None) -> UserInfo | None:
    """The signed-in user of this page (by the labelling session cookie, or Hugging Face sign-in)."""
    store = service.store()
    if profile is not None:
        who = store.user_by_hf(profile.username)
        if who is not None:
            return who
    cookie = request.cookies.get(COOKIE) if request is not None else None
    try:
        return store.session_user(cookie)
    except NotSignedIn:
        return None


def _admin(request: gr.Request, profile: gr.OAuthProfile | None) -> UserInfo:
    who = visitor(request, profile)
    if who is None or not who.is_admin:
        raise gr.Error("Only admins may do this. Sign in as an admin in the Label tab, then reload.")
    return who


def _guard(fn, *, pass_request: bool = False):
    """``fn`` as an admin action: the visitor must be an admin, and an AVStudioError becomes a gr.Error with
    its message. Gradio passes the request and the Hugging Face profile by their annotations, so the wrapper
    declares them after ``fn``'s inputs."""
    inputs = list(inspect.signature(fn).parameters.values())
    if pass_request:
        inputs = inputs[:-1]  # fn's last parameter takes the request
    extra = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD),
             inspect.Parameter("profile", inspect.Parameter.POSITIONAL_OR_KEYWORD)]

    def wrapped(*args):
        *values, request, profile = args
        _admin(request, profile)
        try:
            return fn(*values, request) if pass_request else fn(*values)
        except AVStudioError as err:
            raise gr.Error(str(err)) from None

    wrapped.__name__ = fn.__name__
    wrapped.__signature__ = inspect.Signature(inputs + extra)
    wrapped.__annotations__ = {"request": gr.Request, "profile": gr.OAuthProfile | None}
    return wrapped


def show(request: gr.Request, profile: gr.OAuthProfile | None):
    who = visitor(request, profile)
    if who is None or not who.is_admin:
        return gr.Tab(visible=False), gr.Dropdown()
    names = [t["name"] for t in service.store().tasks()]
    return gr.Tab(visible=True), gr.Dropdown(choices=names, value=names[0] if names else None)


def task_view(task: str | None):
    if not task:
        return "No task yet: create one below or with `python -m annotation create`.", [], []
    stats = service.stats(service.store(), task)
    t = stats["task"]
    alpha = t.get("alpha")
    summary = (f"**{task}** ({t['kind']}): {t['n_labels']} labels by {t['n_annotators']} annotators on "
               f"{t['n_items']} items ({t['n_gold_items']} gold); {t['n_items_complete']} complete "
               f"({t['percent_complete']:.0f} %). Krippendorff's alpha ({t['alpha_level']}): "
               f"{'n/a' if alpha is None else f'{alpha:.3f}'}. Paused: {', '.join(stats['paused']) or 'nobody'}.")
    annotators = [[round(v, 2) if isinstance(v, float) else v for v in (a.get(c) for c in ANNOTATOR_COLUMNS)]
                  for a in stats["annotators"]]
    queue = [[q["item_key"], q["n"], q.get("majority"), round(q["agreement"], 3)] for q in stats["adjudication"]]
    return summary, annotators, queue


def users_view():
    return [[u["name"], u["role"], u["active"], u["hf_username"] or ""] for u in service.store().users()]


def add_user(name: str, role: str, password: str, hf_name: str):
    service.store().add_user(name, role=role, password=password or None, hf_username=hf_name or None)
    return users_view(), f"Added {name} ({role})."


def remove_user(name: str):
    service.store().remove_user(name)
    return users_view(), f"Removed {name}; their labels stay."


def invite(name: str, request: gr.Request):
    link = f"{str(request.request.base_url).rstrip('/')}/annotate/invite/{service.store().invite(name)}"
    return users_view(), f"Invite link for {name} (valid 7 days): {link}"


def lift(task: str, name: str):
    service.store().lift_pause(task, name)
    return f"Lifted the pause of {name} on {task}."


def export(task: str):
    if not task:
        raise AnnotationError("choose a task")
    out = Path(tempfile.mkdtemp(prefix="avstudio_export_"))
    summary = service.export_task(service.store(), task, out)
    archive = shutil.make_archive(str(out / task), "zip", out / task)
    return summary, archive


def create(name: str, kind: str, media_root: str, source: str, per_item: float, gold_rate: float, gold: str):
    from annotation.importer import create_task

    source = source.strip()
    options = {"manifest": source} if source.endswith((".csv", ".jsonl")) else \
        {("videos" if kind == "pair" else "speech"): source} if source else {}
    out = create_task(service.store(), name.strip(), kind, media_root=media_root.strip() or None,
                      per_item=int(per_item), gold_rate=float(gold_rate), gold=gold.strip() or None, **options)
    meta = out["task"]
    lines = [f"Task {meta['name']}: {meta['n_items']} items ({out['gold']} gold), {len(out['refused'])} refused."]
    lines += [f"refused {r['path']}: {r['reason']}" for r in out["refused"]]
    return "\n".join(lines)


def users_on_load(request: gr.Request, profile: gr.OAuthProfile | None):
    """The user table for an admin's page; nothing (and no error) for anyone else."""
    who = visitor(request, profile)
    return users_view() if who is not None and who.is_admin else []


def build():
    gr.Markdown("Progress, annotators, agreement and export. Only admins see this tab.")
    with gr.Row():
        task = gr.Dropdown(label="Task", choices=[], interactive=True)
        refresh = gr.Button("Refresh", scale=0)
    summary = gr.Markdown()
    annotators = gr.Dataframe(headers=ANNOTATOR_COLUMNS, label="Annotators", interactive=False)
    queue = gr.Dataframe(headers=["item", "labels", "majority", "agreement"], label="Adjudication queue: least "
                         "agreement first", interactive=False)
    with gr.Row():
        export_button = gr.Button("Export as a dataset")
        export_summary = gr.JSON(label="Export")
        export_file = gr.File(label="Dataset (zip)")
    with gr.Accordion("Users", open=False):
        users = gr.Dataframe(headers=["name", "role", "active", "hf_username"], interactive=False)
        with gr.Row():
            name = gr.Textbox(label="Name")
            role = gr.Radio(["annotator", "admin"], value="annotator", label="Role")
            password = gr.Textbox(label="Password (optional)", type="password")
            hf_name = gr.Textbox(label="Hugging Face name (optional)")
        with gr.Row():
            add_button, remove_button = gr.Button("Add or update"), gr.Button("Remove")
            invite_button, lift_button = gr.Button("Invite link"), gr.Button("Lift pause on this task")
        user_message = gr.Markdown()
    with gr.Accordion("New task", open=False):
        with gr.Row():
            new_name = gr.Textbox(label="Name")
            kind = gr.Radio(["pair", "bgm"], value="pair", label="Kind")
            root = gr.Textbox(label="Media root (a folder on the server)")
            source = gr.Textbox(label="Videos or speech glob, or a manifest .csv/.jsonl")
        with gr.Row():
            per_item = gr.Number(3, label="Annotators per item", precision=0)
            gold_rate = gr.Number(0.1, label="Gold rate")
            gold = gr.Textbox(label="Gold answers file (optional)")
            create_button = gr.Button("Create", variant="primary")
        create_log = gr.Textbox(label="Import report", lines=8)

    view = _guard(task_view)
    for trigger in (task.change, refresh.click):
        trigger(view, task, [summary, annotators, queue])
    refresh.click(_guard(users_view), None, users)
    export_button.click(_guard(export), task, [export_summary, export_file])
    add_button.click(_guard(add_user), [name, role, password, hf_name], [users, user_message])
    remove_button.click(_guard(remove_user), name, [users, user_message])
    invite_button.click(_guard(invite, pass_request=True), name, [users, user_message])
    lift_button.click(_guard(lift), [task, name], user_message)
    create_button.click(_guard(create), [new_name, kind, root, source, per_item, gold_rate, gold], create_log)

    def on_load(demo: gr.Blocks, tab) -> None:
        demo.load(show, None, [tab, task]).then(users_on_load, None, users)

    return on_load
