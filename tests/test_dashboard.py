"""The web dashboard (provd/web/, rpc/dashboard.py, docs/dashboard.md).

The HTTP checks (headers, 404s, no path traversal, the asset table) run without a
browser. The rest drive the real page in headless Chromium through Selenium against
the in-process server: sign-in, the jobs list updating live, a job's page following
its logs and showing its inputs with secrets masked, escaping of what jobs and logs
contain, Cancel, the daemons page (a daemon connecting and taking a job, and one going
stale) and the quota page (allowances per organization), at desktop and phone width;
last, a screenshot of every page into the session's temporary directory. Selenium
blocks, so each browser step runs in a worker thread while trio serves the page.

Chromium and its driver come from Debian (`apt-get install chromium chromium-driver`;
.ci/run installs them). Without them these tests fail under CI (`CI` set) and are
skipped with the reason elsewhere.
"""

from __future__ import annotations

import http.client
import re
import tomllib
from fnmatch import fnmatch
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio

from provd.client.connect import call, key_client, quota_client
from provd.gen.provd.v1 import jobs_pb2 as pb
from provd.gen.provd.v1 import keys_pb2 as kpb
from provd.gen.provd.v1 import quota_pb2 as qpb
from provd.gen.provisionerd import provisionerd_pb2 as pd
from provd.gen.provisionersdk import provisioner_pb2 as sdk
from provd.model import DEFAULT_ORGANIZATION
from provd.rpc.dashboard import ASSETS, CONTENT_SECURITY_POLICY, WEB_DIR
from tests import chromium
from tests.chromium import (
    By,
    Keys,
    WebDriver,
    console_errors,
    field_text,
    in_browser,
    no_alert,
    open_page,
    row_cells,
    row_status,
    shown,
    sign_in,
    signed_in,
    text_of,
    until,
)
from tests.conftest import ADMIN_TOKEN, Server, ServerFactory
from tests.daemon_clients import Jobs, TestDaemon, wait_until

ROOT = Path(__file__).resolve().parent.parent
XSS = "<img src=x onerror=alert(1)>"
MASK = "••••••"  # a secret, as the job page shows it

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


# --- HTTP, no browser


