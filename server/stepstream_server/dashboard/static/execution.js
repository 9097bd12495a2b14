// One execution: the record from REST, then followed over its WebSocket with the
// embeddable follower (stepstream.js), which resumes with ?after= after a dropped
// connection or a server restart. Steps, error, outputs, inputs; cancel; captured logs;
// and, when the server has one, a step graph (`upstream` per step).

import { askToken, get, NoToken, post, Problem, token, url } from "./api.js";
import {
  applyEvent,
  backoff,
  describeError,
  describeStep,
  formatDuration,
  formatItems,
  formatPercent,
  formatRate,
  frameScheduler,
  h,
  progressBar,
  setConnection,
  setText,
  setTime,
  statusBadge,
  TERMINAL,
  timeElement,
  updateBadge,
} from "./ui.js";

const REFRESH_GAP = 1000; // ms between two reads of the record to fill in missed step changes
const LOGS_GAP = 1000; // ms between two reads of the logs while the execution runs

function pretty(value) {
  return JSON.stringify(value, null, 2);
}

/** A step's items: the live snapshot's for the step running now, else the step's own. */
function stepItems(step, progress) {
  const current = progress && progress.current_step === step.index && step.status !== "pending";
  const live = current && progress.items_done !== undefined && progress.items_done !== null;
  if (live && (step.status === "running" || step.items_done === undefined)) {
    return { done: progress.items_done, total: progress.items_total };
  }
  return { done: step.items_done, total: step.items_total };
}

function stepPercent(step, items) {
  if (step.status === "completed") return 100;
  if (items.total) return (100 * (items.done || 0)) / items.total;
  return step.status === "running" ? null : 0;
}

function stepDuration(step) {
  if (step.duration_seconds !== undefined && step.duration_seconds !== null) {
    return formatDuration(step.duration_seconds);
  }
  if (step.status === "running" && step.started_at) {
    return `${formatDuration(Math.max(0, (Date.now() - Date.parse(step.started_at)) / 1000))}…`;
  }
  return "";
}

