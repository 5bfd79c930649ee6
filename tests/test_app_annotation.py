"""The whole app (python app.py) in headless Chromium: the labelling client inside the Label tab, served by
the same server as the Gradio tabs, and the Admin tab that only an admin sees, after signing in there."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.annotation_fixtures import (
    browser_missing,
    free_port,
    make_driver,
    type_keys,
    wait_for,
)

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    reason = browser_missing()
    if reason:
        if os.environ.get("AVSTUDIO_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    from annotation.db import Lease
    from annotation.store import Store

    data = tmp_path_factory.mktemp("app_data")
    store = Store(f"sqlite:///{data / 'annotation.db'}", data=data)
    store.add_user("boss", role="admin", password="boss-password")
    store.add_user("ann", password="ann-password")
    items = [{"key": f"clip{k}", "payload": {"video": f"v{k}.mp4", "candidates": ["a.flac", "b.flac", "c.flac"]}}
             for k in range(6)]
    store.create_task("clips", "pair", items, media_root=data, gold_rate=0)
    for n, name in enumerate(("u1", "u2", "u3")):  # some labels, so the Admin tab has figures to show
        who = store.add_user(name)
        while (lease := store.next_item(who, "clips")) is not None:
            with store.read() as session:
                order = session.get(Lease, lease["lease_id"]).presentation["order"]
            pick = "a.flac" if n < 2 or lease["item_key"] in ("clip0", "clip1") else "b.flac"
            store.submit(who, lease["lease_id"], f"{name}-{lease['lease_id']:06d}", choice=order.index(pick))
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AVSTUDIO_")}, "AVSTUDIO_DATA": str(data),
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(480):
        if proc.poll() is not None:
            pytest.fail(f"app.py exited: {proc.stdout.read()[-3000:]}")
        try:
            urllib.request.urlopen(f"{url}/annotate/", timeout=2).read()
            break
        except OSError:
            time.sleep(0.25)
    driver = make_driver()
    yield url, driver, store
    driver.quit()
    proc.terminate()
    proc.wait(timeout=30)


def tab_names(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('button[role=tab]')].map(b => b.innerText.trim())")


def sign_in_in_label_tab(driver, url: str, name: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(url)
    wait_for(driver, "return [...document.querySelectorAll('button[role=tab]')].some(b => b.innerText.trim() === 'Label')",
             60, "the Label tab")
    driver.execute_script("[...document.querySelectorAll('button[role=tab]')]"
                          ".find(b => b.innerText.trim() === 'Label').click()")
    frame = wait_for(driver, "return document.querySelector('iframe[title=Labelling]')", 20, "the labelling client")
    driver.switch_to.frame(frame)
    wait_for(driver, "return document.activeElement && document.activeElement.id === 'login-name'", 20, "sign-in")
    type_keys(driver, name, Keys.TAB, password, Keys.ENTER)
    wait_for(driver, "return window.avs && window.avs.view === 'tasks'", 20, "the task list")
    assert "clips" in driver.find_element(By.TAG_NAME, "body").text
    driver.switch_to.default_content()


def test_label_tab_hosts_the_client_and_only_admins_get_the_admin_tab(app):
    url, driver, _ = app
    driver.get(url)
    wait_for(driver, "return document.querySelectorAll('button[role=tab]').length >= 4", 60, "the tabs")
    assert "Label" in tab_names(driver) and "Admin" not in tab_names(driver)

    sign_in_in_label_tab(driver, url, "ann", "ann-password")
    driver.refresh()
    wait_for(driver, "return document.querySelectorAll('button[role=tab]').length >= 4", 60, "the tabs")
    time.sleep(2)  # the page-load event that may reveal the Admin tab
    assert "Admin" not in tab_names(driver)

    driver.execute_script("localStorage.clear(); sessionStorage.clear()")  # sign out: the client keeps its token
    driver.delete_all_cookies()
    sign_in_in_label_tab(driver, url, "boss", "boss-password")
    driver.refresh()
    wait_for(driver, "return [...document.querySelectorAll('button[role=tab]')].some(b => b.innerText.trim() === 'Admin')",
             30, "the Admin tab for an admin")
    driver.execute_script("[...document.querySelectorAll('button[role=tab]')]"
                          ".find(b => b.innerText.trim() === 'Admin').click()")
    text = wait_for(driver, "const t = document.body.innerText; return t.includes('Krippendorff') && t", 30,
                    "the task summary in the Admin tab")
    assert "clips" in text and "18 labels by 3 annotators" in text
    driver.save_screenshot(os.path.join(ROOT, "docs", "screenshots", "annotation_admin.png"))