def _get(
    url: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """GET `path` exactly as given (no normalisation of `..` or escapes)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def _assert_secure(headers: dict[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (name, headers)
    policy = headers["content-security-policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ):
        assert directive in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


async def test_page_asset_and_404_carry_the_security_headers(server: Server) -> None:
    status, headers, body = await trio.to_thread.run_sync(_get, server.url, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-cache" and headers["etag"]
    assert b'<script type="module" src="/ui/app.js">' in body
    _assert_secure(headers)

    status, headers, body = await trio.to_thread.run_sync(_get, server.url, "/ui/app.js")
    assert status == 200
    assert headers["content-type"] == "text/javascript; charset=utf-8"
    assert body == (WEB_DIR / "app.js").read_bytes()
    _assert_secure(headers)

    # Unchanged since the browser's copy: 304, no body, headers still strict.
    status, again, body = await trio.to_thread.run_sync(
        partial(_get, server.url, "/ui/app.js", {"If-None-Match": headers["etag"]})
    )
    assert (status, body) == (304, b"")
    _assert_secure(again)

    status, headers, body = await trio.to_thread.run_sync(_get, server.url, "/ui/nope.js")
    assert (status, body) == (404, b"not found\n")
    assert headers["cache-control"] == "no-store"
    _assert_secure(headers)


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../pyproject.toml",
        "/ui/../rpc/dashboard.py",
        "/ui/%2e%2e/rpc/dashboard.py",
        "/ui/..%2fapp.js",
        "/ui//app.js",
        "/ui/./app.js",
        "/ui/app.js/",
        "/ui/APP.JS",
        "/ui/",
        "/ui/index.html",
        "/index.html",
        "/ui/dashboard.py",
    ],
)
async def test_only_the_asset_table_is_reachable(server: Server, path: str) -> None:
    status, headers, body = await trio.to_thread.run_sync(_get, server.url, path)
    assert status == 404, (path, body[:200])
    if path.startswith("/ui/"):
        _assert_secure(headers)


async def test_other_methods_are_refused(server: Server) -> None:
    def post() -> tuple[int, str]:
        parts = urlsplit(server.url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        try:
            connection.request("POST", "/", body=b"x")
            response = connection.getresponse()
            response.read()
            return response.status, response.getheader("allow") or ""
        finally:
            connection.close()

    assert await trio.to_thread.run_sync(post) == (405, "GET, HEAD")


def test_the_asset_table_matches_provd_web_and_the_package_data() -> None:
    """Every file in provd/web/ is served, every module a module imports is in the
    table, and pyproject.toml's package data ships them all."""
    served = {name for name, _type in ASSETS.values()}
    assert served == {path.name for path in WEB_DIR.iterdir() if path.is_file()}
    for name in served:
        if name.endswith(".js"):
            text = (WEB_DIR / name).read_text()
            for imported in re.findall(r'from "\./([^"]+)"', text):
                assert f"/ui/{imported}" in ASSETS, (name, imported)
            assert "innerHTML" not in text and "insertAdjacentHTML" not in text, name
            assert "document.write" not in text and "eval(" not in text, name
    html = (WEB_DIR / "index.html").read_text()
    for reference in re.findall(r'(?:src|href)="(/[^"]*)"', html):
        assert reference in ASSETS, reference
    assert "style=" not in html and "<style" not in html  # the CSP forbids inline styles
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None  # and inline scripts

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["provd"]
    for name in served:
        assert any(fnmatch(f"web/{name}", pattern) for pattern in patterns), name


def test_the_pages_default_organization_is_provds() -> None:
    """The one copy of provd's default organization in the dashboard (api.js) is the
    model's; the pages import it rather than spell it again."""
    api = (WEB_DIR / "api.js").read_text()
    (value,) = re.findall(r'export const DEFAULT_ORGANIZATION = "([^"]*)";', api)
    assert value == DEFAULT_ORGANIZATION
    for path in WEB_DIR.glob("*.js"):
        if path.name != "api.js":
            assert "const DEFAULT_ORGANIZATION" not in path.read_text(), path.name


# --- in Chromium (the browser fixture and the shared helpers: tests/chromium.py)

browser = chromium.browser


@pytest.mark.slow
async def test_sign_in_keeps_the_token_in_session_storage_only(
    server: Server, browser: WebDriver
) -> None:
    url = server.url

    def wrong_then_right() -> None:
        sign_in(browser, url, "not-the-token")
        until(browser, lambda d: shown(d, "login-error"), "the login error")
        assert "refused" in browser.find_element(By.ID, "login-error").text
        assert shown(browser, "login") and not shown(browser, "jobs")
        assert browser.execute_script("return sessionStorage.length") == 0

        sign_in(browser, url, ADMIN_TOKEN)
        until(browser, lambda d: shown(d, "jobs"), "the jobs page")
        assert not shown(browser, "login")
        stored = browser.execute_script("return Object.values(sessionStorage)")
        assert stored == [ADMIN_TOKEN]
        assert browser.get_cookies() == []
        assert browser.execute_script("return document.cookie") == ""
        assert ADMIN_TOKEN not in browser.current_url
        assert browser.execute_script("return localStorage.length") == 0

        # Survives a reload of the tab without asking again.
        browser.refresh()
        until(browser, lambda d: shown(d, "jobs"), "the jobs page after a reload")

        # A token the server no longer takes: back to the login form, token dropped.
        browser.execute_script("sessionStorage.setItem(sessionStorage.key(0), 'stale')")
        browser.refresh()
        until(browser, lambda d: shown(d, "login-error"), "the login form for a stale token")
        assert "Signed out" in browser.find_element(By.ID, "login-error").text
        assert browser.execute_script("return sessionStorage.length") == 0

        # Log out clears it.
        signed_in(browser, url)
        browser.find_element(By.ID, "logout").click()
        until(browser, lambda d: shown(d, "login"), "the login form after log out")
        assert browser.execute_script("return sessionStorage.length") == 0
        assert ADMIN_TOKEN not in browser.current_url

    await in_browser(wrong_then_right)


@pytest.mark.slow
async def test_jobs_page_follows_a_job_without_a_reload(
    server: Server, browser: WebDriver, nursery: trio.Nursery
) -> None:
    jobs = Jobs(server)
    await in_browser(partial(signed_in, browser, server.url))
    # A mark on the window: a reload would wipe it.
    await in_browser(lambda: browser.execute_script("window.provdTestMark = 1"))

    job = await jobs.create(tags={"team": "web"})
    await in_browser(
        lambda: until(browser, lambda d: row_status(d, job.id) == "pending", "the new job, pending")
    )

    cells = await in_browser(lambda: row_cells(browser, job.id))
    assert cells is not None
    cells = cells[1:]
    assert cells[0] == job.id
    assert cells[1:5] == ["template import", "pending", "echo", "default"]
    assert "team=web" in cells[5]
    # The queue position, and why it waits at a glance (the reason whole on hover).
    assert cells[7] == "1 of 1No connected daemon can take this job"
    note = await in_browser(
        lambda: browser.execute_script(
            "const n = document.querySelector(`#jobs-body tr[data-job-id='${arguments[0]}']"
            " .pending-reason`); return n && [n.className, n.title]",
            job.id,
        )
    )
    assert note[0] == "pending-reason unroutable"
    assert note[1].startswith("No connected daemon can take this job: no daemon is connected")

    daemon = TestDaemon(server, "browser-daemon", tags={"team": "web"})
    assert (await (await daemon.acquire(nursery)).wait()).job_id == job.id
    await in_browser(
        lambda: until(browser, lambda d: row_status(d, job.id) == "running", "running")
    )
    await daemon.complete(job.id)
    await in_browser(
        lambda: until(browser, lambda d: row_status(d, job.id) == "succeeded", "succeeded")
    )
    assert await in_browser(lambda: browser.execute_script("return window.provdTestMark")) == 1

    # The status filter asks the server for pending jobs only.
    other = await jobs.create()

    def filter_pending() -> None:
        browser.find_element(
            By.CSS_SELECTOR, "#filter-status option[value=JOB_STATUS_PENDING]"
        ).click()
        until(
            browser,
            lambda d: row_status(d, other.id) == "pending" and row_status(d, job.id) is None,
            "the pending filter",
        )

    await in_browser(filter_pending)
    # browser-daemon, done with its job and seen moments ago, could take a team=web job:
    # that one waits its turn; the untagged one is for an untagged daemon.
    mine = await jobs.create(tags={"team": "web"})
    await in_browser(
        lambda: until(
            browser,
            lambda d: (c := row_cells(d, mine.id)) and c[8] == "1 of 1Waiting for a free daemon",
            "the team=web job waiting for a free daemon",
        )
    )
    untagged = await in_browser(lambda: row_cells(browser, other.id))
    assert untagged is not None and untagged[8] == "1 of 1No connected daemon can take this job"
    assert await in_browser(partial(console_errors, browser)) == []


@pytest.mark.slow
async def test_job_page_follows_logs_as_text(
    server: Server, browser: WebDriver, nursery: trio.Nursery
) -> None:
    jobs = Jobs(server)
    job = await jobs.create()
    daemon = TestDaemon(server, "log-daemon")
    assert (await (await daemon.acquire(nursery)).wait()).job_id == job.id

    def open_job() -> None:
        signed_in(browser, server.url)
        browser.get(f"{server.url}/#/jobs/{job.id}")
        until(browser, lambda d: field_text(d, "status") == "running", "the running job")
        until(browser, lambda d: "log-daemon" in field_text(d, "daemon"), "the daemon's name")

    await in_browser(open_job)

    def log(output: str, level: int = sdk.INFO) -> pd.Log:
        return pd.Log(source=pd.PROVISIONER, level=level, stage="Plan", output=output)  # type: ignore[arg-type]

    def outputs() -> list[str]:
        script = (
            "return [...document.querySelectorAll('#job-logs .line .output')]"
            ".map((e) => e.textContent)"
        )
        lines: list[str] = browser.execute_script(script)
        return lines

    await daemon.update(job.id, logs=[log("first line"), log(XSS, sdk.ERROR)])
    await in_browser(lambda: until(browser, lambda d: XSS in outputs(), "the lines"))
    assert (await in_browser(outputs))[-2:] == ["first line", XSS]
    assert (
        await in_browser(
            lambda: browser.execute_script("return document.querySelectorAll('img').length")
        )
        == 0
    )
    assert await in_browser(lambda: no_alert(browser))

    # Follows the end while the view is at its end...
    await daemon.update(job.id, logs=[log(f"line {n}") for n in range(200)])

    def at_end() -> bool:
        return bool(
            browser.execute_script(
                "const l = document.getElementById('job-logs');"
                " return l.scrollHeight > l.clientHeight"
                " && l.scrollHeight - l.scrollTop - l.clientHeight <= 8"
            )
        )

    await in_browser(
        lambda: until(browser, lambda d: "line 199" in outputs() and at_end(), "auto-scroll")
    )

    # ...and stays where the user scrolled up to.
    await in_browser(
        lambda: browser.execute_script("document.getElementById('job-logs').scrollTop = 0")
    )
    await in_browser(lambda: until(browser, lambda d: shown(d, "log-follow"), "Follow button"))
    await daemon.update(job.id, logs=[log("after scrolling up")])
    await in_browser(lambda: until(browser, lambda d: "after scrolling up" in outputs(), "line"))
    assert (
        await in_browser(
            lambda: browser.execute_script("return document.getElementById('job-logs').scrollTop")
        )
        == 0
    )

    await daemon.complete(job.id)
    await in_browser(
        lambda: until(
            browser,
            lambda d: (
                d.execute_script("return document.getElementById('log-state').textContent")
                == "complete"
                and field_text(d, "status") == "succeeded"
            ),
            "the end of the logs and the job",
        )
    )
    assert await in_browser(lambda: field_text(browser, "completed"))
    assert not await in_browser(lambda: shown(browser, "cancel-job"))
    # Every line once, in order, despite batching and provd's own lines among them.
    shown_lines = await in_browser(outputs)
    assert shown_lines == [line.output for line in await jobs.logs(job.id)]
    mine = ["first line", XSS, *(f"line {n}" for n in range(200)), "after scrolling up"]
    assert [line for line in shown_lines if line in mine] == mine
    assert await in_browser(partial(console_errors, browser)) == []


@pytest.mark.slow
async def test_cancel_a_pending_job_after_confirming(server: Server, browser: WebDriver) -> None:
    jobs = Jobs(server)
    job = await jobs.create()

    def cancel() -> None:
        signed_in(browser, server.url)
        browser.get(f"{server.url}/#/jobs/{job.id}")
        until(browser, lambda d: shown(d, "cancel-job"), "the Cancel button")
        assert field_text(browser, "status") == "pending"
        assert field_text(browser, "queue") == "1 of 1"

        # Dismissing the confirmation leaves the job alone.
        browser.find_element(By.ID, "cancel-job").click()
        until(browser, lambda d: not no_alert(d), "the confirmation")
        browser.switch_to.alert.dismiss()

    await in_browser(cancel)
    assert (await jobs.get(job.id)).status == pb.JOB_STATUS_PENDING

    def confirm() -> None:
        browser.find_element(By.ID, "cancel-job").click()
        until(browser, lambda d: not no_alert(d), "the confirmation")
        alert = browser.switch_to.alert
        assert job.id in alert.text
        alert.accept()
        until(browser, lambda d: field_text(d, "status") == "canceled", "canceled")
        assert field_text(browser, "canceled")
        assert not shown(browser, "cancel-job")

    await in_browser(confirm)
    assert (await jobs.get(job.id)).status == pb.JOB_STATUS_CANCELED
    assert await in_browser(partial(console_errors, browser)) == []


@pytest.mark.slow
async def test_jobs_page_pages_and_filters_by_tags(server: Server, browser: WebDriver) -> None:
    jobs = Jobs(server)
    oldest = await jobs.create(tags={"team": "web"})
    for _ in range(50):  # one page (50) more
        await jobs.create()

    def page_through() -> None:
        signed_in(browser, server.url)
        until(
            browser,
            lambda d: not d.find_element(By.ID, "page-older").get_property("disabled"),
            "a second page",
        )
        assert row_status(browser, oldest.id) is None
        assert browser.find_element(By.ID, "page-newer").get_property("disabled")
        browser.find_element(By.ID, "page-older").click()
        until(browser, lambda d: row_status(d, oldest.id) == "pending", "the oldest job on page 2")
        assert browser.find_element(By.ID, "page-label").text == "page 2"
        browser.find_element(By.ID, "page-newer").click()
        until(browser, lambda d: row_status(d, oldest.id) is None, "page 1 again")

        tags = browser.find_element(By.ID, "filter-tags")
        tags.send_keys("team=web")
        tags.submit()
        until(
            browser,
            lambda d: (
                d.execute_script("return document.querySelectorAll('#jobs-body tr').length") == 1
                and row_status(d, oldest.id) == "pending"
            ),
            "the tag filter",
        )
        tags.clear()
        tags.send_keys("no-equals-sign")
        tags.submit()
        until(browser, lambda d: shown(d, "jobs-error"), "the filter's error")
        assert "key=value" in browser.find_element(By.ID, "jobs-error").text

    await in_browser(page_through)
    assert await in_browser(partial(console_errors, browser)) == []


def listed(driver: WebDriver) -> list[tuple[str, str]]:
    """(id, type) of every job row on the jobs page, top to bottom."""
    script = (
        "return [...document.querySelectorAll('#jobs-body tr[data-job-id]')]"
        ".map((r) => [r.dataset.jobId, r.cells[1].textContent])"
    )
    return [tuple(row) for row in driver.execute_script(script)]


@pytest.mark.slow
async def test_jobs_page_filters_by_type(server: Server, browser: WebDriver) -> None:
    """The Type select asks the server for one type's jobs; with Status, both apply;
    the filter is kept on a visit to a job and back; "any" lists every type again."""
    jobs = Jobs(server)
    imported = await jobs.create()
    build = await jobs.create("workspace_build")
    dry_run = await jobs.create("template_dry_run")
    canceled_build = await jobs.create("workspace_build")
    await jobs.cancel(canceled_build.id)
    everything = [
        (canceled_build.id, "workspace build"),
        (dry_run.id, "template dry run"),
        (build.id, "workspace build"),
        (imported.id, "template import"),
    ]

    def choose(select: str, value: str) -> None:
        browser.find_element(By.CSS_SELECTOR, f"#{select} option[value='{value}']").click()

    def filter_by_type() -> None:
        signed_in(browser, server.url)
        until(browser, lambda d: listed(d) == everything, "every job")
        options = browser.execute_script(
            "return [...document.querySelectorAll('#filter-type option')].map((o) => o.text)"
        )
        assert options == ["any", "template import", "workspace build", "template dry run"]

        choose("filter-type", "JOB_TYPE_WORKSPACE_BUILD")
        until(browser, lambda d: listed(d) == [everything[0], everything[2]], "the builds")
        choose("filter-status", "JOB_STATUS_PENDING")
        until(browser, lambda d: listed(d) == [everything[2]], "the pending build")

        choose("filter-type", "JOB_TYPE_TEMPLATE_DRY_RUN")
        until(browser, lambda d: listed(d) == [everything[1]], "the pending dry run")
        # Kept on a visit to a job and back.
        browser.get(f"{server.url}/#/jobs/{dry_run.id}")
        until(browser, lambda d: field_text(d, "type") == "template dry run", "the dry run")
        browser.get(f"{server.url}/#/jobs")
        until(browser, lambda d: listed(d) == [everything[1]], "the filter, kept")
        value = "return document.getElementById('filter-type').value"
        assert browser.execute_script(value) == "JOB_TYPE_TEMPLATE_DRY_RUN"

        choose("filter-status", "")
        choose("filter-type", "")
        until(browser, lambda d: listed(d) == everything, "every job again")

    await in_browser(filter_by_type)
    assert await in_browser(partial(console_errors, browser)) == []


# --- daemons and quota


LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")


def daemon_row(driver: WebDriver, name: str) -> dict[str, Any] | None:
    """The daemon's row on the daemons page: its state, the text of its cells and the
    href of its job link; None when it is not there."""
    script = (
        "const row = [...document.querySelectorAll('#daemons-body tr[data-daemon-id]')]"
        ".find((r) => r.cells[0].textContent === arguments[0]);"
        " if (!row) return null;"
        " const link = row.querySelector('td.daemon-job a');"
        " return {state: row.dataset.state, cells: [...row.cells].map((c) => c.textContent),"
        " job: link ? link.getAttribute('href') : null}"
    )
    row: dict[str, Any] | None = driver.execute_script(script, name)
    return row


def allowance_rows(driver: WebDriver) -> list[list[str]]:
    """The quota table's allowances, as [kind, subject, allowance] per row (not the
    Delete button's cell)."""
    script = (
        "return [...document.querySelectorAll('#quota-body tr[data-kind]')]"
        ".map((r) => [...r.cells].slice(0, 3).map((c) => c.textContent))"
    )
    rows: list[list[str]] = driver.execute_script(script)
    return rows


def images(driver: WebDriver) -> int:
    return int(driver.execute_script("return document.querySelectorAll('img').length"))


async def set_allowance(server: Server, **allowance: Any) -> None:
    client = quota_client(server.url, ADMIN_TOKEN)
    request = qpb.SetAllowanceRequest(allowance=qpb.Allowance(**allowance))
    await call(client.set_allowance, request)


@pytest.mark.slow
async def test_daemons_page_shows_a_daemon_connecting_and_taking_a_job(
    server: Server, browser: WebDriver, nursery: trio.Nursery
) -> None:
    keys = key_client(server.url, ADMIN_TOKEN)
    key = await call(keys.create_key, kpb.CreateKeyRequest(name="web-key", tags={"team": "web"}))
    daemon = TestDaemon(server, "web-daemon", provisioners=("echo", "terraform"), key=key.secret)

    def open_daemons() -> None:
        signed_in(browser, server.url)
        browser.execute_script("window.provdTestMark = 1")  # a reload would wipe it
        open_page(browser, "daemons", "daemons")
        until(browser, lambda d: "No daemon" in text_of(d, "daemons-body"), "the empty list")

    await in_browser(open_daemons)

    # Connected: an acquire stream open, waiting for a job.
    acquisition = await daemon.acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().waiters == 1)
    row = await in_browser(
        lambda: until(
            browser,
            lambda d: (r := daemon_row(d, "web-daemon")) and r["state"] == "connected" and r,
            "the daemon, connected",
        )
    )
    name, organization, state, job_cell, provisioners, tags, used_key, last_seen = row["cells"]
    assert (name, organization, state, job_cell) == ("web-daemon", "default", "connected", "")
    assert provisioners == "echo, terraform"
    assert tags == "owner=, scope=organization, team=web"
    assert used_key == f"web-key ({key.key.id})"
    assert LOCAL_TIME.match(last_seen), last_seen
    assert row["job"] is None

    # Holding a job: its id, linking to the job's page.
    job = await Jobs(server).create(tags={"team": "web"})
    assert (await acquisition.wait()).job_id == job.id
    await in_browser(
        lambda: until(
            browser,
            lambda d: (r := daemon_row(d, "web-daemon")) and r["job"] == f"#/jobs/{job.id}",
            "the daemon's job",
        )
    )
    row = await in_browser(lambda: daemon_row(browser, "web-daemon"))
    assert row is not None
    assert (row["state"], row["cells"][3]) == ("connected", job.id)
    assert await in_browser(lambda: browser.execute_script("return window.provdTestMark")) == 1

    def follow_the_link() -> None:
        link = browser.find_element(By.CSS_SELECTOR, "#daemons-body td.daemon-job a")
        link.send_keys(Keys.ENTER)  # keyboard-usable
        until(browser, lambda d: text_of(d, "job-id") == job.id, "the job's page")
        until(browser, lambda d: field_text(d, "status") == "running", "the running job")
        until(browser, lambda d: "web-daemon" in field_text(d, "daemon"), "the daemon's name")

    await in_browser(follow_the_link)

    # Done: no job any more, and no stream open.
    await daemon.complete(job.id)

    def back_to_daemons() -> None:
        open_page(browser, "daemons", "daemons")
        until(
            browser,
            lambda d: (
                (r := daemon_row(d, "web-daemon")) and r["job"] is None and r["cells"][3] == ""
            ),
            "the daemon without a job",
        )
        row = daemon_row(browser, "web-daemon")
        assert row is not None and row["state"] == "idle"  # seen lately, no stream, no job
        assert "1 daemon, 0 connected" in text_of(browser, "daemons-count")

    await in_browser(back_to_daemons)
    assert await in_browser(partial(console_errors, browser)) == []


