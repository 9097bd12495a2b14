"""The dashboard in a real browser (Debian's Chromium through Playwright) against a real server.

One browser and one `stepstream serve` are shared by the module; tests that need a
token or kill their server start their own. Every wait is one of Playwright's
auto-waiting `expect` assertions, never a sleep. Screenshots of each state go to
tests/artifacts/dashboard/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_api
import pytest

from dashboard_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    EXPECT_TIMEOUT,
    Served,
    execution_hash,
    serve,
    shot,
    site,
)

expect = playwright_api.expect


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert CHROMIUM.exists(), (
        f"the browser tests need Debian's {CHROMIUM}: apt-get install chromium"
    )
    expect.set_options(timeout=EXPECT_TIMEOUT)
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = serve(tmp_path_factory.mktemp("dashboard"))
    yield served
    served.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab (its own sessionStorage) that fails the test on any script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def status_of(page: Any) -> Any:
    """The execution page's status badge."""
    return page.locator(".meta .status")


def overall(page: Any) -> Any:
    return page.get_by_role("progressbar", name="Overall progress")


def row(page: Any, execution_id: str) -> Any:
    return page.locator(f'tr[data-id="{execution_id}"]')


# -- starting, watching, cancelling, failing -------------------------------------------------


def test_start_from_the_form_and_watch_the_bar_reach_100(page: Any, server: Served) -> None:
    page.goto(f"{server.base_url}/#/start/demo")
    expect(page.get_by_role("heading", name="Start a pipeline")).to_be_visible()
    steps = page.get_by_label("steps", exact=True)
    expect(steps).to_have_value("5")  # the schema's default
    expect(steps).to_have_attribute("min", "1")
    expect(steps).to_have_attribute("max", "20")
    expect(page.get_by_label("fail_at_step", exact=True)).to_have_value("")
    steps.fill("3")
    page.get_by_label("seconds_per_step", exact=True).fill("1.5")
    page.get_by_role("button", name="Start").click()

    expect(page).to_have_url(re.compile(r"#/executions/exec_\w+$"))
    execution_id = page.url.rsplit("/", 1)[1]
    expect(status_of(page)).to_have_text("running")
    bar = overall(page)
    expect(bar).to_have_attribute("aria-valuemin", "0")
    expect(bar).to_have_attribute("aria-valuemax", "100")
    expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^(?!0$|100$)\d+(\.\d)?$"))
    step_bars = page.get_by_role("progressbar", name=re.compile(r"^Progress of step "))
    expect(step_bars).to_have_count(3)
    shot(page, "execution-running")

    expect(status_of(page)).to_have_text("completed")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    for index in range(3):
        expect(step_bars.nth(index)).to_have_attribute("aria-valuenow", "100")
    expect(page.locator(".execution")).to_contain_text('"items": 60')
    expect(page.get_by_role("button", name="Cancel execution")).to_be_hidden()
    shot(page, "execution-completed")
    record = server.record(execution_id)
    assert record["status"] == "completed"
    assert record["inputs"]["steps"] == 3 and record["inputs"]["seconds_per_step"] == 1.5


def test_cancel_a_running_execution_from_its_page(page: Any, server: Served) -> None:
    execution_id = server.submit(steps=3, seconds_per_step=60)
    page.goto(f"{server.base_url}/#/executions/{execution_id}")
    expect(status_of(page)).to_have_text("running")
    expect(overall(page)).not_to_have_attribute("aria-valuenow", "0")
    page.get_by_role("button", name="Cancel execution").click()
    expect(status_of(page)).to_have_text("cancelled")
    expect(page.locator(".action-result")).to_have_text("Cancelled.")
    expect(page.get_by_role("button", name="Cancel execution")).to_be_hidden()
    expect(page.locator("tr[data-status=cancelled]")).to_have_count(1)  # the step that ran
    shot(page, "execution-cancelled")
    assert server.record(execution_id)["status"] == "cancelled"


