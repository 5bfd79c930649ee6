"""Screenshot of a pipeline tab after running its example (docs/screenshots/<tab>.png).

    python docs/screenshots/take_tab.py bgm_fit [--width 1400] [--height 0] [--with-examples]
    python docs/screenshots/take_tab.py soundtrack

Starts ``python app.py`` on a free port with a temporary AVSTUDIO_DATA, opens it in headless Chromium (the
system's, as the browser tests do), clicks the tab, its example and its run button, waits for the results
(:data:`TABS`: what each tab shows when done), and saves a palette PNG.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.annotation_fixtures import free_port, make_driver, wait_for

# per tab: its title, its run button, and JavaScript (``p`` is the tab's panel) true once the results are shown
TABS = {
    "bgm_fit": ("BGM fit", "Find music",
                ("const ths = [...p.querySelectorAll('th')].map(t => t.innerText.trim());"
                 " return ths.some(t => t.startsWith('chosen track')) && p.querySelector('.js-plotly-plot, img, canvas, svg.main-svg')"
                 " && [...p.querySelectorAll('[data-testid=block-label], label')].some(l => l.innerText.trim() === 'Mix')"
                 " && p.querySelectorAll('audio').length >= 2")),
    "soundtrack": ("Soundtrack", "Make the soundtrack",
                   ("return p.querySelector('.js-plotly-plot, img, canvas, svg.main-svg')"
                    " && p.querySelectorAll('video').length >= 2 && p.querySelectorAll('audio').length >= 2")),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("tab", choices=sorted(TABS))
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=0, help="crop at most this tall (0: to the content)")
    ap.add_argument("--with-examples", action="store_true", help="keep the Examples table below")
    ap.add_argument("--out", default=None, help="default: docs/screenshots/<tab>.png")
    ap.add_argument("--colors", type=int, default=256)
    args = ap.parse_args()
    tab, button, ready = TABS[args.tab]
    args.out = args.out or str(ROOT / "docs" / "screenshots" / f"{args.tab}.png")

    data = tempfile.mkdtemp(prefix="avs_shot_")
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AVSTUDIO_")}, "AVSTUDIO_DATA": data,
           "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    log = open(Path(data) / "app.log", "wb")  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    driver = None
    try:
        for _ in range(1200):
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited; see {log.name}")
            try:
                urllib.request.urlopen(f"{url}/", timeout=2).read()
                break
            except OSError:
                time.sleep(0.25)
        print("app up", flush=True)
        driver = make_driver(args.width, 1300)
        driver.get(url)
        wait_for(driver, f"return [...document.querySelectorAll('button[role=tab]')]"
                 f".some(b => b.innerText.trim() === '{tab}')", 60, "the tabs")
        driver.execute_script(f"[...document.querySelectorAll('button[role=tab]')]"
                              f".find(b => b.innerText.trim() === '{tab}').click()")
        panel = ("const p = [...document.querySelectorAll('[role=tabpanel]')]"
                 f".find(e => e.offsetParent !== null && e.innerText.includes('{button}'));")
        wait_for(driver, f"{panel} return p && p.querySelector('tr.tr-body td')", 30, "the example row")
        driver.execute_script(f"{panel} p.querySelector('tr.tr-body td').click()")
        wait_for(driver, f"{panel} return !p.innerText.includes('Drop Audio Here')", 30, "the example loaded")
        time.sleep(2)
        driver.execute_script(f"{panel} [...p.querySelectorAll('button')].find(b => b.innerText.trim() === "
                              f"'{button}').click()")
        wait_for(driver, f"{panel} {ready}", 240, "the results")
        time.sleep(4)  # waveforms and the plot settle
        errors = driver.execute_script("return [...document.querySelectorAll('[class*=toast], [data-testid*=toast]')].filter(e => e.offsetParent !== null)"
                                       ".map(e => e.innerText)")
        errors = [e for e in errors if "Error" in e or "Warning" in e]  # an info note is not a failure
        if errors:
            raise RuntimeError(f"error toast shown: {errors}")
        # the Details JSON folded to one line, so the tab fits one screen
        driver.execute_script(f"{panel} const t = p.querySelector('.json-node.root > .line button.toggle');"
                              " if (t && t.getAttribute('aria-label') === 'Collapse') t.click();")
        time.sleep(1)
        # the window as tall as the whole page (no scrolling), then cropped below the inputs and results
        need = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(args.width, need + driver.execute_script("return outerHeight - innerHeight"))
        time.sleep(1.5)
        driver.execute_script("window.scrollTo(0, 0)")
        bottoms = driver.execute_script(
            f"{panel} const row = [...p.querySelectorAll('button')].find(b => b.innerText.trim() === '{button}')"
            ".closest('.row'); const ex = p.querySelector('tr.tr-body').closest('.block');"
            " return [row.getBoundingClientRect().bottom, ex.getBoundingClientRect().bottom]")
        print("bottom of the inputs/results row, of the examples:", bottoms, flush=True)
        bottom = bottoms[1] if args.with_examples else bottoms[0]
        crop = min(int(bottom) + 20, args.height) if args.height else int(bottom) + 20
        png = driver.get_screenshot_as_png()
        errors = driver.execute_script("return [...document.querySelectorAll('[class*=toast], [data-testid*=toast]')].filter(e => e.offsetParent !== null)"
                                       ".map(e => e.innerText)")
        errors = [e for e in errors if "Error" in e or "Warning" in e]  # an info note is not a failure
        if errors:
            raise RuntimeError(f"error toast shown: {errors}")
    except Exception:
        if driver is not None:
            driver.save_screenshot("/tmp/avs_debug.png")
            Path("/tmp/avs_debug.html").write_text(driver.page_source)
        raise
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    img = img.crop((0, 0, img.width, min(crop, img.height)))
    img = img.quantize(colors=args.colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    img.save(args.out, optimize=True)
    print(f"{args.out}: {img.size[0]}x{img.size[1]}, {os.path.getsize(args.out) // 1024} KB", flush=True)
    shutil.rmtree(data, ignore_errors=True)  # kept (with app.log) when something failed
    return 0


if __name__ == "__main__":
    sys.exit(main())
