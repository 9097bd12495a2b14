// Start a pipeline: a form generated from its input JSON Schema. The server validates;
// a 422's `errors: [{field, message}]` are shown at the fields they name.

import { get, NoToken, post, Problem } from "./api.js";
import { describeError, h } from "./ui.js";

/** What input a schema property needs: {kind, nullable, schema}; "json" for anything else. */
export function fieldKind(property) {
  let schema = property;
  let nullable = false;
  if (Array.isArray(property.anyOf) || Array.isArray(property.oneOf)) {
    const options = property.anyOf || property.oneOf;
    const others = options.filter((option) => option.type !== "null");
    nullable = others.length < options.length;
    if (others.length !== 1) return { kind: "json", nullable, schema: property };
    schema = { ...others[0], default: property.default, description: property.description, title: property.title };
  }
  let type = schema.type;
  if (Array.isArray(type)) {
    nullable = nullable || type.includes("null");
    const others = type.filter((t) => t !== "null");
    if (others.length !== 1) return { kind: "json", nullable, schema };
    type = others[0];
  }
  if (Array.isArray(schema.enum)) return { kind: "enum", nullable, schema };
  if (["integer", "number", "string", "boolean"].includes(type)) return { kind: type, nullable, schema };
  return { kind: "json", nullable, schema };
}

function bounds(schema) {
  const parts = [];
  const low = schema.minimum ?? schema.exclusiveMinimum;
  const high = schema.maximum ?? schema.exclusiveMaximum;
  if (low !== undefined) parts.push(`${schema.minimum !== undefined ? "≥" : ">"} ${low}`);
  if (high !== undefined) parts.push(`${schema.maximum !== undefined ? "≤" : "<"} ${high}`);
  return parts.join(", ");
}

function hint(name, kind, schema, required) {
  const parts = [kind.kind === "json" ? "JSON" : kind.kind];
  const range = bounds(schema);
  if (range) parts.push(range);
  if (kind.nullable) parts.push("empty for null");
  if (required) parts.push("required");
  else if ("default" in schema) parts.push(`default ${JSON.stringify(schema.default)}`);
  const about = schema.description || schema.title;
  return about ? `${about} (${parts.join("; ")})` : parts.join("; ");
}

