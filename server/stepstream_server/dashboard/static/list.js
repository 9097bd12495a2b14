// The executions list: one REST page (filters, cursor paging), kept live by the watch
// WebSocket. Rows are created once and updated in place, at most once per frame.

import { askToken, get, NoToken, wsUrl } from "./api.js";
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
  STATUSES,
  statusBadge,
  TERMINAL,
  timeElement,
  updateBadge,
} from "./ui.js";

const SIZES = [25, 50, 100, 200];
const DEFAULT_SIZE = 50;
const pageStack = []; // cursors of the pages before the shown one, for "Newer"

function readFilters(query) {
  const limit = Number(query.get("limit"));
  return {
    status: STATUSES.includes(query.get("status")) ? query.get("status") : "",
    pipeline: query.get("pipeline") || "",
    limit: SIZES.includes(limit) ? limit : DEFAULT_SIZE,
    cursor: query.get("cursor") || "",
  };
}

function listHash(filters) {
  const params = new URLSearchParams();
  if (filters.status) params.set("status", filters.status);
  if (filters.pipeline) params.set("pipeline", filters.pipeline);
  if (filters.limit !== DEFAULT_SIZE) params.set("limit", String(filters.limit));
  if (filters.cursor) params.set("cursor", filters.cursor);
  const query = params.toString();
  return query ? `#/?${query}` : "#/";
}

function select(name, label, options, value) {
  const id = `filter-${name}`;
  return h(
    "div",
    { class: "field inline" },
    h("label", { for: id }, label),
    h(
      "select",
      { id, name },
      options.map(([optionValue, text]) =>
        h("option", { value: optionValue, selected: optionValue === value }, text)
      )
    )
  );
}