@pytest.mark.slow
async def test_quota_page_shows_an_organizations_allowances(
    server: Server, browser: WebDriver
) -> None:
    await set_allowance(server, organization="acme", group="builders", allowance=40)
    await set_allowance(server, organization="acme", user_id="alice", allowance=5)

    def open_quota() -> None:
        signed_in(browser, server.url)
        open_page(browser, "quota", "quota")
        assert browser.find_element(By.ID, "quota-organization").get_property("value") == "default"
        until(browser, lambda d: "default has no quota" in text_of(d, "quota-body"), "no quota")
        assert allowance_rows(browser) == []

    await in_browser(open_quota)

    # Set while the page is open: it appears without a reload.
    await set_allowance(server, user_id="bob", allowance=3)  # the default organization
    await in_browser(
        lambda: until(browser, lambda d: allowance_rows(d) == [["user", "bob", "3"]], "bob's")
    )

    def show_acme() -> None:
        field = browser.find_element(By.ID, "quota-organization")
        field.clear()
        field.send_keys("acme", Keys.ENTER)
        until(
            browser,
            lambda d: allowance_rows(d) == [["group", "builders", "40"], ["user", "alice", "5"]],
            "acme's allowances",
        )
        assert text_of(browser, "quota-shown") == "· acme"

    await in_browser(show_acme)
    await set_allowance(server, organization="acme", user_id="alice", allowance=0)
    await in_browser(
        lambda: until(
            browser,
            lambda d: allowance_rows(d) == [["group", "builders", "40"], ["user", "alice", "0"]],
            "alice's new allowance",
        )
    )

    def bad_organization() -> None:
        field = browser.find_element(By.ID, "quota-organization")
        field.clear()
        field.send_keys("not an organization!", Keys.ENTER)
        until(browser, lambda d: shown(d, "quota-error"), "the server's refusal")
        assert "organization" in text_of(browser, "quota-error")
        assert allowance_rows(browser) == []  # not acme's under another name

    assert await in_browser(partial(console_errors, browser)) == []
    await in_browser(bad_organization)
    # The browser logs the refused calls (400), and nothing else.
    for error in await in_browser(partial(console_errors, browser)):
        assert "/provd.v1.QuotaService/ListAllowances" in error and "400" in error, error