def test_cancelling_what_already_finished_shows_the_409_problem(page: Any, server: Served) -> None:
    """The page still thinks it runs (its stream is held back); the server knows better."""

    def hold_back(route: Any) -> None:
        route.connect_to_server().on_message(lambda message: None)

    page.route_web_socket(re.compile(r"/progress/ws"), hold_back)
    execution_id = server.submit(steps=3, seconds_per_step=60)
    server.wait_for(execution_id, "running")
    page.goto(f"{server.base_url}/#/executions/{execution_id}")
    expect(status_of(page)).to_have_text("running")
    assert server.client.post(f"/api/v1/executions/{execution_id}/cancel").status_code == 202
    server.wait_for(execution_id, "cancelled")

    page.get_by_role("button", name="Cancel execution").click()
    result = page.locator(".action-result")
    expect(result).to_have_text(
        f"Execution already finished: execution '{execution_id}' already finished "
        "with status 'cancelled'"
    )
    expect(result).to_have_class(re.compile(r"\bproblem\b"))
    expect(status_of(page)).to_have_text("cancelled")  # read afresh after the 409
    shot(page, "execution-cancel-409")


def test_a_failed_execution_shows_its_error_and_the_traceback_behind_a_toggle(
    page: Any, server: Served
) -> None:
    execution_id = server.submit(steps=2, seconds_per_step=0.2, fail_at_step=1)
    percentage = server.wait_for(execution_id, "failed")["progress"]["percentage"]
    page.goto(f"{server.base_url}/#/executions/{execution_id}")
    expect(status_of(page)).to_have_text("failed")
    error = page.get_by_role("region", name="Error")
    expect(error).to_contain_text("DemoFailure in step publish:")
    expect(error).to_contain_text("step 1 failed at item 10 because fail_at_step=1")
    traceback = error.locator("details pre")
    expect(traceback).to_be_hidden()
    shot(page, "execution-failed")

    page.get_by_text("Traceback", exact=True).click()
    expect(traceback).to_be_visible()
    expect(traceback).to_contain_text("Traceback (most recent call last)")
    expect(traceback).to_contain_text("DemoFailure: step 1 failed")
    assert 50 <= percentage < 100
    expect(overall(page)).to_have_attribute("aria-valuenow", f"{percentage:.1f}".removesuffix(".0"))
    shot(page, "execution-failed-traceback")