/** One labelled field; returns {element, input, read(), showError(text)}. */
function buildField(name, property, required) {
  const kind = fieldKind(property);
  const { schema } = kind;
  const id = `input-${name}`;
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const described = `${hintId} ${errorId}`;
  const hasDefault = "default" in property;
  const initial = hasDefault ? property.default : undefined;
  let input;

  if (kind.kind === "boolean" && !kind.nullable) {
    input = h("input", { id, name, type: "checkbox", checked: initial === true, "aria-describedby": described });
  } else if (kind.kind === "boolean" || kind.kind === "enum") {
    const values = kind.kind === "boolean" ? [true, false] : schema.enum;
    const blank = kind.nullable || (!required && !hasDefault);
    input = h(
      "select",
      { id, name, "aria-describedby": described },
      blank ? h("option", { value: "" }, kind.nullable ? "null" : "—") : null,
      values.map((value, index) =>
        h("option", { value: String(index), selected: initial === value }, String(value))
      )
    );
    input.choices = values;
  } else if (kind.kind === "integer" || kind.kind === "number") {
    input = h("input", {
      id,
      name,
      type: "number",
      step: kind.kind === "integer" ? "1" : "any",
      inputmode: kind.kind === "integer" ? "numeric" : "decimal",
      min: schema.minimum ?? schema.exclusiveMinimum,
      max: schema.maximum ?? schema.exclusiveMaximum,
      value: initial === null || initial === undefined ? "" : String(initial),
      required: required && !kind.nullable,
      "aria-describedby": described,
    });
  } else if (kind.kind === "string") {
    input = h("input", {
      id,
      name,
      type: "text",
      minlength: schema.minLength,
      maxlength: schema.maxLength,
      value: initial === null || initial === undefined ? "" : initial,
      required,
      "aria-describedby": described,
    });
  } else {
    input = h("textarea", { id, name, rows: "3", class: "mono", "aria-describedby": described });
    input.value = initial === undefined ? "" : JSON.stringify(initial);
  }

  const error = h("p", { class: "field-error", id: errorId, hidden: true });
  const element = h(
    "div",
    { class: `field${kind.kind === "boolean" && !kind.nullable ? " checkbox" : ""}`, "data-field": name },
    h("label", { for: id }, name, required ? h("span", { class: "required", "aria-hidden": "true" }, " *") : null),
    input,
    h("p", { class: "hint", id: hintId }, hint(name, kind, schema, required)),
    error
  );

  /** The field's value: {value} to send, {} to leave it out, {problem} when unreadable. */
  function read() {
    if (kind.kind === "boolean" && !kind.nullable) return { value: input.checked };
    if (input.tagName === "SELECT") {
      if (input.value === "") return kind.nullable ? { value: null } : {};
      return { value: input.choices[Number(input.value)] };
    }
    const raw = input.value;
    if (kind.kind === "integer" || kind.kind === "number") {
      if (input.validity.badInput) return { problem: "not a number" };
      if (raw.trim() === "") return kind.nullable ? { value: null } : {};
      return { value: Number(raw) };
    }
    if (kind.kind === "string") {
      // Empty means "not given": the default, or the server's "missing" for a required one.
      if (raw === "") return kind.nullable ? { value: null } : {};
      return { value: raw };
    }
    if (raw.trim() === "") return kind.nullable ? { value: null } : {};
    try {
      return { value: JSON.parse(raw) };
    } catch {
      return { problem: "not valid JSON" };
    }
  }

  input.addEventListener(input.tagName === "SELECT" || input.type === "checkbox" ? "change" : "input", () =>
    showError("")
  );

  function showError(text) {
    error.hidden = !text;
    error.textContent = text || "";
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  return { element, input, read, showError };
}

export function mountStart(main, pipelineName) {
  let unmounted = false;
  let fields = new Map();
  const heading = h("h1", { tabindex: "-1" }, "Start a pipeline");
  const notice = h("p", { class: "notice", role: "status" });
  const chooser = h("select", { id: "pipeline-choice", name: "pipeline" });
  const about = h("div", { class: "about" });
  const formErrors = h("div", { class: "form-errors", role: "alert" });
  const fieldset = h("div", { class: "fields" });
  const submit = h("button", { type: "submit", class: "button primary" }, "Start");
  const form = h("form", { class: "start-form", novalidate: true }, fieldset, formErrors, h("div", { class: "actions" }, submit));

  main.replaceChildren(
    h(
      "section",
      { class: "start" },
      h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/" }, "Executions"), " › Start"),
      heading,
      notice,
      h("div", { class: "field inline" }, h("label", { for: "pipeline-choice" }, "Pipeline"), chooser),
      about,
      form
    )
  );

  chooser.addEventListener("change", () => {
    history.replaceState(null, "", `#/start/${encodeURIComponent(chooser.value)}`);
    showPipeline(chooser.value);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    start();
  });

  let pipelines = [];
  loadPipelines();

  async function loadPipelines() {
    setNotice("Loading pipelines…");
    try {
      pipelines = (await get("api/v1/pipelines")).items;
    } catch (error) {
      if (unmounted) return;
      const retry = h("button", { type: "button", class: "button" }, "Try again");
      retry.addEventListener("click", loadPipelines);
      notice.replaceChildren(
        error instanceof NoToken ? "This server needs an access token. " : `Cannot read the pipelines. ${describeError(error)} `,
        retry
      );
      return;
    }
    if (unmounted) return;
    setNotice(pipelines.length ? "" : "This server has no pipelines.");
    chooser.replaceChildren(...pipelines.map((p) => h("option", { value: p.name }, p.name)));
    const chosen = pipelines.some((p) => p.name === pipelineName) ? pipelineName : pipelines[0]?.name;
    if (pipelineName && chosen !== pipelineName) setNotice(`There is no pipeline ${pipelineName}.`);
    if (chosen) {
      chooser.value = chosen;
      showPipeline(chosen);
    }
  }

  function setNotice(text) {
    notice.textContent = text;
  }

  function showPipeline(name) {
    const pipeline = pipelines.find((p) => p.name === name);
    formErrors.replaceChildren();
    if (!pipeline) return;
    about.replaceChildren(
      h("p", {}, pipeline.description),
      h("p", { class: "step-list" }, "Steps: ", pipeline.steps.map((step) => step.name).join(" → "))
    );
    const schema = pipeline.input_schema || {};
    const required = new Set(schema.required || []);
    fields = new Map();
    const properties = Object.entries(schema.properties || {});
    for (const [field, property] of properties) {
      fields.set(field, buildField(field, property, required.has(field)));
    }
    fieldset.replaceChildren(
      ...(properties.length ? [] : [h("p", {}, "This pipeline takes no inputs.")]),
      ...[...fields.values()].map((field) => field.element)
    );
  }

  function clearErrors() {
    formErrors.replaceChildren();
    for (const field of fields.values()) field.showError("");
  }

  /** Show each problem at its field; ones naming no field of the form above the button. */
  function showErrors(errors, summaryText) {
    const elsewhere = [];
    let first = null;
    for (const { field, message } of errors) {
      const target = fields.get(field) || fields.get(String(field).split(/[.[]/)[0]);
      if (target) {
        target.showError(message);
        first = first || target;
      } else {
        elsewhere.push(field ? `${field}: ${message}` : message);
      }
    }
    formErrors.replaceChildren(
      ...(summaryText ? [h("p", {}, summaryText)] : []),
      ...(elsewhere.length ? [h("ul", {}, elsewhere.map((text) => h("li", {}, text)))] : [])
    );
    if (first) first.input.focus();
  }

  async function start() {
    clearErrors();
    const inputs = {};
    const unreadable = [];
    for (const [name, field] of fields) {
      const result = field.read();
      if (result.problem) unreadable.push({ field: name, message: result.problem });
      else if ("value" in result) inputs[name] = result.value;
    }
    if (unreadable.length) {
      showErrors(unreadable);
      return;
    }
    submit.disabled = true;
    try {
      const record = await post("api/v1/executions", { pipeline: chooser.value, inputs });
      location.hash = `#/executions/${encodeURIComponent(record.execution_id)}`;
    } catch (error) {
      if (error instanceof Problem && Array.isArray(error.body.errors)) {
        showErrors(error.body.errors, "These inputs do not fit the pipeline; see the marked fields.");
      } else {
        showErrors([], error instanceof NoToken ? error.message : describeError(error));
      }
    } finally {
      submit.disabled = false;
    }
  }

  return {
    heading,
    title: "Start a pipeline",
    unmount() {
      unmounted = true;
    },
  };
}