async def allowances_of(server: Server, organization: str) -> list[tuple[str, str, int]]:
    """What provd holds: (kind, subject, credits) of each allowance of `organization`."""
    client = quota_client(server.url, ADMIN_TOKEN)
    request = qpb.ListAllowancesRequest(organization=organization)
    response = await call(client.list_allowances, request)
    return [
        ("group", a.group, a.allowance)
        if a.WhichOneof("subject") == "group"
        else ("user", a.user_id, a.allowance)
        for a in response.allowances
    ]


@pytest.mark.slow
async def test_quota_page_sets_and_deletes_allowances(server: Server, browser: WebDriver) -> None:
    """Set from the form (a new one, then a change), refused with provd's message, and
    deleted from its row once confirmed (dismissing leaves it)."""
    await set_allowance(server, organization="acme", group="builders", allowance=40)

    def set_from_form(kind: str, subject: str, credits: str) -> None:
        browser.find_element(By.CSS_SELECTOR, f"#allowance-kind option[value={kind}]").click()
        field = browser.find_element(By.ID, "allowance-subject")
        field.clear()
        field.send_keys(subject)
        amount = browser.find_element(By.ID, "allowance-credits")
        amount.clear()
        amount.send_keys(credits, Keys.ENTER)

    def add_and_change() -> None:
        signed_in(browser, server.url)
        open_page(browser, "quota", "quota")
        field = browser.find_element(By.ID, "quota-organization")
        field.clear()
        field.send_keys("acme", Keys.ENTER)
        until(browser, lambda d: allowance_rows(d) == [["group", "builders", "40"]], "acme's")
        assert text_of(browser, "allowance-heading") == "Set an allowance in acme"
        set_from_form("user", "alice", "5")
        until(
            browser,
            lambda d: allowance_rows(d) == [["group", "builders", "40"], ["user", "alice", "5"]],
            "alice's allowance, set from the form",
        )
        set_from_form("group", "builders", "12")
        until(
            browser,
            lambda d: allowance_rows(d) == [["group", "builders", "12"], ["user", "alice", "5"]],
            "the builders' allowance, changed",
        )

    await in_browser(add_and_change)
    assert await allowances_of(server, "acme") == [("group", "builders", 12), ("user", "alice", 5)]

    def refused() -> None:
        set_from_form("user", "", "3")  # no subject: provd says which field
        until(browser, lambda d: shown(d, "allowance-error"), "the refusal")
        assert text_of(browser, "allowance-error").startswith("Cannot set the allowance:")

    await in_browser(refused)
    assert len(await allowances_of(server, "acme")) == 2

    def delete(confirmed: bool) -> None:
        browser.find_element(
            By.CSS_SELECTOR, "#quota-body tr[data-subject=alice] .allowance-delete"
        ).click()
        until(browser, lambda d: not no_alert(d), "the confirmation")
        alert = browser.switch_to.alert
        assert alert.text == "Delete the allowance of user alice in acme?"
        if confirmed:
            alert.accept()
            until(
                browser,
                lambda d: allowance_rows(d) == [["group", "builders", "12"]],
                "alice's allowance gone",
            )
        else:
            alert.dismiss()

    await in_browser(lambda: delete(False))
    assert len(await allowances_of(server, "acme")) == 2
    await in_browser(lambda: delete(True))
    assert await allowances_of(server, "acme") == [("group", "builders", 12)]
    # The browser logs the refused SetAllowance (400), and nothing else.
    for error in await in_browser(partial(console_errors, browser)):
        assert "/provd.v1.QuotaService/SetAllowance" in error and "400" in error, error


