"""What the labelling client's browser test and its benchmark share: a labelling server
(``python -m annotation serve``) in a subprocess on a temporary data folder, users and tasks made with the
store on the same SQLite file, real media from the media folder, and headless Chromium driven by Selenium.

Chromium and chromedriver are the system's (``/usr/bin/chromium``, ``/usr/bin/chromedriver``); Selenium
Manager is never asked to download anything.
"""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("AVSTUDIO_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("AVSTUDIO_CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROME_FLAGS = ("--headless=new", "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream", "--no-sandbox", "--disable-gpu", "--mute-audio",
                "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding")
PASSWORD = "keyboard-only-1"
ANNOTATOR = "ann"
PAIR_TASK = "pair-demo"
BGM_TASK = "bgm-demo"
VIDEO_EXTS = {".mp4", ".webm"}  # what a browser plays (no .avi)
AUDIO_EXTS = {".wav", ".flac", ".ogg", ".opus", ".mp3"}


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.is_file():
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium chromium-driver)"
    if not CHROMEDRIVER.is_file():
        return f"chromedriver not found at {CHROMEDRIVER} (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------- server
@dataclass
class Server:
    proc: subprocess.Popen
    url: str  # http://127.0.0.1:PORT
    data: Path
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_server(data: Path, timeout: float = 60.0) -> Server:
    """``python -m annotation serve`` on a free port with ``AVSTUDIO_DATA=data``; waits until it answers."""
    port = free_port()
    log = data / "server.log"
    env = {**os.environ, "AVSTUDIO_DATA": str(data), "PYTHONUNBUFFERED": "1"}
    env.pop("AVSTUDIO_DB_URL", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "annotation", "serve", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, f"http://127.0.0.1:{port}", data, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the labelling server exited ({proc.returncode}):\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/annotate/", timeout=2) as res:
                if res.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"the labelling server did not answer within {timeout:.0f} s:\n{server.log_tail()}")


