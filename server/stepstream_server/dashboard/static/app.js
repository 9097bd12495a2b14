// The dashboard's router: the URL's fragment names the view (#/, #/executions/{id},
// #/start/{pipeline}), so the server serves one page and every link can be bookmarked.

import { mountExecution } from "./execution.js";
import { mountList } from "./list.js";
import { mountStart } from "./start.js";
import { h } from "./ui.js";

const main = document.getElementById("main");
let current = null; // {key, view}

function parse(hash) {
  const [path, query = ""] = (hash.startsWith("#/") ? hash.slice(1) : "/").split("?");
  return { path, query: new URLSearchParams(query) };
}

function show(key, mount, firstView) {
  if (current && current.key === key) return;
  if (current) current.view.unmount();
  const view = mount();
  current = { key, view };
  document.title = `${view.title} · stepstream`;
  // Say where we are to keyboard and screen-reader users; not on the first load.
  if (!firstView && view.heading) view.heading.focus({ preventScroll: false });
}

function route(firstView = false) {
  if (location.hash && !location.hash.startsWith("#/")) return; // an in-page anchor
  const { path, query } = parse(location.hash);
  let match;
  if (path === "/" || path === "") {
    if (current && current.key === "list") current.view.update(query);
    else show("list", () => mountList(main, query), firstView);
  } else if ((match = path.match(/^\/executions\/([^/]+)$/))) {
    const id = decodeURIComponent(match[1]);
    show(`execution:${id}`, () => mountExecution(main, id), firstView);
  } else if ((match = path.match(/^\/start(?:\/([^/]*))?$/))) {
    const name = match[1] ? decodeURIComponent(match[1]) : "";
    show(`start:${name}`, () => mountStart(main, name), firstView);
  } else {
    show(
      `missing:${path}`,
      () => {
        const heading = h("h1", { tabindex: "-1" }, "Not found");
        main.replaceChildren(
          h("section", {}, heading, h("p", {}, "Nothing here. ", h("a", { href: "#/" }, "See the executions.")))
        );
        return { heading, title: "Not found", unmount() {} };
      },
      firstView
    );
  }
}

window.addEventListener("hashchange", () => route());
route(true);
