"""The labelling client in a real browser (headless Chromium), driven with the keyboard alone.

A labelling server runs in a subprocess on a temporary data folder; the annotator and two tasks (Pair on
real videos and music, BGM fit on real speech with prepared mixes) are made with the store on the same
SQLite file. The test signs in (name, Tab, password, Enter), labels three items of each task with keys sent
to the page, records a hum from Chromium's fake microphone, switches candidate tracks mid-play and checks
the playhead holds, undoes a label and checks the store, and saves the screenshots of the docs.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests import annotation_fixtures as F

pytestmark = pytest.mark.slow

SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
MIN_PLAY_S = 2.0
LEASE_S = 12.0  # a heartbeat every 4 s
# fetch that fails the next two submits: first a network error, then a 503; records each try's client id
FLAKY_FETCH = """
window.__submits = [];
const real = window.fetch;
let failures = 2;
window.fetch = function (url, opts) {
  if (String(url).endsWith('/submit')) {
    window.__submits.push(JSON.parse(opts.body).client_id);
    if (failures-- === 2) return Promise.reject(new TypeError('Failed to fetch'));
    if (failures === 0) return Promise.resolve(new Response('{"error": "busy"}', {status: 503}));
  }
  return real.apply(this, arguments);
};
"""


@pytest.fixture(scope="module")
def browser_setup(media, tmp_path_factory):
    reason = F.browser_missing()
    if reason:
        if os.environ.get("AVSTUDIO_REQUIRE_BROWSER"):
            pytest.fail(f"a browser is required (AVSTUDIO_REQUIRE_BROWSER) but {reason}")
        pytest.skip(reason)
    setup = F.setup(tmp_path_factory.mktemp("annotation"), media, n_pair=4, n_bgm=4, min_play_s=MIN_PLAY_S,
                    lease_s=LEASE_S)
    driver = None
    try:
        driver = F.make_driver(1280, 800)
        yield setup, driver
    finally:
        if driver is not None:
            driver.quit()
        setup.close()


def _clock(driver) -> dict:
    return driver.execute_script("const v = document.getElementById('video'); const a = "
                                 "document.getElementById('track-' + avs.activeTrack); return {video: v.currentTime, "
                                 "audio: a.currentTime, videoPaused: v.paused, audioPaused: a.paused, "
                                 "active: avs.activeTrack}")


def _switch_and_check(driver, key: str, index: int) -> None:
    """Press ``key`` mid-play: track ``index`` becomes audible at the video's playhead, which keeps going."""
    before = _clock(driver)
    F.press(driver, key)
    F.wait_for(driver, f"return avs.activeTrack === {index}", 5, f"track {index + 1} to be active")
    time.sleep(0.5)  # let the switch settle, then sample the clocks twice
    first = _clock(driver)
    time.sleep(0.4)
    second = _clock(driver)
    for c in (first, second):
        assert not c["videoPaused"] and not c["audioPaused"], c
        assert abs(c["audio"] - c["video"]) < 0.15, f"track {index + 1} is off the video's clock: {c}"
    # the playhead holds: the video went on playing through the switch (it loops, so allow a wrap)
    assert second["video"] > first["video"] or second["video"] < 0.5, (first, second)
    assert first["video"] > before["video"] or first["video"] < 1.0, (before, first)


