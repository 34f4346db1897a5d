// A live table page, as the daemons and queues pages are: an organization filter, one
// provd.v1 list call, its items as table rows (stacked as cards on narrow screens), a
// count line, refreshed every POLL_SECONDS while the tab is visible (polling), or, for
// a page with `live`, whenever provd says jobs changed (WatchJobs, as jobs.js) and
// every `live.seconds` as well (what it shows besides jobs is not pushed). Element ids
// follow the page's `id`: `${id}` (the table), `${id}-body`, `${id}-organization`,
// `${id}-count`, `${id}-updated`, `${id}-live` (live pages), `${id}-error`.

import { unary } from "./api.js";
import { el, formatTime, livePoll, poll, POLL_SECONDS } from "./dom.js";

// A cell with its column's name, shown beside the value when rows stack (narrow screens).
export function cell(column, attributes, ...children) {
  return el("td", { ...attributes, "data-label": column }, ...children);
}

// `page`: { id, formId, title, hint (optional), columns, state (kept while the tab
// lives: { organization }), method, items(response) → list, rows(items) → <tr>s,
// empty(organization) → text, summary(items) → text, what (for "Cannot list …"),
// live (optional: { seconds, label }, for `livePoll`) }.
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
  const mode = page.live ? el("span", { id: `${id}-live`, class: "muted" }) : null;
  const problem = el("p", { id: `${id}-error`, class: "error", role: "alert", hidden: true });
  view.replaceChildren(
    el("h1", {}, page.title),
    ...(page.hint ? [el("p", { class: "hint muted" }, page.hint)] : []),
    filters,
    problem,
    table,
    el("div", { class: "pager" }, count, updated, mode),
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
    const time = formatTime(new Date().toISOString());
    updated.textContent = page.live ? `updated ${time}` : `updated ${time}, every ${POLL_SECONDS} s`;
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

  const poller = page.live
    ? livePoll(refresh, { mode, liveSeconds: page.live.seconds, liveLabel: page.live.label })
    : poll(refresh, POLL_SECONDS);

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