@pytest.mark.slow
async def test_daemon_and_quota_text_is_shown_as_text(
    server: Server, browser: WebDriver, nursery: trio.Nursery
) -> None:
    """A daemon name, a tag value and an allowance's subject that look like HTML are
    shown as those characters, and make no element."""
    daemon = TestDaemon(server, XSS, tags={"note": XSS})
    acquisition = await daemon.acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().waiters == 1)
    await set_allowance(server, group=XSS, allowance=7)

    def check() -> None:
        signed_in(browser, server.url)
        open_page(browser, "daemons", "daemons")
        row = until(browser, lambda d: daemon_row(d, XSS), "the daemon")
        assert row["cells"][0] == XSS
        assert row["cells"][5] == f"note={XSS}, owner=, scope=organization"
        assert row["cells"][6] == "pre-shared key"
        assert images(browser) == 0 and no_alert(browser)

        open_page(browser, "quota", "quota")
        until(browser, lambda d: allowance_rows(d) == [["group", XSS, "7"]], "the allowance")
        assert images(browser) == 0 and no_alert(browser)

    await in_browser(check)
    assert await in_browser(partial(console_errors, browser)) == []
    acquisition.requests.cancel()
    await acquisition.wait()


@pytest.mark.slow
async def test_daemons_and_quota_fit_a_phone(
    server: Server, browser: WebDriver, nursery: trio.Nursery
) -> None:
    """At phone width the tables stack (a card per row, each value under its column's
    name) and nothing scrolls sideways."""
    daemon = TestDaemon(server, "a-daemon-with-a-rather-long-name", tags={"region": "eu-west"})
    acquisition = await daemon.acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().waiters == 1)
    await set_allowance(server, group="a-group-with-a-rather-long-name", allowance=12)

    def fits() -> bool:
        return bool(
            browser.execute_script(
                "const e = document.documentElement; return e.scrollWidth <= e.clientWidth"
            )
        )

    def label_of_first_cell(table: str) -> str:
        script = (
            "const td = document.querySelector(`#${arguments[0]}-body td[data-label]`);"
            " return td ? getComputedStyle(td, '::before').content : ''"
        )
        return str(browser.execute_script(script, table))

    def on_a_phone() -> None:
        size = browser.get_window_size()
        browser.set_window_size(390, 844)
        try:
            signed_in(browser, server.url)
            open_page(browser, "daemons", "daemons")
            until(browser, lambda d: daemon_row(d, daemon.name), "the daemon")
            assert label_of_first_cell("daemons") == '"Name"'
            header = "return getComputedStyle(document.querySelector('#daemons thead')).display"
            assert browser.execute_script(header) == "none"
            assert fits()
            open_page(browser, "quota", "quota")
            until(browser, lambda d: len(allowance_rows(d)) == 1, "the allowance")
            assert label_of_first_cell("quota") == '"Kind"'
            assert fits()
        finally:
            browser.set_window_size(size["width"], size["height"])

    await in_browser(on_a_phone)
    assert await in_browser(partial(console_errors, browser)) == []
    acquisition.requests.cancel()
    await acquisition.wait()