def api(server: Server, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    """One JSON call to the server's API (for checks outside the browser)."""
    req = urllib.request.Request(f"{server.url}/annotate/api/{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=10) as res:
        return json.loads(res.read())


# ----------------------------------------------------------------------------------------------- store
def open_store(data: Path):
    """The store on the server's SQLite file (the server migrates the same file; both may be open)."""
    from annotation.store import Store

    return Store(f"sqlite:///{data / 'annotation.db'}", data=data)


def _files(folder: Path, exts: set[str]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)


def pair_items(media: Path, n_items: int, candidates: int = 3, seed: int = 0) -> list[dict]:
    """``n_items`` Pair items: the media folder's browser-playable videos (reused when there are fewer), each
    with ``candidates`` music tracks drawn at random."""
    rng = random.Random(seed)
    videos = _files(media / "video", VIDEO_EXTS)
    tracks = _files(media / "music", AUDIO_EXTS)
    if not videos or len(tracks) < candidates:
        raise RuntimeError(f"{media} needs video/*.mp4 and at least {candidates} music/* tracks")
    items = []
    for k in range(n_items):
        video = videos[k % len(videos)]
        chosen = rng.sample(tracks, candidates)
        items.append({"key": f"pair-{k:03d}-{video.stem}"[:120],
                      "payload": {"video": video.relative_to(media).as_posix(),
                                  "candidates": [t.relative_to(media).as_posix() for t in chosen]}})
    return items


def bgm_items(media: Path, data: Path, task: str, n_items: int, seed: int = 0) -> list[dict]:
    """``n_items`` BGM-fit items: short real speech clips, each with a music track, the mix and both tracks
    alone prepared under ``data/mixes/<task>`` (by :mod:`annotation.importer` when it can be imported)."""
    rng = random.Random(seed)
    speech = [p for p in _files(media / "speech", {".wav"}) if p.stat().st_size < 700_000]  # the short clips
    tracks = _files(media / "music", AUDIO_EXTS)
    if not speech or not tracks:
        raise RuntimeError(f"{media} needs speech/*.wav and music/* tracks")
    items = []
    for k in range(n_items):
        s, m = speech[k % len(speech)], rng.choice(tracks)
        items.append({"key": f"bgm-{k:03d}-{s.stem}"[:120],
                      "payload": {"speech": s.relative_to(media).as_posix(), "bgm": m.relative_to(media).as_posix()}})
    try:
        from annotation.importer import prepare_mixes
    except ImportError:
        prepare_mixes = None
    if prepare_mixes is not None:
        refusals = prepare_mixes(task, items, media, data)
        if refusals:
            raise RuntimeError(f"mixes refused: {refusals}")
        return items
    from media.mix import mix_files

    folder = data / "mixes" / task
    for item in items:
        payload = item["payload"]
        out = mix_files(media / payload["speech"], media / payload["bgm"], folder / f"{item['key']}.wav")
        paths = {"mix": out["mix_path"], "speech": out["speech_track_path"], "bgm": out["bgm_track_path"]}
        payload["prepared"] = {slot: Path(p).relative_to(data).as_posix() for slot, p in paths.items()}
        payload["gains"] = {k: v for k, v in out.items() if not k.endswith("_path")}
    return items


def _instructions(kind: str) -> str:
    try:
        from annotation.tasks import DEFAULT_INSTRUCTIONS
    except ImportError:
        return ""
    return DEFAULT_INSTRUCTIONS.get(kind, "")


@dataclass
class Setup:
    server: Server
    store: object
    data: Path
    media: Path
    url: str = field(init=False)

    def __post_init__(self):
        self.url = self.server.url

    def close(self) -> None:
        self.server.stop()
        self.store.close()


def setup(data: Path, media: Path, *, n_pair: int, n_bgm: int, min_play_s: float, lease_s: float = 60.0) -> Setup:
    """The server on ``data``, the annotator ``ann`` (password :data:`PASSWORD`) and two tasks: Pair
    (``n_pair`` items, 3 candidates each) and BGM fit (``n_bgm`` items, rating unlocks after ``min_play_s``)."""
    data.mkdir(parents=True, exist_ok=True)
    store = open_store(data)  # creates and migrates the database before the server opens it
    store.add_user(ANNOTATOR, password=PASSWORD)
    store.add_user("boss", role="admin", password=PASSWORD + "-admin")
    store.create_task(PAIR_TASK, "pair", pair_items(media, n_pair), media_root=media, instructions=_instructions("pair"),
                      per_item=3, gold_rate=0.0, lease_s=lease_s)
    store.create_task(BGM_TASK, "bgm", bgm_items(media, data, BGM_TASK, n_bgm), media_root=media,
                      instructions=_instructions("bgm"), per_item=3, gold_rate=0.0, lease_s=lease_s,
                      min_play_s=min_play_s)
    server = start_server(data)
    return Setup(server, store, data, media)


# --------------------------------------------------------------------------------------------- browser
def make_driver(width: int = 1280, height: int = 800):
    """Headless Chromium (the system's; nothing downloaded) with a fake microphone and autoplay allowed."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach out
    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    # the page itself (the screenshots) gets width x height: add what the window's frame takes
    extra_w, extra_h = driver.execute_script("return [outerWidth - innerWidth, outerHeight - innerHeight]")
    driver.set_window_size(width + max(0, extra_w), height + max(0, extra_h))
    driver.set_script_timeout(30)
    return driver


def avs(driver, expr: str = ""):
    """A value from the page's read-only ``window.avs`` state (``expr`` like ``.leaseId``)."""
    return driver.execute_script(f"return window.avs ? JSON.parse(JSON.stringify(window.avs{expr} ?? null)) : null")


def wait_for(driver, script: str, timeout: float = 20.0, what: str = ""):
    """Poll a JavaScript expression (``script`` is the body of a function) until it is truthy."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.05)
    state = driver.execute_script("return window.avs ? JSON.stringify({view: avs.view, lease: avs.leaseId, "
                                  "ready: avs.ready, save: avs.saveState, message: avs.message}) : 'no avs'")
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what or script}; page state {state}")


def press(driver, *keys) -> None:
    """Keys sent to the page body, as a keyboard-only annotator would type them."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.TAG_NAME, "body").send_keys(*keys)


def type_keys(driver, *keys) -> None:
    """Keys sent to whatever has the focus (a form field)."""
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def sign_in(driver, url: str, name: str = ANNOTATOR, password: str = PASSWORD) -> None:
    """Sign in with the keyboard alone: name, Tab, password, Enter."""
    from selenium.webdriver.common.keys import Keys

    driver.get(f"{url}/annotate/")
    wait_for(driver, "return document.activeElement && document.activeElement.id === 'login-name'", 20,
             "the sign-in form")
    type_keys(driver, name, Keys.TAB, password, Keys.ENTER)
    wait_for(driver, "return window.avs.view === 'tasks'", 20, "the task list")


def wait_item(driver, previous_lease: int | None, timeout: float = 20.0) -> int:
    """Wait until a new item (lease) is shown with all its media loaded; returns its lease id."""
    return wait_for(driver, f"return avs.ready && avs.leaseId !== null && avs.leaseId !== {json.dumps(previous_lease)}"
                    " && !avs.busy && avs.leaseId", timeout, "the next item to be ready")