def test_bad_inputs_are_shown_at_their_fields(page: Any, server: Served) -> None:
    before = server.client.get("/api/v1/executions", params={"limit": 200}).json()["items"]
    page.goto(f"{server.base_url}/#/start/demo")
    page.get_by_label("steps", exact=True).fill("50")
    page.get_by_label("seconds_per_step", exact=True).fill("-1")
    page.get_by_role("button", name="Start").click()

    steps_error = page.locator('[data-field="steps"] .field-error')
    expect(steps_error).to_have_text("Expected `int` <= 20")
    expect(page.locator('[data-field="seconds_per_step"] .field-error')).to_have_text(
        "Expected `float` >= 0.0"
    )
    expect(page.get_by_label("steps", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("steps", exact=True)).to_be_focused()
    expect(page.locator('[data-field="items_per_step"] .field-error')).to_be_hidden()
    expect(page.get_by_role("alert")).to_contain_text("These inputs do not fit the pipeline")
    shot(page, "start-form-errors")
    assert page.url.endswith("#/start/demo")
    after = server.client.get("/api/v1/executions", params={"limit": 200}).json()["items"]
    assert len(after) == len(before), "a refused start made an execution"

    # Fixed, the same form starts it.
    page.get_by_label("steps", exact=True).fill("1")
    page.get_by_label("seconds_per_step", exact=True).fill("0")
    page.get_by_role("button", name="Start").click()
    expect(status_of(page)).to_have_text("completed")


def test_the_form_covers_strings_booleans_enums_and_nullable_numbers(
    page: Any, server: Served
) -> None:
    page.goto(f"{server.base_url}/#/start/greet")
    name = page.locator("#input-name")
    expect(name).to_have_attribute("type", "text")
    expect(page.get_by_label("shout")).not_to_be_checked()
    expect(page.get_by_label("mode")).to_have_value(re.compile(r"\d"))
    expect(page.get_by_label("ratio")).to_have_value("")
    page.get_by_role("button", name="Start").click()
    expect(page.locator('[data-field="name"] .field-error')).to_have_text("missing (expected str)")

    name.fill("ada")
    page.get_by_label("times").fill("3")
    page.get_by_label("shout").check()
    page.get_by_label("mode").select_option(label="fancy")
    page.get_by_label("ratio").fill("0.5")
    shot(page, "start-form-greet")
    page.get_by_role("button", name="Start").click()
    expect(status_of(page)).to_have_text("completed")
    outputs = page.get_by_role("region", name="Outputs")
    expect(outputs).to_contain_text('"text": "*ADA* *ADA* *ADA*"')
    expect(outputs).to_contain_text('"ratio": 0.5')


def test_what_the_steps_logged_shows_under_logs(page: Any, server: Served) -> None:
    execution_id = server.submit(steps=3, seconds_per_step=0.05)
    server.wait_for(execution_id)
    page.goto(f"{server.base_url}/#/executions/{execution_id}")
    expect(status_of(page)).to_have_text("completed")
    logs = page.get_by_role("region", name="Logs")
    expect(logs).to_contain_text(
        "INFO extract stepstream_demo.pipelines: step 1 of 3 counted 20 items"
    )
    expect(logs).to_contain_text(
        "INFO publish stepstream_demo.pipelines: step 3 of 3 counted 20 items"
    )


def test_a_step_graph_shows_only_for_a_pipeline_that_branches(page: Any, server: Served) -> None:
    """A chain's steps each wait for the one before: no column for that.

    A branching demo is played by intercepting the server's answer in the browser.
    """
    execution_id = server.submit(steps=5, seconds_per_step=0.05)  # the pipeline's own shape
    server.wait_for(execution_id)
    page.goto(f"{server.base_url}/#/executions/{execution_id}")
    expect(status_of(page)).to_have_text("completed")
    expect(page.get_by_role("columnheader", name="After")).to_be_hidden()

    def with_upstream(route: Any) -> None:
        pipeline = route.fetch().json()
        assert [s["upstream"] for s in pipeline["steps"][:2]] == [[], ["extract"]]
        first = pipeline["steps"][0]["name"]
        for step in pipeline["steps"][1:]:
            step["upstream"] = [first]  # every later step takes the first one's result
        route.fulfill(json=pipeline)

    page.route(re.compile(r"/api/v1/pipelines/demo$"), with_upstream)
    page.reload()
    expect(page.get_by_role("columnheader", name="After")).to_be_visible()
    second_step = page.locator("table.steps tbody tr").nth(1)
    expect(second_step.locator("td").last).to_have_text("extract")
    shot(page, "execution-graph-and-logs")


# -- the live list ----------------------------------------------------------------------------


def test_the_list_updates_live_without_a_reload(page: Any, server: Served) -> None:
    page.goto(f"{server.base_url}/")
    expect(page.locator("#connection")).to_have_text("Live")
    page.evaluate("window.__sameDocument = true")

    execution_id = server.submit(steps=3, seconds_per_step=1)
    line = row(page, execution_id)
    expect(line).to_have_count(1)
    expect(page.locator("tbody tr").first).to_have_attribute("data-id", execution_id)
    expect(line.locator(".status")).to_have_text("running")
    bar = line.get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-label", f"Progress of {execution_id}")
    expect(bar).to_have_attribute("aria-valuenow", re.compile(r"^(?!0$|100$)\d+(\.\d)?$"))
    shot(page, "list-running")
    expect(line.locator(".status")).to_have_text("completed")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(line.locator("td").nth(8)).not_to_be_empty()  # finished at
    shot(page, "list-completed")
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    expect(row(page, execution_id)).to_have_count(1)

    # The keyboard reaches the row's link, and Enter opens the execution.
    link = line.get_by_role("link", name=execution_id)
    for _ in range(40):
        page.keyboard.press("Tab")
        if link.evaluate("element => element === document.activeElement"):
            break
    expect(link).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(execution_hash(execution_id))
    expect(page.get_by_role("heading", level=1)).to_be_focused()


def test_filters_and_paging(page: Any, server: Served) -> None:
    ids = [server.submit("first", word=str(n)) for n in range(30)]
    failed = server.submit(steps=1, seconds_per_step=0, fail_at_step=0)
    server.wait_for(failed, "failed")
    for execution_id in ids:
        server.wait_for(execution_id)
    newest_first = list(reversed(ids))

    page.goto(f"{server.base_url}/")
    page.get_by_label("Pipeline").select_option("first")
    expect(page).to_have_url(re.compile(r"pipeline=first"))
    page.get_by_label("Per page").select_option("25")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(25)
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.id)") == newest_first[:25]
    shot(page, "list-filtered-page-1")

    page.get_by_role("button", name="Older").click()
    expect(rows).to_have_count(5)
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.id)") == newest_first[25:]
    expect(page.get_by_role("button", name="Older")).to_be_disabled()
    expect(page.get_by_text("Page 2 · 5 shown")).to_be_visible()
    page.get_by_role("button", name="Newer").click()
    expect(rows).to_have_count(25)
    expect(rows.first).to_have_attribute("data-id", newest_first[0])

    page.get_by_label("Pipeline").select_option("")
    page.get_by_label("Status").select_option("failed")
    expect(row(page, failed)).to_have_count(1)
    statuses = page.locator("tbody tr .status")
    # The unfiltered list shows the failed one first too: wait for the filtered one.
    page.wait_for_function(
        "() => { const cells = [...document.querySelectorAll('tbody tr .status')];"
        " return cells.length > 0 && cells.every(cell => cell.textContent === 'failed'); }"
    )
    assert set(statuses.all_inner_texts()) == {"failed"}