def test_label_both_tasks_with_the_keyboard(browser_setup):
    from selenium.webdriver.common.keys import Keys

    setup, driver = browser_setup
    store = setup.store
    F.sign_in(driver, setup.url)
    tasks = F.avs(driver, ".view")
    assert tasks == "tasks"

    # ------------------------------------------------------------------------------------ Pair
    F.press(driver, "1")  # the first task in the list
    lease = F.wait_item(driver, None)
    assert F.avs(driver, ".task") == F.PAIR_TASK
    assert driver.execute_script("return document.querySelectorAll('#tracks .track').length") == 4  # 3 + none
    assert "none fits" in driver.find_element("id", "keys").text

    # item 1: switch tracks mid-play, record a hum, pick track 2
    F.wait_for(driver, "return !document.getElementById('video').paused && "
                       "document.getElementById('video').currentTime > 0.3", 10, "the video to play")
    _switch_and_check(driver, "2", 1)
    _switch_and_check(driver, "3", 2)
    F.press(driver, "h")
    F.wait_for(driver, "return avs.hum.state === 'recording'", 10, "the hum recording to start")
    time.sleep(3.0)
    F.press(driver, "h")
    hum = F.wait_for(driver, "return ['ok', 'error'].includes(avs.hum.state) && avs.hum", 20, "the hum upload")
    assert hum["state"] == "ok" and len(hum["sha256"]) == 64, hum
    F.press(driver, "2")
    assert F.avs(driver, ".choice") == 1
    time.sleep(0.3)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / "annotation_pair.png"))
    first_key = F.avs(driver, ".itemKey")
    F.press(driver, Keys.ENTER)
    lease = F.wait_item(driver, lease)

    # item 2: none fits; item 3: track 3
    F.press(driver, "0")
    assert F.avs(driver, ".choice") is None
    F.press(driver, Keys.ENTER)
    lease = F.wait_item(driver, lease)
    third_key = F.avs(driver, ".itemKey")
    F.press(driver, "3")
    F.press(driver, Keys.ENTER)
    lease = F.wait_item(driver, lease)
    assert F.avs(driver, ".progress")["labelled"] == 3
    assert len(F.avs(driver, ".submitToReady")) == 3

    # undo the last label: an undo row, and that item is the current assignment again
    F.press(driver, "u")
    lease = F.wait_item(driver, lease)
    assert F.avs(driver, ".itemKey") == third_key
    history = store.labels(F.PAIR_TASK, history=True)
    assert [row["row_kind"] for row in history] == ["label", "label", "label", "undo"]
    assert history[-1]["revises"] == history[-2]["label_id"]
    user = store.session_user(store.login_password(F.ANNOTATOR, F.PASSWORD))
    assert store.next_item(user, F.PAIR_TASK)["item_key"] == third_key  # the live lease: the undone item

    # relabel it while the network fails twice (an error, then a 503): the client retries with the same id
    driver.execute_script(FLAKY_FETCH)
    F.press(driver, "1")
    F.press(driver, Keys.ENTER)
    F.wait_for(driver, "return avs.saveState === 'retrying'", 5, "the 'saving…' retry state")
    lease = F.wait_item(driver, lease)
    sent = driver.execute_script("return window.__submits")
    assert len(sent) == 3 and len(set(sent)) == 1, sent  # three tries, one client id
    assert driver.execute_script("return performance.getEntriesByType('resource')"
                                 ".filter(e => e.name.endsWith('/heartbeat')).length") >= 1

    labels = {row["item_key"]: row for row in store.labels(F.PAIR_TASK)}
    assert len(labels) == 3
    assert len(store.labels(F.PAIR_TASK, history=True)) == 5  # 3 labels, the undo, the relabel: no duplicate
    first = labels[first_key]
    assert first["value"] == first["presentation"]["order"][1]  # track 2 as shown
    assert first["hum_sha256"] == hum["sha256"] and Path(first["hum_path"]).is_file()
    assert any(row["value"] is None for row in labels.values())  # none fits
    assert labels[third_key]["value"] == labels[third_key]["presentation"]["order"][0]
    assert all(row["dwell_ms"] > 0 for row in labels.values())

    # --------------------------------------------------------------------------------- BGM fit
    F.press(driver, Keys.ESCAPE)
    F.wait_for(driver, "return avs.view === 'tasks'", 10, "the task list")
    F.press(driver, "2")
    lease = F.wait_item(driver, None)
    assert F.avs(driver, ".task") == F.BGM_TASK
    ratings = [4, 2, 5]
    for n, rating in enumerate(ratings):
        if n == 0:
            F.press(driver, "5")  # too early: the rating is still locked
            assert F.avs(driver, ".rating") is None and not F.avs(driver, ".unlocked")
            F.press(driver, "v")  # the speech alone, on the same clock
            F.wait_for(driver, "return avs.activeSlot === 'speech' && !avs.clock.activePaused", 5, "the speech alone")
            F.press(driver, "b")
            F.wait_for(driver, "return avs.activeSlot === 'bgm' && !avs.clock.activePaused", 5, "the music alone")
            F.press(driver, "x")
            F.wait_for(driver, "return avs.activeSlot === 'mix'", 5, "the mix")
        F.wait_for(driver, "return avs.unlocked", MIN_PLAY_S + 15, "the rating to unlock")
        F.press(driver, str(rating))
        assert F.avs(driver, ".rating") == rating
        if n == 0:
            F.press(driver, Keys.SHIFT + "1")  # the first reason tag
            F.press(driver, Keys.SHIFT + "4")
            assert F.avs(driver, ".tags") == ["mood", "too loud"]
            driver.save_screenshot(str(SCREENSHOTS / "annotation_bgm.png"))
        F.press(driver, Keys.ENTER)
        lease = F.wait_item(driver, lease)

    rows = store.labels(F.BGM_TASK)
    assert sorted(row["value"] for row in rows) == sorted(ratings)
    assert all(row["presentation"]["played_ms"] >= MIN_PLAY_S * 1000 for row in rows)
    assert any(row["tags"] == ["mood", "too loud"] for row in rows)
    assert F.avs(driver, ".progress")["labelled"] == 3

    # a skip with a preset reason, then the recent labels list shows own labels only
    F.press(driver, "s")
    F.wait_for(driver, "return !document.getElementById('skip-modal').hidden", 5, "the skip prompt")
    F.type_keys(driver, "2", Keys.ENTER)
    F.wait_for(driver, "return avs.done && !avs.busy", 10, "the end of the task")  # that was the last item
    skips = [row for row in store.labels(F.BGM_TASK, history=True) if row["row_kind"] == "skip"]
    assert len(skips) == 1 and skips[0]["reason"] == "I cannot judge this one"
    recent = F.wait_for(driver, "return document.querySelectorAll('#recent .recent-row').length >= 4 && "
                                "document.getElementById('recent').innerText", 10, "the recent labels")
    assert "Skipped" in recent

    # R revises the most recent label (the rating 5): 3 instead, a new row that names the old one
    F.press(driver, "r")
    F.wait_for(driver, "return !document.getElementById('revise-modal').hidden", 5, "the revise prompt")
    F.press(driver, "3", Keys.ENTER)
    F.wait_for(driver, "return document.getElementById('revise-modal').hidden", 10, "the revision to be saved")
    revised = [row for row in store.labels(F.BGM_TASK) if row["revises"] is not None]
    assert len(revised) == 1 and revised[0]["value"] == 3 and revised[0]["revision"] == 1, revised
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
              and not ("api/me" in e["message"] and "401" in e["message"])  # the check before signing in
              and "503" not in e["message"]]  # the failure made on purpose
    assert not errors, errors

    # an invite link signs in on its own, and the token leaves the address bar
    driver.delete_all_cookies()
    driver.execute_script("sessionStorage.clear(); localStorage.clear()")
    driver.get(f"{setup.url}/annotate/invite/{store.invite(F.ANNOTATOR)}")
    F.wait_for(driver, "return window.avs && avs.view === 'tasks'", 15, "the task list after the invite link")
    assert "token" not in driver.current_url

