// A live table page, as the daemons and queues pages are: an organization filter, one
// provd.v1 list call, its items as table rows (stacked as cards on narrow screens), a
// count line, refreshed every REFRESH_SECONDS while the tab is visible (polling, as
// jobs.js). Element ids follow the page's `id`: `${id}` (the table), `${id}-body`,
// `${id}-organization`, `${id}-count`, `${id}-updated`, `${id}-error`.

import { unary } from "./api.js";
import { el, formatTime, poll } from "./dom.js";

export const REFRESH_SECONDS = 2;

// A cell with its column's name, shown beside the value when rows stack (narrow screens).
export function cell(column, attributes, ...children) {
  return el("td", { ...attributes, "data-label": column }, ...children);
}

// `page`: { id, formId, title, hint (optional), columns, state (kept while the tab
// lives: { organization }), method, items(response) → list, rows(items) → <tr>s,
// empty(organization) → text, summary(items) → text, what (for "Cannot list …") }.
export function showTablePage(view, page) {
  document.title = `${page.title} · provd`;
  const controller = new AbortController();
  const { id, state } = page;

  const organization = el("input", {
    id: `${id}-organization`,
    type: "text",
    value: state.organization,
    placeholder: "any",
    spellcheck: "false",
  });
  const filters = el(
    "form",
    { id: page.formId, class: "filters" },
    el("label", {}, "Organization ", organization),
    el("button", { type: "submit" }, "Filter"),
  );
  const body = el("tbody", { id: `${id}-body` });
  const table = el(
    "table",
    { id, class: "data stack" },
    el("thead", {}, el("tr", {}, page.columns.map((name) => el("th", { scope: "col" }, name)))),
    body,
  );
  const count = el("span", { id: `${id}-count`, class: "muted" });
  const updated = el("span", { id: `${id}-updated`, class: "muted" });
  const problem = el("p", { id: `${id}-error`, class: "error", role: "alert", hidden: true });
  view.replaceChildren(
    el("h1", {}, page.title),
    ...(page.hint ? [el("p", { class: "hint muted" }, page.hint)] : []),
    filters,
    problem,
    table,
    el("div", { class: "pager" }, count, updated),
  );

  const showProblem = (message) => {
    problem.textContent = message;
    problem.hidden = !message;
  };

  const render = (items) => {
    const none = page.empty(state.organization);
    body.replaceChildren(
      ...(items.length
        ? page.rows(items)
        : [el("tr", {}, el("td", { colspan: page.columns.length, class: "muted" }, none))]),
    );
    count.textContent = page.summary(items);
    updated.textContent = `updated ${formatTime(new Date().toISOString())}, every ${REFRESH_SECONDS} s`;
  };

  const refresh = async () => {
    const request = state.organization ? { organization: state.organization } : {};
    try {
      const response = await unary(page.method, request, { signal: controller.signal });
      render(page.items(response));
      showProblem("");
    } catch (error) {
      if (error.name === "AbortError") return;
      showProblem(`Cannot list ${page.what}: ${error.message}`);
    }
  };

  const poller = poll(refresh, REFRESH_SECONDS);

  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    state.organization = organization.value.trim();
    poller.now();
  });

  return {
    stop() {
      poller.stop();
      controller.abort();
    },
  };
}
