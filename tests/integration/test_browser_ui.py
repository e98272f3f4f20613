"""What an admin sees in the Airflow UI, in a real browser (issue 13): headless Chromium (Debian's package,
driven by Playwright) against the real api-server, scheduler, dag-processor and triggerer.

One run on the demo seed with ``max_deletions: 0``, so it applies its creations and asks about the seed's
withheld deletion. Screenshots of the trigger form, the finished run with its note, the approval page and
the plan page are kept in ``$IDC_SYNC_SCREENSHOTS`` (default: the test's temporary folder), and the test
asserts what they show: the form's sections and no "required" mark on optional fields; the note's first
line; Approve/Reject with the withheld deletion; the plan page listing the run's changes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
from airflow_stack import airflow_stack, finished_run, parsed_and_unpaused, wait_until

from idc_sandbox.core import Sandbox, SandboxConfig
from idc_sandbox.seed import load_named_seed, load_seed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

DAG_ID = "idc_sync"
APPROVAL_DAG_ID = "idc_sync_approval"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SECTIONS = ("Safety", "Scope", "Dangerous: skips a safety check", "Advanced")
FIELDS = {
    "Dry run",
    "Drift",
    "Only these accounts",
    "Only these permission sets",
    "Approve a large deletion",
    "Full resync",
    "Adopt existing permission sets",
    "Skip the SCIM check",
}


def _browser(playwright: Any) -> Any:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed: `make test` installs it (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])


def _login(page: Any, url: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda u: "/auth/" not in u, timeout=60_000)


def test_trigger_form_run_note_approval_page_and_plan_page_in_a_browser(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    shots = Path(os.environ.get("IDC_SYNC_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    sandbox = Sandbox(SandboxConfig(async_latency_seconds=0.05))
    load_seed(sandbox, load_named_seed("demo"))
    with airflow_stack(tmp_path, sandbox, {"max_deletions": 0}, IDC_SYNC_APPROVAL_TIMEOUT_SECONDS="1800") as (
        procs,
        api,
        _audit,
    ):
        parsed_and_unpaused(api, procs, DAG_ID, APPROVAL_DAG_ID)
        run_id = api.trigger(DAG_ID)
        run = finished_run(api, procs, DAG_ID, run_id, 600)
        assert run["state"] == "success"
        approval_run = wait_until(
            "the approval run to wait for an answer",
            300,
            lambda: [
                r
                for r in api("GET", f"/dags/{APPROVAL_DAG_ID}/dagRuns")["dag_runs"]
                if api.task_states(APPROVAL_DAG_ID, r["dag_run_id"]).get("approve_deletions")
                in ("awaiting_input", "deferred")
            ],
            procs,
        )[0]
        password = json.loads((procs.home / "simple_auth_manager_passwords.json.generated").read_text())[
            "admin"
        ]

        with sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            _login(page, api.url, password)

            # the trigger form: its sections, and a "required" mark only on the one choice that has no
            # empty value (Drift); switches and lists can be left as they are
            page.goto(f"{api.url}/dags/{DAG_ID}")
            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            expect(dialog).to_be_visible()
            required: set[str] = set()
            fields: set[str] = set()
            for i, section in enumerate(SECTIONS):
                dialog.get_by_role("button", name=section, exact=True).click()
                # (by id: the UI labels a region with an id that holds the section's spaces, which breaks
                # its accessible name)
                region = dialog.locator(f'[data-part="item-content"][id$="content:{section}"]')
                expect(region).to_be_visible()
                labels = region.locator("label.chakra-field__label")
                fields |= {t.strip() for t in labels.all_inner_texts()}
                required |= {
                    t.replace("*", "").strip()
                    for t in region.locator("label.chakra-field__label[data-required]").all_inner_texts()
                }
                if section.startswith("Dangerous"):  # description_md, rendered as Markdown
                    expect(region.locator("strong", has_text="deletion guard")).to_be_visible()
                dialog.screenshot(
                    path=str(shots / f"1-trigger-form-{i + 1}-{section.split(':')[0].lower()}.png")
                )
            assert {f.replace("*", "").strip() for f in fields} >= FIELDS, fields
            assert required == {"Drift"}, required
            page.keyboard.press("Escape")

            # the finished run: its note reads as a summary, outcome first
            page.goto(f"{api.url}/dags/{DAG_ID}/runs/{run_id}")
            first_line = run["note"].splitlines()[0]
            assert first_line.startswith("27 access changes applied"), run["note"]
            expect(page.get_by_text(first_line[:40], exact=False).first).to_be_visible()
            page.screenshot(path=str(shots / "2-run-with-note.png"))

            # the approval page: the question, the withheld deletion in a table, Approve and Reject
            approval = approval_run["dag_run_id"]
            page.goto(
                f"{api.url}/dags/{APPROVAL_DAG_ID}/runs/{approval}/tasks/approve_deletions/required_actions"
            )
            expect(page.get_by_text("idc-sync wants to delete 2 assignment(s)")).to_be_visible()
            expect(page.get_by_role("cell", name="LegacyDeveloper").first).to_be_visible()
            expect(page.get_by_role("button", name="Approve")).to_be_visible()
            expect(page.get_by_role("button", name="Reject")).to_be_visible()
            page.screenshot(path=str(shots / "3-approval.png"))

            # the runs page (served by the project's plugin from the audit store), linked from the menu
            page.goto(f"{api.url}/idc-sync/runs/")
            expect(page.get_by_text(run_id).first).to_be_visible()
            body = page.inner_text("body")
            assert "LegacyDeveloper" in body and "666666666666" in body, body[:2000]
            assert "bob@example.com" in body
            assert "Withheld: waiting for approval (2)" in body and "Created (" in body
            page.screenshot(path=str(shots / "4-runs-page.png"), full_page=True)
            # listed in the UI's Browse menu (the plugin's external view)
            page.goto(f"{api.url}/dags")
            page.get_by_role("button", name="Browse").click()
            expect(page.get_by_role("menuitem", name="idc-sync runs")).to_be_visible()
            page.screenshot(path=str(shots / "5-browse-menu.png"))
            browser.close()
        # the page is not public: without a session it answers 401
        assert requests.get(f"{api.url}/idc-sync/runs/", timeout=10).status_code == 401