def test_a_thousand_executions_stay_usable(page: Any, server: Served) -> None:
    """1,000 records: the largest page renders, and updates arrive row by row."""
    for n in range(1000):
        server.submit("second", word=str(n))
    page.goto(f"{server.base_url}/#/?pipeline=second&limit=200")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(200)
    expect(page.locator("tbody tr .status").last).to_have_text("completed")
    # A live execution updates its own row; no other row is rebuilt.
    page.evaluate(
        """() => {
        window.__rowsAdded = 0;
        new MutationObserver((records) => {
            for (const record of records) {
                const rows = [...record.addedNodes].filter((n) => n.nodeName === "TR");
                window.__rowsAdded += rows.length;
            }
        }).observe(document.querySelector("tbody"), {childList: true});
    }"""
    )
    marker = page.locator("tbody tr").nth(100).element_handle()
    execution_id = server.submit("second", word="live")
    expect(row(page, execution_id).locator(".status")).to_have_text("completed")
    assert page.evaluate("window.__rowsAdded") == 1
    assert marker.evaluate("element => element.isConnected")
    expect(rows).to_have_count(200)
    shot(page, "list-thousand")


def test_a_watch_closed_for_falling_behind_lists_afresh_and_watches_again(
    page: Any, server: Served
) -> None:
    """Close 1008 (the server dropped events for this client): re-list, then watch again."""
    routes: list[Any] = []
    dropping = [False]

    def intercept(route: Any) -> None:
        upstream = route.connect_to_server()
        upstream.on_message(lambda message: None if dropping[0] else route.send(message))
        routes.append(route)

    page.route_web_socket(re.compile(r"/api/v1/executions/ws"), intercept)
    page.goto(f"{server.base_url}/")
    expect(page.locator("#connection")).to_have_text("Live")
    # Listed and watching both done: an execution started now shows up through the watch.
    seen = server.submit(steps=1, seconds_per_step=0.0)
    expect(row(page, seen).locator(".status")).to_have_text("completed")
    dropping[0] = True  # what the server would drop for a client this far behind
    missed = server.submit(steps=1, seconds_per_step=0.2)
    server.wait_for(missed, "completed")
    expect(row(page, missed)).to_have_count(0)
    dropping[0] = False
    routes[0].close(code=1008, reason="too far behind, events were dropped")
    expect(row(page, missed).locator(".status")).to_have_text("completed")
    expect(page.locator("#connection")).to_have_text("Live")
    assert len(routes) == 2
    after = server.submit(steps=1, seconds_per_step=0.2)
    expect(row(page, after).locator(".status")).to_have_text("completed")


