"""run.visualize: pictures exist, have the right number of frames and are not blank; the HTML page draws in
headless Chromium without console errors and its slider changes what is drawn; bad input is refused."""
from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import POSE, run_module

T, N, S = 6, 3, 4


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A results.npz with a trajectory (noise shrinking onto a pose), GT and 2D input, in network units."""
    pose = (POSE - POSE[:1]) / 2000.0 * np.array([1, -1, 1])  # image y points down
    pose = pose[:, [0, 2, 1]]  # depth last
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(T, N, S, 17, 3)) * np.linspace(0.3, 0.01, T)[:, None, None, None, None]
    pred = pose[None, None, None] + noise
    path = tmp_path_factory.mktemp("vis") / "results.npz"
    np.savez(path, pred3d=pred, gt3d=np.broadcast_to(pose, (1, N, 1, 17, 3)),
             input2d=np.broadcast_to(pose[:, :2], (1, N, 1, 17, 2)), missing=np.zeros((1, N, 1, 17), bool))
    return path


def _not_blank(img: Image.Image) -> bool:
    return np.asarray(img.convert("L"), dtype=float).std() > 5.0


def test_png_and_gif(results, tmp_path):
    res = run_module("run.visualize", "--input", str(results), "--num-human", "3", "--num-hypo", "4", "--vis-gt",
                     "--num-perline", "2", "--out", str(tmp_path / "a.png"))
    assert res.returncode == 0, res.stderr
    with Image.open(tmp_path / "a.png") as img:
        assert img.size[0] > 300 and _not_blank(img)
    res = run_module("run.visualize", "--input", str(results), "--num-human", "2", "--num-hypo", "2",
                     "--out", str(tmp_path / "a.gif"))
    assert res.returncode == 0, res.stderr
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == T
        gif.seek(0)
        first = np.asarray(gif.convert("L"))
        assert _not_blank(gif)
        gif.seek(T - 1)
        assert not np.array_equal(first, np.asarray(gif.convert("L")))  # the diffusion moves


def test_more_humans_or_hypotheses_than_held_draws_what_is_there(results, tmp_path):
    """As the paper's viewer (its README asks for 80 hypotheses of a 1-hypothesis run)."""
    res = run_module("run.visualize", "--input", str(results), "--num-human", "9", "--num-hypo", "80",
                     "--out", str(tmp_path / "all.png"))
    assert res.returncode == 0 and "holds 3 humans x 4 hypotheses" in res.stdout, res.stderr
    assert (tmp_path / "all.png").is_file()


def test_bad_input_is_refused(results, tmp_path):
    np.savez(tmp_path / "none.npz", gt3d=np.zeros((1, 2, 1, 17, 3)))
    np.savez(tmp_path / "shape.npz", pred3d=np.zeros((2, 17, 3)))
    np.savez(tmp_path / "text.npz", pred3d=np.full((1, 2, 1, 17, 3), "a"))
    (tmp_path / "notzip.npz").write_text("hello")
    final = tmp_path / "final.npz"
    np.savez(final, pred3d=np.zeros((1, 2, 1, 17, 3)))
    cases = [(("--input", str(tmp_path / "none.npz")), "no 'pred3d'"),
             (("--input", str(tmp_path / "shape.npz")), "expected [T, N, S, 17, 3]"),
             (("--input", str(tmp_path / "text.npz")), "must hold numbers"),
             (("--input", str(tmp_path / "notzip.npz")), "cannot read"),
             (("--input", str(results), "--num-human", "0"), "--num-human must be a whole number >= 1, got '0'"),
             (("--input", str(final), "--vis-gt"), "no gt3d"),
             (("--input", str(final), "--out", str(tmp_path / "README.md")), "unknown format"),
             (("--input", str(final), "--out", str(tmp_path)), "unknown format"),
             (("--input", str(tmp_path / "missing.npz")), "not found"),
             (("--input", str(final), "--out", str(tmp_path / "x.gif")), "only the final step")]
    for args, message in cases:
        if "--out" not in args:
            args = (*args, "--out", str(tmp_path / "x.png"))
        res = run_module("run.visualize", *args)
        assert res.returncode == 2 and message in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.gif").exists()


def _chromium() -> tuple[str, str]:
    """Chromium and its driver from the system (README 'Two commands' says how to install them); skip without them."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("Chromium / chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    return browser, driver


def test_html_viewer_in_headless_chromium(results, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    page = tmp_path / "viewer.html"
    res = run_module("run.visualize", "--input", str(results), "--num-human", "3", "--num-hypo", "4", "--vis-gt",
                     "--out", str(page))
    assert res.returncode == 0, res.stderr
    html = page.read_text()
    assert page.stat().st_size < 8e6 and "<script src=" not in html  # plotly.js inlined: works offline
    browser, driver = _chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-swiftshader",
                "--use-angle=swiftshader", "--window-size=1300,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=webdriver.ChromeService(driver), options=opts)
    try:
        chrome.get(page.as_uri())
        ready = "return !!document.querySelector('.slider-rail-rect') && !!document.getElementById('poses')._fullLayout"
        for _ in range(300):
            if chrome.execute_script(ready):
                break
            time.sleep(0.1)
        time.sleep(1.0)
        assert chrome.execute_script("return document.getElementById('poses').data.length") == 3 * 3 * 3
        before = Image.open(io.BytesIO(chrome.get_screenshot_as_png()))
        rail = chrome.find_element(By.CSS_SELECTOR, ".slider-rail-rect")
        ActionChains(chrome).move_to_element_with_offset(rail, -rail.size["width"] // 2 + 2, 0).click().perform()
        time.sleep(1.5)
        assert chrome.execute_script("return document.getElementById('poses')._fullLayout.sliders[0].active") == 0
        after = Image.open(io.BytesIO(chrome.get_screenshot_as_png()))
        errors = [e for e in chrome.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        chrome.quit()
    assert not errors, errors
    assert _not_blank(before)
    diff = np.abs(np.asarray(before.convert("L"), float) - np.asarray(after.convert("L"), float))
    assert (diff > 30).sum() > 500  # the first diffusion step (noise) looks different from the last