def queue_row(driver: WebDriver, provisioner: str) -> dict[str, Any] | None:
    """The queues page's row of a provisioner's queue: whether a daemon can take it,
    the text of its cells and of its daemons, and its job links; None when absent."""
    script = (
        "const row = [...document.querySelectorAll('#queues-body tr[data-provisioner]')]"
        ".find((r) => r.dataset.provisioner === arguments[0]);"
        " if (!row) return null;"
        " return {servable: row.dataset.servable, cells: [...row.cells].map((c) => c.textContent),"
        " daemons: [...row.querySelectorAll('li')].map((li) => li.textContent),"
        " jobs: [...row.querySelectorAll('a')].map((a) => a.getAttribute('href'))}"
    )
    row: dict[str, Any] | None = driver.execute_script(script, provisioner)
    return row


@pytest.mark.slow
async def test_queues_page_explains_a_job_no_daemon_can_take(
    server: Server, browser: WebDriver, nursery: trio.Nursery
) -> None:
    """A job no connected daemon can take shows in its queue with the reason, which
    follows the daemons that connect (no reload); once a daemon can take the queue's
    jobs, it is listed instead, busy with the job it took. Tags shown as text."""
    jobs = Jobs(server)
    tags = {"os": "windows", "note": XSS}
    job = await jobs.create(provisioner="terraform", tags=tags)

    def open_queues() -> None:
        signed_in(browser, server.url)
        browser.execute_script("window.provdTestMark = 1")  # a reload would wipe it
        open_page(browser, "queues", "queues")
        row = until(browser, lambda d: queue_row(d, "terraform"), "the queue")
        organization, provisioner, shown_tags, pending, wait, served = row["cells"]
        assert (organization, provisioner, pending) == ("default", "terraform", "1")
        assert shown_tags == f"note={XSS}, os=windows, owner=, scope=organization"
        assert re.match(r"^\d+ s since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", wait), wait
        assert row["servable"] == "no" and row["daemons"] == []
        assert served.startswith(
            "No connected daemon can take these jobs:"
            " no daemon is connected in organization 'default'"
        ), served
        assert "provisioner 'terraform'" in served
        assert text_of(browser, "queues-count") == (
            "1 queue, 1 pending job, 1 with no daemon to take them"
        )
        assert images(browser) == 0 and no_alert(browser)

    await in_browser(open_queues)

    # A daemon with other tags connects: the page names it as the closest.
    linux = TestDaemon(server, "linux-box", provisioners=("terraform",), tags={"os": "linux"})
    waiting = await linux.acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().waiters == 1)
    await in_browser(
        lambda: until(
            browser,
            lambda d: (
                (r := queue_row(d, "terraform")) and "the closest, 'linux-box'" in r["cells"][5]
            ),
            "the closest daemon named",
        )
    )

    # One that can connects and takes the job; the next job waits for it, busy.
    windows = TestDaemon(server, "windows-box", provisioners=("terraform",), tags=tags)
    assert (await (await windows.acquire(nursery)).wait()).job_id == job.id
    second = await jobs.create(provisioner="terraform", tags=tags)
    row = await in_browser(
        lambda: until(
            browser,
            lambda d: (r := queue_row(d, "terraform")) and r["servable"] == "yes" and r,
            "the queue with its daemon",
        )
    )
    (daemon,) = row["daemons"]
    assert daemon.startswith("windows-box (") and daemon.endswith(f") busy: {job.id}"), daemon
    assert row["jobs"] == [f"#/jobs/{job.id}"]
    assert "No connected daemon" not in row["cells"][5]
    assert await in_browser(lambda: browser.execute_script("return window.provdTestMark")) == 1

    def on_a_phone() -> None:
        """A card per queue, each value under its column's name; no sideways scroll."""
        size = browser.get_window_size()
        browser.set_window_size(390, 844)
        try:
            label = (
                "const td = document.querySelector('#queues-body td[data-label]');"
                " return td ? getComputedStyle(td, '::before').content : ''"
            )
            until(browser, lambda d: d.execute_script(label) == '"Organization"', "cards")
            fits = "const e = document.documentElement; return e.scrollWidth <= e.clientWidth"
            assert browser.execute_script(fits)
        finally:
            browser.set_window_size(size["width"], size["height"])

    await in_browser(on_a_phone)

    # Nothing pending any more: the queue is gone.
    await jobs.cancel(second.id)
    await in_browser(
        lambda: until(browser, lambda d: "No job is pending." in text_of(d, "queues-body"), "none")
    )
    assert await in_browser(partial(console_errors, browser)) == []
    waiting.requests.cancel()
    await waiting.wait()


