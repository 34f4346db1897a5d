"""The dashboard's new-job page (provd/web/create.js, docs/dashboard.md): upload a
template archive and create a job from a form, in headless Chromium against a real
server and a real `provd daemon`.

It uses the browser fixture and helpers of tests/chromium.py (and skips or fails as
they do without Chromium).
"""

from __future__ import annotations

import gzip
import json
from functools import partial
from pathlib import Path

import pytest
import trio

from provd.client.connect import call
from provd.gen.provd.v1 import jobs_pb2 as pb
from tests import chromium
from tests.archives import make_tar, make_zip
from tests.chromium import (
    ActionChains,
    By,
    Keys,
    WebDriver,
    console_errors,
    field_text,
    in_browser,
    shown,
    signed_in,
    text_of,
    until,
)
from tests.conftest import Server
from tests.daemon_clients import Jobs
from tests.processes import start_daemon

pytestmark = pytest.mark.slow

# The module-scoped headless Chromium (skipped or failing as tests/chromium.py says).
browser = chromium.browser

# Runs long enough (5 s) for the job page to see it running (pushed, or polled every 2 s).
ECHO_SPEC = {
    "description": "dashboard create test",
    "stages": [
        {"name": "Hello", "lines": ["hello from the dashboard test"]},
        {"name": "Working", "wait": {"seconds": 5, "step": 1}},
    ],
}


def template(tmp_path: Path, name: str = "template.tar") -> Path:
    path = tmp_path / name
    path.write_bytes(
        make_tar(
            {
                "provd-echo.json": json.dumps(ECHO_SPEC).encode(),
                "README.md": b"# A template from the browser\n",
            }
        )
    )
    return path


def open_new_job(driver: WebDriver) -> None:
    """The new-job page, from the navigation bar with the keyboard."""
    driver.find_element(By.ID, "nav-new").send_keys(Keys.ENTER)
    until(driver, lambda d: shown(d, "create-form"), "the new-job form")
    current = driver.execute_script(
        "return document.querySelector('#bar nav a[aria-current=page]').id"
    )
    assert current == "nav-new"


def choose_file(driver: WebDriver, path: Path) -> None:
    driver.find_element(By.ID, "create-file").send_keys(str(path))


