"""The dashboard's live view: pages re-read when WatchJobs says jobs changed.

While the stream is up, the pages poll only every LIVE_POLL_SECONDS (30 s, read from
provd/web/dom.js), longer than any wait here (chromium.WAIT_SECONDS): a change seen
within a wait, with the page saying "live", came by push. The waits are hang guards,
not timing assertions. Runs in headless Chromium against the in-process server, as
tests/test_dashboard.py does (the browser fixture and helpers: tests/chromium.py).
"""

from __future__ import annotations

import re
from functools import partial
from typing import TYPE_CHECKING

import pytest
import trio

from provd.rpc.dashboard import WEB_DIR
from tests import chromium
from tests.chromium import (
    console_errors,
    field_text,
    in_browser,
    row_status,
    signed_in,
    text_of,
    until,
)
from tests.conftest import Server
from tests.daemon_clients import Jobs, TestDaemon

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

browser = chromium.browser


def live_poll_seconds() -> float:
    """How often a page polls while the stream is up (dom.js's LIVE_POLL_SECONDS)."""
    found = re.search(r"export const LIVE_POLL_SECONDS = (\d+);", (WEB_DIR / "dom.js").read_text())
    assert found, "LIVE_POLL_SECONDS in provd/web/dom.js"
    return float(found.group(1))


def test_the_safety_poll_is_slower_than_any_wait() -> None:
    """What makes the browser tests below prove a push: a page that is live would not
    poll again within the time they wait."""
    assert live_poll_seconds() > chromium.WAIT_SECONDS


@pytest.mark.slow
async def test_status_changes_are_pushed_to_the_jobs_and_job_pages(
    server: Server, browser: WebDriver, nursery: trio.Nursery
) -> None:
    jobs = Jobs(server)
    first = await jobs.create()

    def open_jobs() -> None:
        signed_in(browser, server.url)
        browser.execute_script("window.provdTestMark = 1")  # a reload would wipe it
        until(browser, lambda d: row_status(d, first.id) == "pending", "the job, pending")
        until(browser, lambda d: text_of(d, "jobs-live") == "live", "the page, live")

    await in_browser(open_jobs)

    # A job created, then claimed by a daemon: both pushed to the list.
    second = await jobs.create()
    await in_browser(
        lambda: until(browser, lambda d: row_status(d, second.id) == "pending", "the new job")
    )
    daemon = TestDaemon(server, "pushed")
    assert (await (await daemon.acquire(nursery)).wait()).job_id == first.id
    await in_browser(
        lambda: until(browser, lambda d: row_status(d, first.id) == "running", "running, pushed")
    )
    assert await in_browser(lambda: text_of(browser, "jobs-live")) == "live"

    def open_job() -> None:
        browser.get(f"{server.url}/#/jobs/{second.id}")
        until(browser, lambda d: field_text(d, "status") == "pending", "the second job")
        until(browser, lambda d: text_of(d, "job-live") == "live", "the job page, live")

    await in_browser(open_job)

    # Claimed, then asked to cancel while running (canceling: its logs go on, so only
    # the push can tell the page).
    other = TestDaemon(server, "pushed-too")
    assert (await (await other.acquire(nursery)).wait()).job_id == second.id
    await in_browser(
        lambda: until(browser, lambda d: field_text(d, "status") == "running", "running, pushed")
    )
    await jobs.cancel(second.id)
    await in_browser(
        lambda: until(browser, lambda d: field_text(d, "status") == "canceling", "canceling")
    )
    assert await in_browser(lambda: text_of(browser, "job-live")) == "live"
    assert await in_browser(lambda: browser.execute_script("return window.provdTestMark")) == 1
    assert await in_browser(partial(console_errors, browser)) == []


# Before the page's own scripts: WatchJobs calls fail while `window.provdBlockWatch` is
# set (as a proxy that refuses them would make them), every other call goes through.
BLOCK_WATCH = """
window.provdBlockWatch = true;
const realFetch = window.fetch;
window.fetch = (resource, init) =>
  window.provdBlockWatch && String(resource).includes("/WatchJobs")
    ? Promise.reject(new TypeError("blocked by the test"))
    : realFetch(resource, init);
"""


@pytest.mark.slow
async def test_pages_poll_every_2_s_while_the_stream_is_down(
    server: Server, browser: WebDriver
) -> None:
    """WatchJobs refused: the jobs page says it polls, and a new job shows all the same;
    once the stream can open again, the page is live again without a reload."""
    jobs = Jobs(server)
    script = browser.execute_cdp_cmd(  # type: ignore[attr-defined]
        "Page.addScriptToEvaluateOnNewDocument", {"source": BLOCK_WATCH}
    )
    try:

        def open_jobs() -> None:
            signed_in(browser, server.url)
            browser.execute_script("window.provdTestMark = 1")  # a reload would wipe it
            until(
                browser,
                lambda d: text_of(d, "jobs-live") == "polling every 2 s",
                "the page, polling",
            )

        await in_browser(open_jobs)
        job = await jobs.create()
        await in_browser(
            lambda: until(browser, lambda d: row_status(d, job.id) == "pending", "the new job")
        )
        assert await in_browser(lambda: text_of(browser, "jobs-live")) == "polling every 2 s"

        await in_browser(lambda: browser.execute_script("window.provdBlockWatch = false"))
        await in_browser(
            lambda: until(browser, lambda d: text_of(d, "jobs-live") == "live", "live again")
        )
        assert await in_browser(lambda: browser.execute_script("return window.provdTestMark")) == 1
    finally:
        await in_browser(
            lambda: browser.execute_cdp_cmd(  # type: ignore[attr-defined]
                "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
            )
        )


# Make the page think its tab was hidden or shown again, as switching tabs does.
SET_HIDDEN = """
Object.defineProperty(document, "hidden", {value: arguments[0], configurable: true});
Object.defineProperty(document, "visibilityState",
  {value: arguments[0] ? "hidden" : "visible", configurable: true});
document.dispatchEvent(new Event("visibilitychange"));
"""


@pytest.mark.slow
async def test_a_hidden_tab_lets_its_stream_go(server: Server, browser: WebDriver) -> None:
    """Browsers give an origin six HTTP/1.1 connections across all its tabs: a tab
    hidden for a few seconds closes its WatchJobs stream (provd drops the feed), and
    opens it again when shown."""
    events = server.events
    assert events is not None

    async def feeds_become(count: int) -> None:
        with trio.fail_after(chromium.WAIT_SECONDS):
            while events.statistics().feeds != count:
                await trio.sleep(0.05)

    def open_jobs() -> None:
        signed_in(browser, server.url)
        until(browser, lambda d: text_of(d, "jobs-live") == "live", "the page, live")

    try:
        await in_browser(open_jobs)
        await feeds_become(1)
        await in_browser(lambda: browser.execute_script(SET_HIDDEN, True))
        await feeds_become(0)  # the browser closed it; provd noticed
        await in_browser(lambda: browser.execute_script(SET_HIDDEN, False))
        await in_browser(
            lambda: until(browser, lambda d: text_of(d, "jobs-live") == "live", "live again")
        )
        await feeds_become(1)
    finally:
        await in_browser(lambda: browser.execute_script(SET_HIDDEN, False))