export function mountExecution(main, executionId) {
  let record = null;
  let follower = null;
  let unmounted = false;
  let loadTimer = null;
  let refreshing = false;
  let queued = null; // a refresh asked for while one ran: "again" or "final"
  let lastRefresh = 0;
  let graph = null; // the pipeline's steps, when they name their upstream steps
  let logs = null; // {after, timer, busy} once the server answered the logs route
  let cancelling = false;
  const loadRetry = backoff();
  const schedule = frameScheduler(render);
  const encoded = encodeURIComponent(executionId);

  const heading = h("h1", { tabindex: "-1" }, "Execution ", h("code", {}, executionId));
  const badge = statusBadge("pending");
  const pipelineLink = h("a", {});
  const created = timeElement();
  const started = timeElement();
  const finished = timeElement();
  const elapsed = h("span");
  const overall = progressBar("Overall progress");
  const percent = h("span", { class: "percent big" });
  const stepText = h("span");
  const items = h("span");
  const rate = h("span");
  const eta = h("span");
  const message = h("p", { class: "message", hidden: true });
  const cancel = h("button", { type: "button", class: "button danger" }, "Cancel execution");
  const actionResult = h("p", { class: "action-result", role: "status" });
  const errorBox = h("section", { class: "error-box", hidden: true, "aria-labelledby": "error-title" });
  const outputsBox = h("section", { hidden: true, "aria-labelledby": "outputs-title" });
  const outputs = h("pre", { class: "json", tabindex: "0" });
  const stepsBody = h("tbody");
  const afterHeader = h("th", { scope: "col", hidden: true }, "After");
  const inputs = h("pre", { class: "json", tabindex: "0" });
  const logsBox = h("section", { hidden: true, "aria-labelledby": "logs-title" });
  const logLines = h("pre", { class: "logs", tabindex: "0", "aria-live": "off" });
  const notice = h("p", { class: "notice", role: "status" });
  const stepRows = [];

  cancel.addEventListener("click", cancelExecution);
  outputsBox.append(h("h2", { id: "outputs-title" }, "Outputs"), outputs);
  logsBox.append(h("h2", { id: "logs-title" }, "Logs"), logLines);

  const body = h(
    "div",
    { class: "execution", hidden: true },
    h(
      "dl",
      { class: "meta" },
      h("div", {}, h("dt", {}, "Status"), h("dd", {}, badge)),
      h("div", {}, h("dt", {}, "Pipeline"), h("dd", {}, pipelineLink)),
      h("div", {}, h("dt", {}, "Created"), h("dd", {}, created)),
      h("div", {}, h("dt", {}, "Started"), h("dd", {}, started)),
      h("div", {}, h("dt", {}, "Finished"), h("dd", {}, finished)),
      h("div", {}, h("dt", {}, "Duration"), h("dd", {}, elapsed))
    ),
    h(
      "section",
      { class: "overall", "aria-label": "Overall progress" },
      h("div", { class: "bar-line" }, overall.element, percent),
      h(
        "dl",
        { class: "facts" },
        h("div", {}, h("dt", {}, "Step"), h("dd", {}, stepText)),
        h("div", {}, h("dt", {}, "Items"), h("dd", {}, items)),
        h("div", {}, h("dt", {}, "Rate"), h("dd", {}, rate)),
        h("div", {}, h("dt", {}, "ETA"), h("dd", {}, eta))
      ),
      message
    ),
    h("div", { class: "actions" }, cancel, actionResult),
    errorBox,
    outputsBox,
    h(
      "section",
      { "aria-labelledby": "steps-title" },
      h("h2", { id: "steps-title" }, "Steps"),
      h(
        "div",
        { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Steps" },
        h(
          "table",
          { class: "steps" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Step", "Status", "Weight", "Progress", "Items", "Duration"].map((title) =>
                h("th", { scope: "col" }, title)
              ),
              afterHeader
            )
          ),
          stepsBody
        )
      )
    ),
    h("section", { "aria-labelledby": "inputs-title" }, h("h2", { id: "inputs-title" }, "Inputs"), inputs),
    logsBox
  );

  main.replaceChildren(
    h(
      "section",
      { class: "detail" },
      h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/" }, "Executions"), " › ", executionId),
      heading,
      notice,
      body
    )
  );

  load();

  /** Read the record (retrying while the server is away), then follow it. */
  async function load() {
    loadTimer = null;
    try {
      const fresh = await get(`api/v1/executions/${encoded}`);
      if (unmounted) return;
      loadRetry.reset();
      adopt(fresh);
      setText(notice, "");
      body.hidden = false;
      loadPipeline(fresh.pipeline);
      loadLogs();
      follow();
    } catch (error) {
      if (unmounted) return;
      if (error instanceof Problem && error.status === 404) {
        setText(notice, `There is no execution ${executionId}.`);
        setConnection(null);
      } else if (error instanceof NoToken) {
        showNoToken(load);
      } else {
        const delay = loadRetry.next();
        setText(notice, `${describeError(error)}. Trying again in ${Math.ceil(delay / 1000)} s…`);
        setConnection("retrying", "Reconnecting…");
        loadTimer = setTimeout(load, delay);
      }
    }
  }

  function showNoToken(then) {
    setConnection("offline", "Needs a token");
    const button = h("button", { type: "button", class: "button" }, "Enter token");
    button.addEventListener("click", () => askToken().then(then, () => {}));
    notice.replaceChildren("This server needs an access token. ", button);
  }

  /** Take a record read from REST, unless the stream already brought something newer. */
  function adopt(fresh) {
    if (record && fresh.last_seq < record.last_seq) return;
    record = fresh;
    schedule();
  }

  function follow() {
    if (follower) follower.close();
    follower = null;
    if (TERMINAL.has(record.status)) {
      setConnection(null);
      return;
    }
    let dropped = false;
    follower = window.stepstream.follow(url(""), executionId, {
      after: record.last_seq,
      token,
      onMessage: receive,
      onConnection(state, info) {
        if (state === "open") {
          setConnection("live", "Live");
          // A replay coalesces progress: read the record for the steps' own states.
          if (dropped) refresh();
        } else {
          dropped = true;
          setConnection("retrying", `Reconnecting in ${Math.ceil(info.delay / 1000)} s…`);
        }
      },
      onDone(event) {
        setConnection(null);
        if (cancelling && event.type === "cancelled") setText(actionResult, "Cancelled.");
        refresh(true);
      },
      onError(error) {
        follower = null;
        if (error.code === 4401) {
          setConnection("offline", "Needs a token");
          askToken().then(follow, () => showNoToken(follow));
        } else {
          setConnection("offline", "Not following");
          setText(notice, `Stopped following: ${error.message}.`);
        }
      },
    });
  }

  function receive(event) {
    if (!record || event.seq <= record.last_seq) return;
    applyEvent(record, event);
    if (event.type === "progress" && !event.step && missedStep(event.progress)) refresh();
    if (logs && !TERMINAL.has(record.status)) pollLogs();
    schedule();
  }

  /** A step before the current one that still looks unfinished: its change was coalesced. */
  function missedStep(progress) {
    return record.steps.some(
      (step) => step.index < progress.current_step && (step.status === "pending" || step.status === "running")
    );
  }

  /** Read the record again (at most once a second, or now when `final`). */
  async function refresh(final = false) {
    if (refreshing) {
      queued = queued === "final" || final ? "final" : "again";
      return;
    }
    refreshing = true;
    const wait = final ? 0 : Math.max(0, lastRefresh + REFRESH_GAP - Date.now());
    await new Promise((resolve) => setTimeout(resolve, wait));
    try {
      if (!unmounted) adopt(await get(`api/v1/executions/${encoded}`));
    } catch {
      // The stream goes on; the next refresh or event brings it.
    } finally {
      lastRefresh = Date.now();
      refreshing = false;
      if (final && logs) pollLogs(true);
      const next = queued;
      queued = null;
      if (next && !unmounted) refresh(next === "final");
    }
  }

  /** True when some step waits for more, or other, than the step declared before it. */
  function branches(steps) {
    return steps.some((step, index) => {
      const upstream = Array.isArray(step.upstream) ? step.upstream : null;
      if (!upstream) return false;
      if (index === 0) return upstream.length > 0;
      return upstream.length !== 1 || upstream[0] !== steps[index - 1].name;
    });
  }

  /** The step graph, when the pipeline is one (`upstream` per step, not a plain chain). */
  async function loadPipeline(name) {
    try {
      const pipeline = await get(`api/v1/pipelines/${encodeURIComponent(name)}`);
      if (branches(pipeline.steps)) {
        graph = pipeline.steps;
        schedule();
      }
    } catch {
      // A pipeline no longer registered still has its executions.
    }
  }

  /** Each step's upstream names: the record's own if it has them, else the pipeline's when
   * it declares the same steps (a pipeline shaped by its inputs may not). */
  function upstreamOf() {
    if (record.steps.some((step) => Array.isArray(step.upstream))) {
      return new Map(record.steps.map((step) => [step.name, step.upstream || []]));
    }
    const same =
      graph &&
      graph.length === record.steps.length &&
      graph.every((step, index) => step.name === record.steps[index].name);
    return same ? new Map(graph.map((step) => [step.name, step.upstream || []])) : null;
  }

  /** What the steps printed and logged; the section shows once there is a line. */
  async function loadLogs() {
    try {
      const first = await get(`api/v1/executions/${encoded}/logs`);
      if (unmounted) return;
      logs = { after: 0, timer: null, busy: false };
      appendLogs(first);
    } catch {
      logs = null;
    }
  }

  function pollLogs(now = false) {
    if (!logs || logs.timer !== null || logs.busy) return;
    logs.timer = setTimeout(
      async () => {
        logs.timer = null;
        logs.busy = true;
        try {
          appendLogs(await get(`api/v1/executions/${encoded}/logs?after=${logs.after}`));
        } catch {
          // Kept for the next poll.
        } finally {
          logs.busy = false;
        }
      },
      now ? 0 : LOGS_GAP
    );
  }

  /** Add a page of `GET .../logs` ({lines, next_after}): time, level or stream, step, text. */
  function appendLogs(page) {
    const text = page.lines
      .map((line) =>
        [line.at.slice(11, 19), line.level || line.stream, line.step, line.message]
          .filter((part) => part)
          .join(" ")
      )
      .join("\n");
    if (text) {
      logLines.append(`${logLines.textContent ? "\n" : ""}${text}`);
      logsBox.hidden = false;
    }
    logs.after = page.next_after;
  }

  async function cancelExecution() {
    cancelling = true;
    cancel.disabled = true;
    actionResult.className = "action-result";
    setText(actionResult, "Cancelling…");
    try {
      const answer = await post(`api/v1/executions/${encoded}/cancel`);
      setText(
        actionResult,
        answer.status === "cancelled" || record.status === "cancelled" // the stream may be first
          ? "Cancelled."
          : "Cancellation requested: the running step stops at its next checkpoint."
      );
      adopt(answer);
    } catch (error) {
      actionResult.className = "action-result problem";
      if (error instanceof Problem && error.status === 409) {
        // Finished meanwhile (or runs elsewhere): say so, and show how it ended.
        setText(actionResult, describeError(error));
        refresh(true);
      } else {
        setText(actionResult, `Could not cancel. ${describeError(error)}`);
        cancelling = false;
        cancel.disabled = false;
      }
    }
  }

  function render() {
    if (unmounted || !record) return;
    const progress = record.progress;
    const status = record.status;
    const done = TERMINAL.has(status);
    const running = status === "running";
    const pct = status === "completed" ? 100 : progress ? progress.percentage : 0;

    updateBadge(badge, status);
    setText(pipelineLink, record.pipeline);
    pipelineLink.setAttribute("href", `#/start/${encodeURIComponent(record.pipeline)}`);
    pipelineLink.title = `Start ${record.pipeline} again`;
    setTime(created, record.created_at);
    setTime(started, record.started_at);
    setTime(finished, record.finished_at);
    const end = record.finished_at ? Date.parse(record.finished_at) : Date.now();
    setText(
      elapsed,
      record.started_at ? formatDuration(Math.max(0, (end - Date.parse(record.started_at)) / 1000)) : ""
    );
    overall.set(pct, `${formatPercent(pct)}, ${status}`, status);
    setText(percent, formatPercent(pct));
    setText(stepText, progress && status !== "completed" ? describeStep(progress) : status === "completed" ? "all done" : "");
    setText(items, progress && running ? formatItems(progress.items_done, progress.items_total) : "");
    setText(rate, progress && running ? formatRate(progress.rate) : "");
    setText(eta, progress && running ? formatDuration(progress.eta_seconds) : "");
    const text = progress && progress.message && !done ? progress.message : "";
    message.hidden = !text;
    setText(message, text);
    cancel.disabled = done || cancelling;
    cancel.hidden = done;

    renderError();
    outputsBox.hidden = status !== "completed";
    if (status === "completed") setText(outputs, pretty(record.outputs));
    setText(inputs, pretty(record.inputs));
    renderSteps(progress);
    document.title = `${formatPercent(pct)} ${status} · ${executionId} · stepstream`;
  }

  function renderError() {
    const error = record.error;
    errorBox.hidden = !error;
    if (!error || errorBox.dataset.shown === record.finished_at) return;
    errorBox.dataset.shown = record.finished_at || "";
    const where = error.step ? ` in step ${error.step}` : "";
    errorBox.replaceChildren(
      h("h2", { id: "error-title" }, "Error"),
      h("p", { class: "error-message" }, h("strong", {}, error.type || "Error"), `${where}: `, error.message)
    );
    if (error.traceback) {
      errorBox.append(
        h("details", { class: "traceback" }, h("summary", {}, "Traceback"), h("pre", { tabindex: "0" }, error.traceback))
      );
    }
  }

  function renderSteps(progress) {
    const upstream = upstreamOf();
    afterHeader.hidden = !upstream;
    record.steps.forEach((step, index) => {
      let row = stepRows[index];
      if (!row) {
        row = {
          bar: progressBar(`Progress of step ${step.name}`),
          name: h("th", { scope: "row" }),
          status: statusBadge(step.status),
          weight: h("td", { class: "num" }),
          percent: h("span", { class: "percent" }),
          items: h("td", { class: "num" }),
          duration: h("td", { class: "num" }),
          after: h("td", { hidden: true }),
        };
        row.tr = h(
          "tr",
          {},
          row.name,
          h("td", {}, row.status),
          row.weight,
          h("td", { class: "progress-cell" }, row.bar.element, row.percent),
          row.items,
          row.duration,
          row.after
        );
        stepRows[index] = row;
        stepsBody.append(row.tr);
      }
      const counted = stepItems(step, progress);
      const pct = stepPercent(step, counted);
      row.tr.dataset.status = step.status;
      setText(row.name, step.name);
      updateBadge(row.status, step.status);
      setText(row.weight, step.weight);
      row.bar.set(pct, pct === null ? `${step.status}` : `${formatPercent(pct)}, ${step.status}`, step.status);
      setText(row.percent, formatPercent(pct));
      setText(row.items, formatItems(counted.done, counted.total));
      setText(row.duration, stepDuration(step));
      row.after.hidden = !upstream;
      setText(row.after, upstream ? (upstream.get(step.name) || []).join(", ") : "");
    });
    for (const extra of stepRows.splice(record.steps.length)) extra.tr.remove();
  }

  return {
    heading,
    title: executionId,
    unmount() {
      unmounted = true;
      clearTimeout(loadTimer);
      if (follower) follower.close();
      if (logs && logs.timer !== null) clearTimeout(logs.timer);
      setConnection(null);
    },
  };
}