@pytest.mark.slow
async def test_daemons_page_shows_a_daemon_go_stale_without_a_reload(
    make_server: ServerFactory, browser: WebDriver, nursery: trio.Nursery
) -> None:
    """A daemon connects (shown connected), then its stream goes away: with a short
    heartbeat interval it is stale three intervals after it was last seen, and the
    page shows that without a reload."""
    server = await make_server(heartbeat_interval_seconds=0.3)
    daemon = TestDaemon(server, "going-away", tags={"team": "web"})

    def open_daemons() -> None:
        signed_in(browser, server.url)
        browser.execute_script("window.provdTestMark = 1")  # a reload would wipe it
        open_page(browser, "daemons", "daemons")
        until(browser, lambda d: "No daemon" in text_of(d, "daemons-body"), "the empty list")

    await in_browser(open_daemons)

    acquisition = await daemon.acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().waiters == 1)
    await in_browser(
        lambda: until(
            browser,
            lambda d: (r := daemon_row(d, "going-away")) and r["state"] == "connected",
            "the daemon, connected",
        )
    )
    assert "1 daemon, 1 connected" in await in_browser(lambda: text_of(browser, "daemons-count"))

    # The daemon goes away: its stream ends, and nothing is heard from it again.
    acquisition.requests.cancel()
    await acquisition.wait()
    await in_browser(
        lambda: until(
            browser,
            lambda d: (r := daemon_row(d, "going-away")) and r["state"] == "stale",
            "the daemon, stale",
        )
    )
    row = await in_browser(lambda: daemon_row(browser, "going-away"))
    assert row is not None and row["cells"][2] == "stale"
    assert "1 daemon, 0 connected" in await in_browser(lambda: text_of(browser, "daemons-count"))
    assert await in_browser(lambda: browser.execute_script("return window.provdTestMark")) == 1
    assert await in_browser(partial(console_errors, browser)) == []


@pytest.mark.slow
async def test_job_page_shows_inputs_with_secrets_masked(
    server: Server, browser: WebDriver
) -> None:
    """A job's inputs are shown, but the values of sensitive variables and the tokens
    are a mask: the secrets never reach the page, not even its source."""
    secret, session, oidc, github = (
        "s3cret-variable-value",
        "s3cret-session-token",
        "s3cret-oidc-token",
        "s3cret-github-token",
    )
    jobs = Jobs(server)
    imported = await jobs.create(
        template_import=pb.TemplateImportInput(
            user_variable_values=[
                sdk.VariableValue(name="region", value="eu-west-1"),
                sdk.VariableValue(name="api_key", value=secret, sensitive=True),
                sdk.VariableValue(name="note", value=XSS),
            ]
        )
    )
    build = await jobs.create(
        "workspace_build",
        workspace_build=pb.WorkspaceBuildInput(
            workspace_name="dev",
            workspace_build_id="build-1",
            state=b"{}" * 50,
            variable_values=[sdk.VariableValue(name="password", value=secret, sensitive=True)],
            rich_parameter_values=[sdk.RichParameterValue(name="cpu", value="4")],
            external_auth_providers=[sdk.ExternalAuthProvider(id="github", access_token=github)],
            metadata=sdk.Metadata(
                workspace_transition=sdk.STOP,
                workspace_owner_name="alice",
                workspace_owner_session_token=session,
                workspace_owner_oidc_access_token=oidc,
            ),
        ),
    )

    def input_text(key: str) -> str:
        script = (
            "const e = document.querySelector(`#job-inputs dd[data-field=${arguments[0]}]`);"
            " return e ? e.textContent : ''"
        )
        return str(browser.execute_script(script, key))

    def no_secret_anywhere() -> None:
        source = browser.page_source
        for value in (secret, session, oidc, github):
            assert value not in source, value
        everything = browser.execute_script(
            "return document.documentElement.outerHTML + document.body.innerText"
        )
        assert secret not in everything

    def check() -> None:
        signed_in(browser, server.url)
        browser.get(f"{server.url}/#/jobs/{imported.id}")
        until(browser, lambda d: input_text("variables"), "the import's variables")
        assert shown(browser, "job-inputs")
        assert input_text("variables") == f"region = eu-west-1api_key = {MASK}note = {XSS}"
        names = browser.execute_script(
            "return [...document.querySelectorAll('#job-inputs li')].map((li) => li.dataset.name)"
        )
        assert names == ["region", "api_key", "note"]
        assert images(browser) == 0 and no_alert(browser)
        no_secret_anywhere()

        browser.get(f"{server.url}/#/jobs/{build.id}")
        until(browser, lambda d: input_text("variables"), "the build's variables")
        assert input_text("variables") == f"password = {MASK}"
        assert input_text("parameters") == "cpu = 4"
        assert input_text("workspace") == "dev"
        assert input_text("build-id") == "build-1"
        assert input_text("transition") == "stop"
        assert input_text("owner") == "alice"
        assert input_text("state") == "100 bytes (not shown)"
        assert input_text("session-token") == MASK
        assert input_text("oidc-token") == MASK
        assert input_text("external-auth") == f"github = {MASK}"
        no_secret_anywhere()

    await in_browser(check)
    assert await in_browser(partial(console_errors, browser)) == []


