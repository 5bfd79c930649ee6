"""The Label tab: the labelling client (``annotation/web``, served at ``/annotate``) inside the app.

On a Space with ``hf_oauth: true`` in its card, annotators sign in with Hugging Face (``gr.LoginButton``);
an account an admin added (``python -m annotation users add NAME --hf HF_NAME``) then gets a one-time code
that signs the client in. Self-hosted, annotators sign in with an invite link or a name and password.
"""
from __future__ import annotations

import html
import os

import gradio as gr

from annotation import service

TITLE = "Label"
ABOUT = (
    "Label data for AV Studio's models. **Pair**: watch a video and pick the track that fits it. "
    "**BGM fit**: rate how well a music track fits a speech segment. Keyboard only: the shortcuts are on the "
    "page. Sign in with your invite link, your name and password, or your Hugging Face account on a Space.")


def oauth_enabled() -> bool:
    """Whether Hugging Face sign-in is configured (a Space whose card sets ``hf_oauth: true``)."""
    return bool(os.environ.get("SPACE_ID") and os.environ.get("OAUTH_CLIENT_ID"))


def load() -> None:
    service.store()


def frame(src: str) -> str:
    return (f'<iframe src="{html.escape(src)}" title="Labelling" allow="microphone; autoplay" '
            'style="width:100%;height:880px;border:0;border-radius:8px"></iframe>')


def sign_in(profile: gr.OAuthProfile | None) -> str:
    """The client, signed in through a one-time code when a Hugging Face user with an account is signed in."""
    if profile is not None:
        who = service.store().user_by_hf(profile.username)
        if who is not None:
            return frame(f"/annotate/code/{service.store().sign_in_code(who.name)}")
    return frame("/annotate/")


def build():
    gr.Markdown(ABOUT)
    if oauth_enabled():
        gr.LoginButton()
    client = gr.HTML(frame("/annotate/"))

    def on_load(demo: gr.Blocks, _tab) -> None:
        demo.load(sign_in, inputs=None, outputs=client)

    return on_load
