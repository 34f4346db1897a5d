"""The dashboard's browser tests' shared part: headless Chromium through Selenium, and
the helpers every page's tests use (tests/test_dashboard*.py).

Selenium blocks, so each browser step runs in a worker thread (`in_browser`) while
trio serves the page. Chromium and its driver come from Debian (`apt-get install
chromium chromium-driver`; .ci/run installs them). Without them the `browser` fixture
fails under CI (`CI` set) and skips with the reason elsewhere. A test module uses it
by naming it: `browser = chromium.browser`, and imports Selenium's names it uses (`By`,
`Keys`, `WebDriver`, `ActionChains`) from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from tests.conftest import ADMIN_TOKEN

try:
    from selenium import webdriver
    from selenium.common.exceptions import NoAlertPresentException, TimeoutException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # reported by the `browser` fixture
    webdriver = None  # type: ignore[assignment]
    # Still importable, so the test modules load and their tests report what is missing.
    ActionChains = By = Keys = WebDriver = None  # type: ignore[assignment,misc]

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_SECONDS = 15
PHONE = (390, 844)  # a phone's window, in CSS pixels


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium, one per module; each test loads its own server's page (a
    new origin, so a fresh sessionStorage)."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if webdriver is None:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if missing:
        reason = (
            f"the dashboard's browser tests need {', '.join(missing)}"
            " (apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    options = Options()
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root, in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


async def in_browser(function: Callable[[], T]) -> T:
    """Run a blocking Selenium step in a worker thread, so trio keeps serving."""
    return await trio.to_thread.run_sync(function, abandon_on_cancel=True)


def until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """Wait for `condition` to be truthy (a hang guard, not a timing assertion)."""
    try:
        return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.05).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}") from None


# The page re-renders as it polls: read it in one script each time, never through an
# element found earlier (it may be gone by the next call).


def shown(driver: WebDriver, element_id: str) -> bool:
    script = "const e = document.getElementById(arguments[0]); return !!e && e.checkVisibility()"
    return bool(driver.execute_script(script, element_id))


def sign_in(driver: WebDriver, url: str, token: str) -> None:
    """Load the page and submit `token` in the login form."""
    console_errors(driver)  # forget the previous page's
    driver.get(url + "/")
    until(driver, lambda d: shown(d, "token"), "the login form")
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "login-submit").click()


def signed_in(driver: WebDriver, url: str) -> None:
    sign_in(driver, url, ADMIN_TOKEN)
    until(driver, lambda d: shown(d, "jobs"), "the jobs page")


def field_text(driver: WebDriver, key: str) -> str:
    script = (
        "const e = [...document.querySelectorAll('#job-fields dd')]"
        ".find((d) => d.dataset.field === arguments[0]); return e ? e.textContent : ''"
    )
    return str(driver.execute_script(script, key))


def console_errors(driver: WebDriver) -> list[str]:
    """The page's console errors since the last call: script errors, CSP and Trusted
    Types violations, failed loads."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def no_alert(driver: WebDriver) -> bool:
    try:
        driver.switch_to.alert  # noqa: B018 - raises when there is none
    except NoAlertPresentException:
        return True
    return False


def text_of(driver: WebDriver, element_id: str) -> str:
    script = "const e = document.getElementById(arguments[0]); return e ? e.textContent : ''"
    return str(driver.execute_script(script, element_id))


def open_page(driver: WebDriver, page: str, table_id: str) -> None:
    """Go to a page from the navigation bar with the keyboard (Enter on its link)."""
    driver.find_element(By.ID, f"nav-{page}").send_keys(Keys.ENTER)
    until(driver, lambda d: shown(d, table_id), f"the {page} page")
    current = driver.execute_script(
        "return document.querySelector('#bar nav a[aria-current=page]').id"
    )
    assert current == f"nav-{page}"


def fits_the_width(driver: WebDriver) -> bool:
    """Nothing on the page scrolls sideways."""
    script = "const e = document.documentElement; return e.scrollWidth <= e.clientWidth"
    return bool(driver.execute_script(script))


def row_cells(driver: WebDriver, job_id: str) -> list[str] | None:
    """The text of the job's row in the jobs table; None when it is not there."""
    script = (
        "const row = [...document.querySelectorAll('#jobs-body tr')]"
        ".find((r) => r.dataset.jobId === arguments[0]);"
        " return row ? [row.dataset.status, ...[...row.cells].map((c) => c.textContent)] : null"
    )
    cells: list[str] | None = driver.execute_script(script, job_id)
    return cells


def row_status(driver: WebDriver, job_id: str) -> str | None:
    cells = row_cells(driver, job_id)
    return cells[0] if cells else None