# --- screenshots

SCREENSHOT_SIZE = (1280, 800)


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per test session, in pytest's temporary directory (never the
    repository): the dashboard's screenshots, a PNG per page."""
    folder = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"dashboard screenshots: {folder}")
    return folder


@pytest.mark.slow
async def test_screenshots_of_every_page(
    server: Server, browser: WebDriver, nursery: trio.Nursery, screenshot_dir: Path
) -> None:
    """A screenshot of each page at desktop width, with something on it: login, jobs,
    a job with its logs, activity, daemons, queues, quota and the new-job form. Copies of these
    are committed under docs/screenshots/."""
    jobs = Jobs(server)
    done = await jobs.create(
        tags={"team": "web"},
        template_import=pb.TemplateImportInput(
            user_variable_values=[
                sdk.VariableValue(name="region", value="eu-west-1"),
                sdk.VariableValue(name="api_key", value="not-shown", sensitive=True),
            ]
        ),
        initiator=pb.Initiator(user_id="u-1", user_name="alice"),
    )
    builder = TestDaemon(server, "builder-1", provisioners=("echo",), tags={"team": "web"})
    assert (await (await builder.acquire(nursery)).wait()).job_id == done.id
    await builder.update(
        done.id,
        logs=[
            pd.Log(source=pd.PROVISIONER, level=sdk.INFO, stage="Parse", output=text)  # type: ignore[arg-type]
            for text in (
                "reading the template",
                "found 2 variables: region, api_key",
                "parameters: none",
                "template import done",
            )
        ],
    )
    await builder.complete(done.id)
    # A failed and a canceled job, for the activity page's chart.
    failed = await jobs.create(tags={"team": "web"})
    assert (await (await builder.acquire(nursery)).wait()).job_id == failed.id
    await builder.fail(failed.id, "terraform apply failed")
    await jobs.cancel((await jobs.create(provisioner="terraform", tags={"os": "linux"})).id)
    await jobs.create(provisioner="terraform", tags={"os": "windows"})
    await jobs.create(priority=5)
    waiting = await TestDaemon(server, "idle-box", tags={"team": "web"}).acquire(nursery)
    await wait_until(lambda: server.scheduler.statistics().waiters >= 1)
    await set_allowance(server, group="builders", allowance=40)
    await set_allowance(server, user_id="alice", allowance=5)

    def shoot(name: str) -> None:
        browser.execute_script("document.activeElement && document.activeElement.blur()")
        assert browser.save_screenshot(str(screenshot_dir / f"{name}.png"))

    def take() -> None:
        size = browser.get_window_size()
        width, height = SCREENSHOT_SIZE
        browser.set_window_size(width, height)
        # The window's size includes what the browser draws around the page.
        inner = browser.execute_script("return [window.innerWidth, window.innerHeight]")
        browser.set_window_size(2 * width - inner[0], 2 * height - inner[1])
        try:
            console_errors(browser)
            browser.get(server.url + "/")
            until(browser, lambda d: shown(d, "token"), "the login form")
            shoot("login")

            signed_in(browser, server.url)
            until(browser, lambda d: row_status(d, done.id) == "succeeded", "the jobs")
            shoot("jobs")

            browser.get(f"{server.url}/#/jobs/{done.id}")
            until(
                browser,
                lambda d: text_of(d, "log-state") == "complete" and field_text(d, "status"),
                "the job and its logs",
            )
            shoot("job")

            open_page(browser, "activity", "activity-finished")
            until(
                browser,
                lambda d: text_of(d, "activity-hour") == "1 succeeded, 1 failed, 1 canceled",
                "the activity",
            )
            shoot("activity")

            open_page(browser, "daemons", "daemons")
            until(browser, lambda d: daemon_row(d, "idle-box"), "the daemons")
            shoot("daemons")

            open_page(browser, "queues", "queues")
            until(browser, lambda d: queue_row(d, "terraform"), "the queues")
            shoot("queues")

            open_page(browser, "quota", "quota")
            until(browser, lambda d: len(allowance_rows(d)) == 2, "the allowances")
            shoot("quota")

            open_page(browser, "new", "create-form")
            shoot("new-job")
        finally:
            browser.set_window_size(size["width"], size["height"])

    def written() -> None:
        names = sorted(path.name for path in screenshot_dir.iterdir())
        assert names == [
            f"{page}.png"
            for page in sorted(
                ("login", "jobs", "job", "activity", "daemons", "queues", "quota", "new-job")
            )
        ]
        for path in screenshot_dir.iterdir():
            assert path.read_bytes().startswith(b"\x89PNG"), path

    await in_browser(take)
    await in_browser(written)
    assert await in_browser(partial(console_errors, browser)) == []
    waiting.requests.cancel()
    await waiting.wait()
