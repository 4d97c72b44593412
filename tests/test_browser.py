"""The leaderboard page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``).

It must load without a console error (its Content-Security-Policy included),
sort when a header is clicked, filter, show a generation that contains
``<script>alert(1)</script>`` as text, with no alert, and fit its main table
in a 1400-pixel window (the window every test here opens).
"""

from __future__ import annotations

import shutil

import pytest
from leaderboard_data import BOLD_ROW, XSS, build_divergence_store, build_store

from harness.leaderboard.generate import generate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs Chromium and its driver: apt-get install -y chromium chromium-driver",
)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    tmp = tmp_path_factory.mktemp("browser")
    out = tmp / "board"
    generate(build_store(tmp / "results.db"), out, n_samples=3)
    # the widest board the tests make: divergence columns filled, two engines, a top-k label
    generate(build_divergence_store(tmp / "divergence.db"), tmp / "divergence", n_samples=1)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    driver.set_page_load_timeout(60)
    try:
        driver.get((out / "index.html").as_uri())
        yield driver
    finally:
        driver.quit()


def _column(driver, header: str) -> list[str]:
    """data-v of one column of the main table, in the order the rows are shown."""
    return driver.execute_script(
        """const ths = [...document.querySelectorAll('#board thead th')];
           const i = ths.findIndex(th => th.textContent.trim() === arguments[0]);
           return [...document.querySelectorAll('#board tbody tr')]
             .filter(tr => !tr.hidden).map(tr => tr.cells[i].getAttribute('data-v'));""",
        header,
    )


def _no_alert(driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - raises when no alert is open


def test_loads_without_console_errors(page):
    from selenium.webdriver.common.by import By

    assert page.find_element(By.ID, "shown").text == "6 of 6 rows shown", "the page's script did not run"
    errors = [entry for entry in page.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    _no_alert(page)


def test_clicking_a_header_sorts(page):
    from selenium.webdriver.common.by import By

    page.find_element(By.ID, "all-columns").click()  # TTFT and KV are outside the compact view

    header = page.find_element(By.XPATH, "//table[@id='board']/thead//th[normalize-space()='accuracy % (all)']")
    header.click()
    values = [float(v) for v in _column(page, "accuracy % (all)")]
    assert values == sorted(values) and values[0] < values[-1]
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    values = [float(v) for v in _column(page, "accuracy % (all)")]
    assert values == sorted(values, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
    # a column with missing values (TTFT of one row) keeps them last
    page.find_element(By.XPATH, "//table[@id='board']/thead//th[normalize-space()='TTFT ms']").click()
    ttft = _column(page, "TTFT ms")
    assert ttft[-1] == "" and all(v != "" for v in ttft[:-1])
    # the KV and memory columns sort as numbers, like the other byte columns
    for name in ("KV B/token", "memory @4k tok"):
        th = page.find_element(By.XPATH, f"//table[@id='board']/thead//th[normalize-space()='{name}']")
        assert th.get_attribute("data-type") == "num", name
        th.click()
        values = [float(v) for v in _column(page, name)]
        assert values == sorted(values), name
    assert len(set(_column(page, "memory @4k tok"))) > 1


def test_filters(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    trainer = Select(page.find_element(By.ID, "filter-trainer"))
    trainer.select_by_value("none")
    assert page.find_element(By.ID, "shown").text == "1 of 6 rows shown"
    assert _column(page, "trainer") == ["none"]
    trainer.select_by_value("")
    bits = Select(page.find_element(By.ID, "filter-bits"))
    bits.select_by_value("W2A16")
    assert sorted(_column(page, "bits")) == ["W2A16", "W2A16"]
    bits.select_by_value("")
    assert page.find_element(By.ID, "shown").text == "6 of 6 rows shown"


def test_store_text_shows_as_text(page):
    from selenium.webdriver.common.by import By

    # the row name with <b> is text, not markup
    names = page.execute_script(
        "return [...document.querySelectorAll('#board tbody tr')].map(tr => tr.cells[1].textContent)"
    )
    assert BOLD_ROW in names
    assert page.execute_script("return document.querySelectorAll('#board b, pre script').length") == 0
    # open the sample whose completion carries the <script>: it reads as text, and nothing ran
    completions = page.find_elements(By.CSS_SELECTOR, "pre.completion")
    target = next(pre for pre in completions if "alert(1)" in pre.get_attribute("textContent"))
    details = target.find_element(By.XPATH, "./ancestor::details")
    details.find_element(By.TAG_NAME, "summary").click()
    assert XSS in target.text
    assert page.execute_script("return document.scripts.length") == 2  # the JSON block and the page's code
    _no_alert(page)
    errors = [entry for entry in page.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert errors == []


def _widths(driver) -> dict:
    return driver.execute_script(
        """const t = document.getElementById('board');
           return {window: window.innerWidth, client: document.documentElement.clientWidth,
                   page: document.documentElement.scrollWidth, right: t.getBoundingClientRect().right,
                   shown: [...t.tHead.rows[0].cells].filter(th => th.offsetWidth > 0).map(th => th.textContent)};"""
    )


def test_the_table_fits_a_1400_pixel_window(page):
    from selenium.webdriver.common.by import By

    board = page.current_url
    try:
        page.get(board.replace("/board/index.html", "/divergence/index.html"))
        widths = _widths(page)
        assert widths["window"] == 1400
        assert widths["right"] <= widths["client"], widths
        assert widths["page"] <= widths["client"], "the page scrolls sideways"
        # the compact view keeps what rows are compared by; how each row was made waits behind the toggle
        assert {"seeds", "problems", "accuracy % (all)", "KL from reference (all)", "top-1 agree %",
                "flips lost / gained", "memory @4k tok"} <= set(widths["shown"])
        assert "TTFT ms" not in widths["shown"] and "kernels" not in widths["shown"]
        page.find_element(By.ID, "all-columns").click()
        every = _widths(page)
        assert {"TTFT ms", "kernels", "tokens / answer", "KL p99"} <= set(every["shown"])
        assert every["page"] <= every["client"], "every column scrolls inside its box, not the page"
    finally:
        page.get(board)