def test_dark_theme_follows_the_system(browser: Any, server: Served) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    try:
        tab = context.new_page()
        execution_id = server.submit(steps=2, seconds_per_step=0.3, fail_at_step=1)
        server.wait_for(execution_id)
        tab.goto(f"{server.base_url}/#/executions/{execution_id}")
        expect(status_of(tab)).to_have_text("failed")
        background = tab.evaluate("getComputedStyle(document.body).backgroundColor")
        red, green, blue = (int(n) for n in re.findall(r"\d+", background)[:3])
        assert max(red, green, blue) < 64, background
        shot(tab, "execution-failed-dark")
        tab.goto(f"{server.base_url}/")
        expect(row(tab, execution_id)).to_have_count(1)
        shot(tab, "list-dark")
    finally:
        context.close()


# -- auth ---------------------------------------------------------------------------------------


def test_the_token_is_asked_once_and_kept_for_the_tab(browser: Any, tmp_path: Path) -> None:
    token = "t0ken with spaces & symbols?"
    secured = serve(tmp_path / "secured", token=token)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto(f"{secured.base_url}/")
        dialog = tab.get_by_role("dialog", name="Access token")
        expect(dialog).to_be_visible()
        shot(tab, "token-prompt")

        tab.get_by_label("Token", exact=True).fill("wrong")
        tab.get_by_role("button", name="Use token").click()
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("refused")
        tab.get_by_label("Token", exact=True).fill(token)
        tab.keyboard.press("Enter")
        expect(dialog).to_be_hidden()
        expect(tab.locator("#connection")).to_have_text("Live")
        assert tab.evaluate("sessionStorage.getItem('stepstream.token')") == token

        execution_id = secured.submit(steps=1, seconds_per_step=0.5)
        expect(row(tab, execution_id).locator(".status")).to_have_text("completed")
        tab.reload()
        expect(row(tab, execution_id)).to_have_count(1)
        expect(dialog).to_be_hidden()
        tab.goto(f"{secured.base_url}/#/executions/{execution_id}")
        expect(status_of(tab)).to_have_text("completed")
        assert not errors, errors

        # Another tab has its own session: it asks again.
        other = context.new_page()
        other.goto(f"{secured.base_url}/")
        expect(other.get_by_role("dialog", name="Access token")).to_be_visible()
        # Without a token, the API still says nothing.
        refused = secured.client.get("/api/v1/executions", headers={"Authorization": ""})
        assert refused.status_code == 401
    finally:
        context.close()
        secured.stop()


# -- a server restart ------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_the_pages_recover_when_the_server_restarts(browser: Any, tmp_path: Path) -> None:
    """Killed mid-run and started again on the same port and store: every view catches up."""
    served = serve(tmp_path / "restart", "--max-concurrent", "1")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        running = served.submit(steps=2, seconds_per_step=60)
        queued = served.submit(steps=2, seconds_per_step=1)
        served.wait_for(running, "running")
        listing, running_page, queued_page, embed = (context.new_page() for _ in range(4))
        listing.goto(f"{served.base_url}/")
        expect(row(listing, running).locator(".status")).to_have_text("running")
        expect(row(listing, queued).locator(".status")).to_have_text("pending")
        running_page.goto(f"{served.base_url}/#/executions/{running}")
        expect(status_of(running_page)).to_have_text("running")
        queued_page.goto(f"{served.base_url}/#/executions/{queued}")
        expect(status_of(queued_page)).to_have_text("pending")
        expect(queued_page.locator("#connection")).to_have_text("Live")
        site("embed").show(embed, embed_page(served.base_url))
        embed.evaluate(f"follow({queued!r})")
        expect(embed.locator("#state")).to_have_text("open")

        served.kill()
        for tab in (listing, running_page, queued_page):
            expect(tab.locator("#connection")).to_contain_text("Reconnecting")
        expect(embed.locator("#state")).to_have_text("retrying")
        shot(listing, "restart-list-reconnecting")
        served.start()

        expect(status_of(running_page)).to_have_text("failed")
        expect(running_page.get_by_role("region", name="Error")).to_contain_text(
            "the server stopped while this execution ran"
        )
        expect(status_of(queued_page)).to_have_text("completed")
        expect(overall(queued_page)).to_have_attribute("aria-valuenow", "100")
        shot(queued_page, "restart-execution-completed")
        expect(row(listing, running).locator(".status")).to_have_text("failed")
        expect(row(listing, queued).locator(".status")).to_have_text("completed")
        expect(listing.locator("#connection")).to_have_text("Live")
        later = served.submit(steps=1, seconds_per_step=0.2)
        expect(row(listing, later).locator(".status")).to_have_text("completed")
        expect(listing.locator("tbody tr")).to_have_count(3)
        for execution_id in (running, queued, later):
            expect(row(listing, execution_id)).to_have_count(1)
        shot(listing, "restart-list-recovered")

        expect(embed.locator("#done")).to_have_text("completed")
        seqs = embed.evaluate("window.seqs")
        assert seqs == sorted(set(seqs)), f"an event twice or out of order: {seqs}"
        log = served.client.get(f"/api/v1/executions/{queued}/events").json()["events"]
        lifecycle = {e["seq"] for e in log if e["type"] != "progress"}
        assert lifecycle <= set(seqs), "the embed missed a lifecycle event"
    finally:
        context.close()
        served.stop()


