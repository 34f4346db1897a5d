"""The dashboard's activity page (provd/web/activity.js, charts.js, docs/dashboard.md)
and the jobs table at phone width, in headless Chromium against a real server.

Jobs end through the daemon protocol (a `TestDaemon`) and the job API; the page must
show, for the minute each one finished in, exactly the jobs that finished there by
outcome, and the jobs pending, and follow another job finishing without a reload. The
server runs on the real clock, so the expected minute of each job comes from its own
`completedAt`, never from "now".
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import trio

from provd.gen.provd.v1 import jobs_pb2 as pb
from tests import chromium
from tests.chromium import (
    PHONE,
    By,
    Keys,
    WebDriver,
    console_errors,
    fits_the_width,
    in_browser,
    open_page,
    shown,
    signed_in,
    text_of,
    until,
)
from tests.conftest import Server
from tests.daemon_clients import Jobs, TestDaemon

pytestmark = pytest.mark.slow

# The module-scoped headless Chromium (skipped or failing as tests/chromium.py says).
browser = chromium.browser

MINUTE_MS = 60_000
OUTCOMES = ("succeeded", "failed", "canceled")
STATUS_NAMES = {
    pb.JOB_STATUS_SUCCEEDED: "succeeded",
    pb.JOB_STATUS_FAILED: "failed",
    pb.JOB_STATUS_CANCELED: "canceled",
}


def minutes(driver: WebDriver) -> list[dict[str, Any]]:
    """The page's table of numbers, newest minute first: each row's start (Unix ms),
    label and counts; [] before the first answer."""
    script = (
        "return [...document.querySelectorAll('#activity-numbers tbody tr')].map((r) => ({"
        " start: Number(r.dataset.start), label: r.cells[0].textContent,"
        " succeeded: Number(r.cells[1].textContent), failed: Number(r.cells[2].textContent),"
        " canceled: Number(r.cells[3].textContent), pending: Number(r.cells[4].textContent)}))"
    )
    rows: list[dict[str, Any]] = driver.execute_script(script)
    return rows


def expected_minutes(finished: list[pb.Job]) -> dict[int, Counter[str]]:
    """For each minute (its start, Unix ms) in which some of `finished` completed, how
    many completed there by outcome."""
    by_minute: dict[int, Counter[str]] = {}
    for job in finished:
        start = job.completed_at.ToMilliseconds() // MINUTE_MS * MINUTE_MS
        by_minute.setdefault(start, Counter())[STATUS_NAMES[job.status]] += 1
    return by_minute


def shows(rows: list[dict[str, Any]], finished: list[pb.Job], pending: int) -> bool:
    """The table has an hour of minutes, the finished jobs each in its own minute and
    nothing anywhere else, and `pending` jobs at the end of the newest minute."""
    if len(rows) != 60:
        return False
    wanted = expected_minutes(finished)
    counts = {row["start"]: Counter({k: row[k] for k in OUTCOMES if row[k]}) for row in rows}
    return all(counts.get(start) == count for start, count in wanted.items()) and (
        sum(sum(c.values()) for c in counts.values()) == len(finished)
        and rows[0]["pending"] == pending
    )


async def end_three_ways(server: Server, nursery: trio.Nursery) -> tuple[Jobs, list[pb.Job]]:
    """A job succeeded and one failed (through the daemon protocol), one canceled while
    pending, and one of acme left pending (no daemon offers terraform)."""
    jobs = Jobs(server)
    daemon = TestDaemon(server, "activity-daemon")
    finished = []
    for fail in (False, True):
        job = await jobs.create()
        assert (await (await daemon.acquire(nursery)).wait()).job_id == job.id
        await (daemon.fail(job.id, "boom") if fail else daemon.complete(job.id))
        finished.append(await jobs.get(job.id))
    finished.append(await jobs.cancel((await jobs.create(provisioner="terraform")).id))
    await jobs.create(provisioner="terraform", organization="acme")
    assert [STATUS_NAMES[job.status] for job in finished] == list(OUTCOMES)
    return jobs, finished


def open_activity(driver: WebDriver) -> None:
    open_page(driver, "activity", "activity-finished")
    until(driver, lambda d: len(minutes(d)) == 60, "the activity figures")


def chart_label(driver: WebDriver, box: str) -> str:
    script = "const s = document.querySelector(`#${arguments[0]} svg`); return s ? s.ariaLabel : ''"
    return str(driver.execute_script(script, box))


def bars(driver: WebDriver, outcome: str) -> int:
    script = (
        "return document.querySelectorAll(`#activity-finished rect.bar-${arguments[0]}`).length"
    )
    return int(driver.execute_script(script, outcome))


async def test_activity_shows_each_minutes_jobs_and_follows_a_new_one(
    server: Server, browser: WebDriver, nursery: trio.Nursery
) -> None:
    jobs, finished = await end_three_ways(server, nursery)

    def check() -> None:
        signed_in(browser, server.url)
        browser.execute_script("window.provdTestMark = 1")  # a reload would wipe it
        open_activity(browser)
        until(browser, lambda d: shows(minutes(d), finished, 1), "each job in its minute")
        assert text_of(browser, "activity-pending") == "1"
        assert text_of(browser, "activity-hour") == "1 succeeded, 1 failed, 1 canceled"
        label = chart_label(browser, "activity-finished")
        assert "1 succeeded, 1 failed, 1 canceled in all" in label, label
        assert "1 now" in chart_label(browser, "activity-depth")
        for outcome in OUTCOMES:
            assert bars(browser, outcome) == 1, outcome

    await in_browser(check)

    # Another job finishes: the page follows without a reload.
    daemon = TestDaemon(server, "second-daemon")
    job = await jobs.create()
    assert (await (await daemon.acquire(nursery)).wait()).job_id == job.id
    await daemon.complete(job.id)
    finished.append(await jobs.get(job.id))

    def follows() -> None:
        until(browser, lambda d: shows(minutes(d), finished, 1), "the new job in its minute")
        until(
            browser,
            lambda d: text_of(d, "activity-hour") == "2 succeeded, 1 failed, 1 canceled",
            "the hour's total",
        )
        assert browser.execute_script("return window.provdTestMark") == 1

    await in_browser(follows)
    assert await in_browser(partial(console_errors, browser)) == []


async def test_activity_filters_by_organization(
    server: Server, browser: WebDriver, nursery: trio.Nursery
) -> None:
    _jobs, finished = await end_three_ways(server, nursery)

    def organization(name: str) -> None:
        field = browser.find_element(By.ID, "activity-organization")
        field.clear()
        field.send_keys(name, Keys.ENTER)

    def check() -> None:
        signed_in(browser, server.url)
        open_activity(browser)
        organization("acme")
        until(browser, lambda d: shows(minutes(d), [], 1), "acme's pending job alone")
        assert text_of(browser, "activity-hour") == "0 succeeded, 0 failed, 0 canceled"
        assert "Jobs of acme" in chart_label(browser, "activity-finished")
        organization("default")
        until(browser, lambda d: shows(minutes(d), finished, 0), "default's finished jobs")
        organization("")
        until(browser, lambda d: shows(minutes(d), finished, 1), "every organization")

    await in_browser(check)
    assert await in_browser(partial(console_errors, browser)) == []


async def test_activity_times_are_the_browsers_local_time(
    server: Server, browser: WebDriver
) -> None:
    """In a browser set to Kolkata (UTC+5:30, no daylight saving), each minute is
    labelled with Kolkata's time, on the chart's axis and in the table."""
    kolkata = timedelta(hours=5, minutes=30)

    def local(start_ms: int) -> str:
        return (datetime.fromtimestamp(start_ms / 1000, UTC) + kolkata).strftime("%H:%M")

    def check() -> None:
        browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Kolkata"})
        try:
            signed_in(browser, server.url)
            open_activity(browser)
            rows = minutes(browser)
            assert [row["label"] for row in rows] == [local(row["start"]) for row in rows]
            axis = browser.execute_script(
                "return [...document.querySelectorAll('#activity-finished text.chart-label')]"
                ".map((t) => t.textContent)"
            )
            assert local(rows[0]["start"]) in axis, axis  # the newest minute is labelled
        finally:
            browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ""})

    await in_browser(check)


def first_label(driver: WebDriver, table: str) -> str:
    """What a narrow screen shows before the first cell's value: its column's name."""
    script = (
        "const td = document.querySelector(`#${arguments[0]}-body td[data-label]`);"
        " return td ? getComputedStyle(td, '::before').content : ''"
    )
    return str(driver.execute_script(script, table))


async def test_jobs_and_activity_fit_a_phone(
    server: Server, browser: WebDriver, nursery: trio.Nursery
) -> None:
    """At phone width the jobs table shows each job as a card (each value under its
    column's name, no header row), and neither page scrolls sideways."""
    jobs = Jobs(server)
    job = await jobs.create(tags={"team": "a-team-with-a-rather-long-name", "region": "eu-west"})

    def on_a_phone() -> None:
        size = browser.get_window_size()
        browser.set_window_size(*PHONE)
        try:
            signed_in(browser, server.url)
            until(
                browser,
                lambda d: shown(d, "jobs-body") and job.id in text_of(d, "jobs-body"),
                "the job",
            )
            assert first_label(browser, "jobs") == '"ID"'
            header = "return getComputedStyle(document.querySelector('#jobs thead')).display"
            assert browser.execute_script(header) == "none"
            labels = browser.execute_script(
                "return [...document.querySelectorAll('#jobs-body tr:first-child td')]"
                ".map((td) => td.dataset.label)"
            )
            assert labels == [
                "ID",
                "Type",
                "Status",
                "Provisioner",
                "Organization",
                "Tags",
                "Created",
                "Queue",
            ]
            display = "return getComputedStyle(document.querySelector('#jobs-body tr')).display"
            assert browser.execute_script(display) == "block"
            assert fits_the_width(browser)
            open_activity(browser)
            assert fits_the_width(browser)
        finally:
            browser.set_window_size(size["width"], size["height"])

    await in_browser(on_a_phone)
    assert await in_browser(partial(console_errors, browser)) == []