export function mountList(main, initialQuery) {
  let filters = readFilters(initialQuery);
  const rows = new Map(); // execution id -> {data, tr, bar, cells}
  let order = []; // the ids shown, newest first
  const live = new Map(); // unfinished executions the watch reported: id -> summary record
  let upper = null; // the shown page holds ids < upper (null: no bound, the first page)
  let lower = null; // ... and ids >= lower (null: no bound, the last page)
  let nextCursor = null;
  let loading = true; // messages wait in `buffer` while a page loads
  let buffer = [];
  let socket = null;
  let retryTimer = null;
  let generation = 0; // a page load that a newer one overtook is dropped
  let unmounted = false;
  const retry = backoff();
  const dirty = new Set();
  const filling = new Set();
  const schedule = frameScheduler(flush);

  const heading = h("h1", { tabindex: "-1" }, "Executions");
  const summary = h("p", { class: "summary", id: "live-summary" });
  const notice = h("p", { class: "notice", role: "status" });
  const statusSelect = select(
    "status",
    "Status",
    [["", "All"], ...STATUSES.map((s) => [s, s])],
    filters.status
  );
  const pipelineSelect = select("pipeline", "Pipeline", [["", "All"]], filters.pipeline);
  const sizeSelect = select(
    "limit",
    "Per page",
    SIZES.map((n) => [String(n), String(n)]),
    String(filters.limit)
  );
  const filterForm = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter executions" },
    statusSelect,
    pipelineSelect,
    sizeSelect
  );
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "executions" },
    h("caption", { class: "visually-hidden" }, "Executions, newest first"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Execution", "Pipeline", "Status", "Progress", "Step", "Items", "Rate", "ETA"].map(
          (title) => h("th", { scope: "col" }, title)
        ),
        h("th", { scope: "col" }, "Started"),
        h("th", { scope: "col" }, "Finished")
      )
    ),
    tbody
  );
  const newest = h("button", { type: "button", class: "button" }, "Newest");
  const newer = h("button", { type: "button", class: "button" }, "Newer");
  const older = h("button", { type: "button", class: "button" }, "Older");
  const pageLabel = h("span", { class: "page-label" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" }, newest, newer, pageLabel, older);
  newest.disabled = newer.disabled = older.disabled = true; // until a page is read

  main.replaceChildren(
    h(
      "section",
      { class: "list" },
      h(
        "div",
        { class: "heading" },
        heading,
        summary,
        h("a", { class: "button primary", href: "#/start" }, "Start a pipeline")
      ),
      filterForm,
      notice,
      h(
        "div",
        { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Executions" },
        table
      ),
      pager
    )
  );

  filterForm.addEventListener("change", (event) => {
    const { name, value } = event.target;
    pageStack.length = 0;
    const next = { ...filters, cursor: "" };
    next[name] = name === "limit" ? Number(value) : value;
    location.hash = listHash(next);
  });
  filterForm.addEventListener("submit", (event) => event.preventDefault());
  newest.addEventListener("click", () => {
    pageStack.length = 0;
    location.hash = listHash({ ...filters, cursor: "" });
  });
  newer.addEventListener("click", () => {
    location.hash = listHash({ ...filters, cursor: pageStack.pop() || "" });
  });
  older.addEventListener("click", () => {
    if (!nextCursor) return;
    pageStack.push(filters.cursor);
    location.hash = listHash({ ...filters, cursor: nextCursor });
  });

  loadPipelines();
  connect();

  async function loadPipelines() {
    try {
      const { items } = await get("api/v1/pipelines");
      const names = items.map((p) => p.name);
      if (filters.pipeline && !names.includes(filters.pipeline)) names.push(filters.pipeline);
      const element = pipelineSelect.querySelector("select");
      element.replaceChildren(
        h("option", { value: "" }, "All"),
        ...names.map((name) =>
          h("option", { value: name, selected: name === filters.pipeline }, name)
        )
      );
    } catch {
      // The list says what went wrong; the filter keeps what it has.
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    loading = true;
    buffer = [];
    const ws = new WebSocket(wsUrl("api/v1/executions/ws"));
    socket = ws;
    setConnection("connecting", "Connecting…");
    ws.onopen = () => {
      if (socket !== ws) return;
      live.clear(); // the new connection reports every unfinished execution afresh
      setConnection("live", "Live");
      load();
    };
    ws.onmessage = (event) => {
      if (socket !== ws) return;
      retry.reset();
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (loading) buffer.push(message);
      else handle(message);
    };
    ws.onclose = (event) => {
      if (socket !== ws || unmounted) return;
      socket = null;
      if (event.code === 4401) {
        setConnection("offline", "Needs a token");
        askToken().then(connect, () => showNoToken());
        return;
      }
      // 1008: this client fell too far behind and missed events: list afresh, watch again.
      const delay = retry.next();
      setConnection("retrying", `Reconnecting in ${Math.ceil(delay / 1000)} s…`);
      retryTimer = setTimeout(connect, delay);
    };
  }

  function showNoToken() {
    setConnection("offline", "Needs a token");
    const button = h("button", { type: "button", class: "button" }, "Enter token");
    button.addEventListener("click", () => askToken().then(connect, () => {}));
    notice.replaceChildren("This server needs an access token. ", button);
  }

  /** Read the page the filters and cursor name; then apply what the watch sent meanwhile. */
  async function load() {
    const mine = ++generation;
    loading = true;
    if (!order.length) setText(notice, "Loading…");
    const params = new URLSearchParams({ limit: String(filters.limit) });
    if (filters.status) params.set("status", filters.status);
    if (filters.pipeline) params.set("pipeline", filters.pipeline);
    if (filters.cursor) params.set("cursor", filters.cursor);
    let page;
    try {
      page = await get(`api/v1/executions?${params}`);
    } catch (error) {
      if (mine !== generation || unmounted) return;
      if (error instanceof NoToken) {
        showNoToken();
      } else {
        setText(notice, `Cannot list executions. ${describeError(error)}`);
        if (socket) socket.close(); // reconnect with backoff, then list again
      }
      return;
    }
    if (mine !== generation || unmounted) return;
    rebuild(page);
    loading = false;
    const waiting = buffer;
    buffer = [];
    for (const message of waiting) handle(message);
  }

  function rebuild(page) {
    upper = filters.cursor || null;
    nextCursor = page.next_cursor;
    lower = nextCursor && page.items.length ? page.items[page.items.length - 1].execution_id : null;
    const kept = new Map();
    for (const record of page.items) {
      const row = rows.get(record.execution_id) || createRow(record);
      row.data = record;
      kept.set(record.execution_id, row);
    }
    rows.clear();
    for (const [id, row] of kept) rows.set(id, row);
    order = [...kept.keys()];
    tbody.replaceChildren(...order.map((id) => rows.get(id).tr));
    dirty.clear();
    for (const row of rows.values()) render(row);
    updateChrome();
  }

  function matches(data) {
    return (
      (!filters.status || data.status === filters.status) &&
      (!filters.pipeline || data.pipeline === filters.pipeline)
    );
  }

  function inRange(id) {
    return (upper === null || id < upper) && (lower === null || id >= lower);
  }

  /** One watch message: keep the live summary, update a shown row, or show a new one. */
  function handle(message) {
    const id = message.execution_id;
    if (!id || message.type === "error" || typeof message.seq !== "number") return;
    let info = live.get(id);
    if (!info && message.type === "status" && !TERMINAL.has(message.status)) {
      info = { execution_id: id, pipeline: message.pipeline, status: message.status, last_seq: 0 };
      Object.assign(info, { progress: null, started_at: null, finished_at: null });
      live.set(id, info);
    }
    if (info && message.seq > info.last_seq) applyEvent(info, message);
    if (info && TERMINAL.has(info.status)) live.delete(id);
    schedule();

    const row = rows.get(id);
    if (row) {
      if (message.seq <= row.data.last_seq) return;
      applyEvent(row.data, message);
      if (matches(row.data)) dirty.add(row);
      else remove(id);
      return;
    }
    if (info && inRange(id) && matches(info)) {
      const shown = insert({ ...info });
      if (shown.data.status !== "pending" && !shown.data.started_at) fill(id);
    }
  }

  function createRow(data) {
    const id = data.execution_id;
    const bar = progressBar(`Progress of ${id}`);
    const cells = {
      pipeline: h("td"),
      status: statusBadge(data.status),
      percent: h("span", { class: "percent" }),
      step: h("td"),
      items: h("td", { class: "num" }),
      rate: h("td", { class: "num" }),
      eta: h("td", { class: "num" }),
      started: timeElement(),
      finished: timeElement(),
    };
    const tr = h(
      "tr",
      { "data-id": id },
      h("th", { scope: "row" }, h("a", { href: `#/executions/${encodeURIComponent(id)}` }, id)),
      cells.pipeline,
      h("td", {}, cells.status),
      h("td", { class: "progress-cell" }, bar.element, cells.percent),
      cells.step,
      cells.items,
      cells.rate,
      cells.eta,
      h("td", {}, cells.started),
      h("td", {}, cells.finished)
    );
    return { data, tr, bar, cells };
  }

  function render(row) {
    const { data, cells } = row;
    const progress = data.progress;
    const running = data.status === "running";
    const percent = data.status === "completed" ? 100 : progress ? progress.percentage : 0;
    const step = running || data.status === "failed" || data.status === "cancelled";
    row.bar.set(percent, `${formatPercent(percent)}, ${data.status}`, data.status);
    row.tr.dataset.status = data.status;
    setText(cells.pipeline, data.pipeline);
    updateBadge(cells.status, data.status);
    setText(cells.percent, formatPercent(percent));
    setText(cells.step, step ? describeStep(progress) : "");
    setText(cells.items, running && progress ? formatItems(progress.items_done, progress.items_total) : "");
    setText(cells.rate, running && progress ? formatRate(progress.rate) : "");
    setText(cells.eta, running && progress ? formatDuration(progress.eta_seconds) : "");
    setTime(cells.started, data.started_at);
    setTime(cells.finished, data.finished_at);
  }

  function flush() {
    if (unmounted) return;
    for (const row of dirty) render(row);
    dirty.clear();
    updateSummary();
  }

  function insert(data) {
    const row = createRow(data);
    const id = data.execution_id;
    rows.set(id, row);
    let index = order.findIndex((other) => other < id);
    if (index < 0) index = order.length;
    order.splice(index, 0, id);
    const after = order[index + 1];
    tbody.insertBefore(row.tr, after ? rows.get(after).tr : null);
    render(row);
    if (order.length > filters.limit) {
      // The page keeps its size: the oldest rows move to the next page.
      for (const gone of order.splice(filters.limit)) {
        rows.get(gone).tr.remove();
        rows.delete(gone);
      }
      lower = order[order.length - 1];
      nextCursor = lower;
    }
    updateChrome();
    return row;
  }

  function remove(id) {
    const row = rows.get(id);
    if (!row) return;
    row.tr.remove();
    rows.delete(id);
    dirty.delete(row);
    order = order.filter((other) => other !== id);
    updateChrome();
  }

  /** A row shown from the watch alone lacks what only the record has (its start time). */
  async function fill(id) {
    if (filling.has(id)) return;
    filling.add(id);
    try {
      const record = await get(`api/v1/executions/${encodeURIComponent(id)}`);
      const row = rows.get(id);
      if (row && record.last_seq >= row.data.last_seq) {
        row.data = record;
        dirty.add(row);
        schedule();
      }
    } catch {
      // The next event or page load brings it.
    } finally {
      filling.delete(id);
    }
  }

  function updateSummary() {
    let running = 0;
    let pending = 0;
    for (const info of live.values()) {
      if (info.status === "running") running += 1;
      else if (info.status === "pending") pending += 1;
    }
    setText(summary, socket ? `${running} running · ${pending} pending` : "");
  }

  function updateChrome() {
    const filtered = filters.status || filters.pipeline;
    if (!order.length) {
      setText(notice, filtered ? "No executions match these filters." : "No executions yet.");
    } else {
      setText(notice, "");
    }
    newest.disabled = !filters.cursor;
    newer.disabled = !filters.cursor;
    older.disabled = !nextCursor;
    const number = filters.cursor ? (pageStack.length ? `Page ${pageStack.length + 1}` : "") : "Page 1";
    setText(pageLabel, `${number}${number ? " · " : ""}${order.length} shown`);
    updateSummary();
  }

  return {
    heading,
    title: "Executions",
    update(query) {
      filters = readFilters(query);
      for (const [name, value] of Object.entries(filters)) {
        const element = filterForm.elements.namedItem(name);
        if (element) element.value = String(value);
      }
      if (socket && socket.readyState === WebSocket.OPEN) load();
    },
    unmount() {
      unmounted = true;
      clearTimeout(retryTimer);
      if (socket) socket.close(1000);
      socket = null;
      setConnection(null);
    },
  };
}