# -- the embeddable script --------------------------------------------------------------------


def embed_page(base_url: str, token: str = "") -> str:
    """A page of someone else's: a bar driven by /static/stepstream.js and nothing else."""
    return f"""<!doctype html>
<html><body>
<progress id="bar" max="100" value="0"></progress> <span id="percent"></span>
<p>state: <span id="state"></span> done: <span id="done"></span> error: <span id="error"></span></p>
<script src="{base_url}/static/stepstream.js"></script>
<script>
  window.seqs = [];
  window.percentages = [];
  function follow(executionId) {{
    stepstream.follow("{base_url}", executionId, {{
      token: {token!r} || undefined,
      onMessage: (message) => window.seqs.push(message.seq),
      onProgress: (progress) => {{
        document.getElementById("bar").value = progress.percentage;
        document.getElementById("percent").textContent = progress.percentage.toFixed(0) + "%";
        window.percentages.push(progress.percentage);
      }},
      onDone: (message) => {{ document.getElementById("done").textContent = message.type; }},
      onError: (error) => {{ document.getElementById("error").textContent = error.code; }},
      onConnection: (state) => {{ document.getElementById("state").textContent = state; }},
    }});
  }}
</script>
</body></html>"""


def test_the_embeddable_script_drives_a_bar_on_another_page(page: Any, server: Served) -> None:
    site("embed").show(page, embed_page(server.base_url))
    execution_id = server.submit(steps=2, seconds_per_step=1)
    page.evaluate(f"follow({execution_id!r})")
    expect(page.locator("#done")).to_have_text("completed")
    expect(page.locator("#bar")).to_have_js_property("value", 100)
    expect(page.locator("#percent")).to_have_text("100%")
    shot(page, "embed-completed")
    percentages = page.evaluate("window.percentages")
    assert percentages == sorted(percentages) and len(percentages) > 2, percentages
    seqs = page.evaluate("window.seqs")
    assert seqs == sorted(set(seqs)), seqs

    page.evaluate("follow('exec_nope')")
    expect(page.locator("#error")).to_have_text("4404")


def test_a_page_of_another_site_cannot_start_watch_or_read(page: Any, server: Served) -> None:
    """What any web page a user opens could do to a server on their machine, before."""
    watched = server.submit(steps=1, seconds_per_step=0.2)
    before = len(server.client.get("/api/v1/executions", params={"limit": 200}).json()["items"])
    site("other").show(page, embed_page(server.base_url))
    # A "simple" POST (text/plain, no preflight), as a hostile page would send it.
    page.evaluate(
        """async (base) => {
            await fetch(base + "/api/v1/executions", {
                method: "POST", mode: "no-cors", body: '{"pipeline": "demo"}',
                headers: {"Content-Type": "text/plain"},
            });
        }""",
        server.base_url,
    )
    # Reading the API is blocked by the browser: no CORS headers for this origin.
    read = page.evaluate(
        """async (base) => {
            try { await fetch(base + "/api/v1/executions"); return "read"; }
            catch (error) { return "blocked"; }
        }""",
        server.base_url,
    )
    assert read == "blocked"
    after = server.client.get("/api/v1/executions", params={"limit": 200}).json()["items"]
    assert len(after) == before, "a page of another site started an execution"
    # The embeddable script is told why it cannot watch, and stops trying.
    page.evaluate(f"follow({watched!r})")
    expect(page.locator("#error")).to_have_text("4403")
    assert page.locator("#done").text_content() == ""
