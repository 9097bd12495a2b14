// Small DOM helpers shared by the views: elements, progress bars, formats, the
// connection indicator and a once-per-frame scheduler.

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);
export const STATUSES = ["pending", "running", "completed", "failed", "cancelled"];

/** h("a", {href: "#/"}, "text", child): an element; text children are text nodes, never HTML. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") element.className = value;
    else if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Set text only when it changed: no layout work for rows whose values stand still. */
export function setText(element, text) {
  const value = text === undefined || text === null ? "" : String(text);
  if (element.textContent !== value) element.textContent = value;
}

/**
 * A progress bar: `role="progressbar"` with aria values and a label. `set(percent, text)`;
 * `set(null)` makes it indeterminate (a running step that reports no items).
 */
export function progressBar(label) {
  const fill = h("span", { class: "fill" });
  const bar = h(
    "div",
    {
      class: "bar",
      role: "progressbar",
      "aria-label": label,
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": "0",
    },
    fill
  );
  let shown;
  return {
    element: bar,
    set(percent, text, status) {
      if (status !== undefined && bar.dataset.status !== status) bar.dataset.status = status;
      const key = `${percent}|${text}`;
      if (key === shown) return;
      shown = key;
      if (percent === null || percent === undefined) {
        bar.removeAttribute("aria-valuenow");
        bar.classList.add("indeterminate");
        fill.style.transform = "";
      } else {
        const clamped = Math.max(0, Math.min(100, percent));
        bar.classList.remove("indeterminate");
        bar.setAttribute("aria-valuenow", clamped.toFixed(1).replace(/\.0$/, ""));
        fill.style.transform = `scaleX(${clamped / 100})`;
      }
      if (text) bar.setAttribute("aria-valuetext", text);
      else bar.removeAttribute("aria-valuetext");
    },
  };
}

export function statusBadge(status) {
  const badge = h("span", { class: "status" });
  updateBadge(badge, status);
  return badge;
}

export function updateBadge(badge, status) {
  if (badge.dataset.status === status) return;
  badge.dataset.status = status;
  badge.textContent = status;
}

export function formatPercent(percent) {
  if (percent === null || percent === undefined) return "";
  return `${percent >= 100 || percent === 0 ? percent.toFixed(0) : percent.toFixed(1)}%`;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const whole = Math.round(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = String(whole % 60).padStart(2, "0");
  return hours ? `${hours} h ${String(minutes).padStart(2, "0")} min` : `${minutes} min ${rest} s`;
}

export function formatRate(rate) {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return "";
  return `${rate >= 100 ? Math.round(rate) : rate.toFixed(1)}/s`;
}

export function formatItems(done, total) {
  if (done === null || done === undefined) return "";
  return total === null || total === undefined ? `${done}` : `${done}/${total}`;
}

/** Local time; the date too unless it is today. */
export function formatTime(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return iso;
  const today = new Date().toDateString() === when.toDateString();
  return today ? when.toLocaleTimeString() : when.toLocaleString();
}

export function timeElement(iso) {
  const element = h("time");
  setTime(element, iso);
  return element;
}

export function setTime(element, iso) {
  const value = iso || "";
  if (element.getAttribute("datetime") === value) return;
  if (value) element.setAttribute("datetime", value);
  else element.removeAttribute("datetime");
  element.title = value ? new Date(value).toString() : "";
  element.textContent = formatTime(value);
}

/** "processing (3/5)" for a progress snapshot. */
export function describeStep(progress) {
  if (!progress) return "";
  const name = progress.current_step_name || `step ${progress.current_step + 1}`;
  const position = Math.min(progress.current_step + 1, progress.total_steps);
  return `${name} (${position}/${progress.total_steps})`;
}

/** Fold one stream message into a record, as the server folds events into its records. */
export function applyEvent(record, message) {
  record.last_seq = message.seq;
  switch (message.type) {
    case "status":
      record.status = message.status;
      if (message.pipeline) record.pipeline = message.pipeline;
      if (message.progress !== undefined) record.progress = message.progress;
      break;
    case "started":
      record.status = "running";
      record.started_at = message.started_at;
      record.progress = message.progress;
      break;
    case "progress":
      record.progress = message.progress;
      if (message.step && record.steps) record.steps[message.step.index] = message.step;
      break;
    case "completed":
      record.status = "completed";
      record.finished_at = message.finished_at;
      record.progress = message.progress;
      record.outputs = message.outputs === undefined ? null : message.outputs;
      break;
    case "failed":
      record.status = "failed";
      record.finished_at = message.finished_at;
      record.error = message.error;
      if (message.progress) record.progress = message.progress;
      closeSteps(record, "failed", message.finished_at);
      break;
    case "cancelled":
      record.status = "cancelled";
      record.finished_at = message.finished_at;
      if (message.progress) record.progress = message.progress;
      closeSteps(record, "cancelled", message.finished_at);
      break;
    default:
      break;
  }
}

function closeSteps(record, status, at) {
  for (const [index, step] of (record.steps || []).entries()) {
    if (step.status !== "running") continue;
    const duration = step.started_at ? (Date.parse(at) - Date.parse(step.started_at)) / 1000 : null;
    record.steps[index] = { ...step, status, duration_seconds: duration };
  }
}

/** Run `flush` at most once per animation frame, however many times it is asked for. */
export function frameScheduler(flush) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      flush();
    });
  };
}

/** The header's live indicator: "live", "connecting", "retrying", "offline" or hidden. */
export function setConnection(state, text) {
  const indicator = document.getElementById("connection");
  if (!indicator) return;
  if (!state) {
    indicator.hidden = true;
    indicator.dataset.state = "";
    setText(indicator, "");
    return;
  }
  indicator.hidden = false;
  indicator.dataset.state = state;
  setText(indicator, text);
}

/** Exponential backoff with jitter: 0.5 s, 1 s, 2 s ... up to 5 s; `reset()` after success. */
export function backoff(max = 5000) {
  let attempt = 0;
  return {
    next() {
      const delay = Math.min(max, 500 * 2 ** attempt);
      attempt += 1;
      return Math.round(delay * (0.75 + Math.random() * 0.5));
    },
    reset() {
      attempt = 0;
    },
  };
}

/** A problem as a person reads it: "Title: detail". */
export function describeError(error) {
  if (error && error.body && error.title) {
    const detail = error.body.detail;
    return detail ? `${error.title}: ${detail}` : error.title;
  }
  return error && error.message ? error.message : String(error);
}