def set_text(driver: WebDriver, element_id: str, value: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    if value:
        field.send_keys(value)


def job_id_in_url(driver: WebDriver) -> str:
    """The job id of a `#/jobs/<id>` address, or ""."""
    url = str(driver.current_url)
    marker = "#/jobs/"
    return url.split(marker, 1)[1] if marker in url else ""


async def all_jobs(server: Server) -> list[pb.Job]:
    jobs = Jobs(server)
    page = await call(jobs.client.list_jobs, pb.ListJobsRequest(limit=500))
    return list(page.jobs)


async def test_upload_and_create_a_template_import_then_follow_it(
    server: Server, browser: WebDriver, tmp_path: Path, nursery: trio.Nursery
) -> None:
    archive = template(tmp_path)

    def create() -> str:
        signed_in(browser, server.url)
        browser.execute_script("window.provdTestMark = 1")  # a reload would wipe it
        open_new_job(browser)
        # The defaults: a template import for the echo provisioner.
        assert browser.find_element(By.ID, "create-type").get_property("value") == (
            "templateImport"
        )
        assert browser.find_element(By.ID, "create-provisioner").get_property("value") == "echo"
        assert not shown(browser, "create-workspace-fields")
        choose_file(browser, archive)
        set_text(browser, "create-organization", "")
        set_text(browser, "create-tags", "team=web, env=test")
        set_text(browser, "create-priority", "7")
        set_text(browser, "create-variables", "greeting=hi there")
        browser.find_element(By.ID, "create-submit").click()
        until(browser, job_id_in_url, "the new job's page")
        job_id = job_id_in_url(browser)
        until(browser, lambda d: text_of(d, "job-id") == job_id, "the job's id")
        until(browser, lambda d: field_text(d, "status") == "pending", "the job, pending")
        assert field_text(browser, "type") == "template import"
        assert field_text(browser, "provisioner") == "echo"
        assert field_text(browser, "organization") == "default"
        assert field_text(browser, "priority") == "7"
        assert "team=web" in field_text(browser, "tags") and "env=test" in field_text(
            browser, "tags"
        )
        # Nothing typed into the form is in the address.
        assert "greeting" not in browser.current_url and "team" not in browser.current_url
        return job_id

    job_id = await in_browser(create)
    job = await Jobs(server).get(job_id)
    assert job.type == pb.JOB_TYPE_TEMPLATE_IMPORT
    assert job.status == pb.JOB_STATUS_PENDING
    assert (job.priority, job.organization) == (7, "default")
    assert job.tags["team"] == "web" and job.tags["env"] == "test"
    values = [(v.name, v.value) for v in job.template_import.user_variable_values]
    assert values == [("greeting", "hi there")]
    assert len(await all_jobs(server)) == 1

    # A real daemon takes it: running, then succeeded, on the same page.
    await start_daemon(
        nursery, server.url, "--name", "web-create", "--tag", "team=web", "--tag", "env=test"
    )

    def follow() -> None:
        until(browser, lambda d: field_text(d, "status") == "running", "the job, running")
        until(browser, lambda d: "web-create" in field_text(d, "daemon"), "the daemon's name")
        until(
            browser,
            lambda d: "hello from the dashboard test" in text_of(d, "job-logs"),
            "the job's log",
        )
        until(browser, lambda d: field_text(d, "status") == "succeeded", "the job, succeeded")
        assert browser.execute_script("return window.provdTestMark") == 1

    await in_browser(follow)
    assert (await Jobs(server).get(job_id)).status == pb.JOB_STATUS_SUCCEEDED
    assert await in_browser(partial(console_errors, browser)) == []


async def test_a_refused_upload_or_job_shows_provds_message_and_creates_nothing(
    server: Server, browser: WebDriver, tmp_path: Path
) -> None:
    not_an_archive = tmp_path / "notes.txt"
    not_an_archive.write_text("this is not a tar or a zip\n" * 40)
    too_big = tmp_path / "big.zip"  # the test server's cap is 1 MiB
    too_big.write_bytes(make_zip({"big.bin": b"x" * (1024 * 1024 + 1)}))
    good = template(tmp_path)

    def error_text() -> str:
        until(browser, lambda d: shown(d, "create-error"), "the error")
        return text_of(browser, "create-error")

    def refuse() -> None:
        signed_in(browser, server.url)
        open_new_job(browser)

        choose_file(browser, not_an_archive)
        browser.find_element(By.ID, "create-submit").click()
        message = error_text()
        assert message.startswith("provd refused the archive: data: "), message
        assert browser.switch_to.active_element.get_attribute("id") == "create-file"
        assert job_id_in_url(browser) == ""

        choose_file(browser, too_big)
        browser.find_element(By.ID, "create-submit").click()
        until(browser, lambda d: "limit is 1048576" in text_of(d, "create-error"), "the cap")
        assert text_of(browser, "create-error").startswith("provd refused the archive: data: ")

        # The form's own check, before anything is sent.
        choose_file(browser, good)
        set_text(browser, "create-tags", "no-equals-sign")
        browser.find_element(By.ID, "create-submit").click()
        until(browser, lambda d: "name=value" in text_of(d, "create-error"), "the tags error")
        assert browser.switch_to.active_element.get_attribute("id") == "create-tags"

        # A good archive but a provisioner provd refuses: its field-naming message,
        # and the field marked.
        set_text(browser, "create-tags", "")
        set_text(browser, "create-provisioner", "not a provisioner!")
        browser.find_element(By.ID, "create-submit").click()
        until(
            browser,
            lambda d: "provd refused the job: provisioner:" in text_of(d, "create-error"),
            "the job's refusal",
        )
        assert browser.switch_to.active_element.get_attribute("id") == "create-provisioner"
        invalid = browser.find_element(By.ID, "create-provisioner").get_attribute("aria-invalid")
        assert invalid == "true"
        # The message sits under the field it names.
        under = browser.execute_script(
            "return document.getElementById('create-error').previousElementSibling"
            ".contains(document.getElementById('create-provisioner'))"
        )
        assert under is True
        assert "Uploaded template.tar" in text_of(browser, "create-progress")
        assert job_id_in_url(browser) == ""
        assert shown(browser, "create-form")

    await in_browser(refuse)
    assert await all_jobs(server) == []
    # The browser logs the refused calls (400, 413 or 429 for the cap), and nothing else.
    for error in await in_browser(partial(console_errors, browser)):
        assert "/provd.v1.JobService/" in error, error


async def test_the_form_works_from_the_keyboard_and_fits_a_phone(
    server: Server, browser: WebDriver, tmp_path: Path
) -> None:
    """A workspace build from a .tar.gz (unpacked in the browser), created with Tab,
    arrow keys, typing and Enter only (the file chooser aside, which Selenium fills);
    at phone width nothing scrolls sideways."""
    tar = template(tmp_path)
    archive = tmp_path / "template.tar.gz"
    archive.write_bytes(gzip.compress(tar.read_bytes()))

    def fits() -> bool:
        return bool(
            browser.execute_script(
                "const e = document.documentElement; return e.scrollWidth <= e.clientWidth"
            )
        )

    def unlabeled() -> list[str]:
        script = (
            "return [...document.querySelectorAll('#create-form input, #create-form select,"
            " #create-form textarea')].filter((e) => e.labels.length === 0).map((e) => e.id)"
        )
        found: list[str] = browser.execute_script(script)
        return found

    def named() -> list[str]:
        script = "return [...document.querySelectorAll('#create-form [name]')].map((e) => e.id)"
        found: list[str] = browser.execute_script(script)
        return found

    def focused() -> str:
        return str(browser.switch_to.active_element.get_attribute("id"))

    def tab_to(element_id: str) -> None:
        for _ in range(30):
            if focused() == element_id:
                return
            ActionChains(browser).send_keys(Keys.TAB).perform()
        raise AssertionError(f"Tab never reached {element_id} (at {focused()})")

    def type_keys(*keys: str) -> None:
        ActionChains(browser).send_keys(*keys).perform()

    def by_keyboard() -> str:
        size = browser.get_window_size()
        browser.set_window_size(390, 844)
        try:
            signed_in(browser, server.url)
            # The jobs page links to the form as well.
            browser.find_element(By.ID, "jobs-new").send_keys(Keys.ENTER)
            until(browser, lambda d: shown(d, "create-form"), "the new-job form")
            assert unlabeled() == [] and named() == []
            choose_file(browser, archive)
            # From the file chooser on, by keys (send_keys to a file input sets files).
            browser.execute_script("document.getElementById('create-file').focus()")
            tab_to("create-type")
            type_keys(Keys.ARROW_DOWN)  # template import → workspace build
            until(browser, lambda d: shown(d, "create-build-fields"), "the build's fields")
            assert browser.find_element(By.ID, "create-type").get_property("value") == (
                "workspaceBuild"
            )
            assert unlabeled() == [] and fits()
            tab_to("create-parameters")
            type_keys("region=eu")
            tab_to("create-workspace")
            type_keys("dev")
            tab_to("create-workspace-id")
            type_keys("ws-1")
            tab_to("create-transition")
            type_keys(Keys.ARROW_DOWN)  # start → stop
            tab_to("create-debug")
            type_keys(Keys.SPACE)
            tab_to("create-submit")
            assert fits()
            type_keys(Keys.ENTER)
            until(browser, job_id_in_url, "the new job's page")
            job_id = job_id_in_url(browser)
            until(browser, lambda d: field_text(d, "type") == "workspace build", "the build")
            assert fits()
            return job_id
        finally:
            browser.set_window_size(size["width"], size["height"])

    job_id = await in_browser(by_keyboard)
    job = await Jobs(server).get(job_id)
    assert job.type == pb.JOB_TYPE_WORKSPACE_BUILD
    build = job.workspace_build
    assert build.workspace_name == "dev" and build.metadata.workspace_name == "dev"
    assert build.metadata.workspace_id == "ws-1"
    assert build.metadata.workspace_transition == 1  # STOP
    assert build.log_level == "debug"
    assert build.workspace_build_id  # a new UUID
    assert [(p.name, p.value) for p in build.rich_parameter_values] == [("region", "eu")]
    assert (job.provisioner, job.organization) == ("echo", "default")
    # The browser sent the tar inside the .tar.gz: the same file as the tar itself.
    jobs = Jobs(server)
    request = pb.UploadFileRequest(data=tar.read_bytes())
    assert job.file_hash == (await call(jobs.client.upload_file, request)).hash
    assert await in_browser(partial(console_errors, browser)) == []
