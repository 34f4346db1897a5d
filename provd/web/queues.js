// The queues page: JobService.ListQueues — the pending jobs per organization,
// provisioner and tags, how long the oldest has waited, and the connected daemons
// that can take them, or why none can: "why is nothing running?" on one screen.
// Refreshed every couple of seconds while the tab is visible (polling, as jobs.js).

import { unary } from "./api.js";
import { el, formatTags, formatTime, poll } from "./dom.js";

const REFRESH_SECONDS = 2;
const COLUMNS = ["Organization", "Provisioner", "Tags", "Pending", "Oldest wait", "Daemons"];

// Kept while the tab lives, so that a visit to a job and back keeps the filter.
const state = { organization: "" };

// How long since `timestamp`, by the browser's clock: "42 s", "3 min 5 s", "2 h 7 min",
// "4 d 1 h". Never negative (the server's clock may be a little ahead).
function formatAge(timestamp, now = Date.now()) {
  const then = new Date(timestamp).getTime();
  if (!timestamp || Number.isNaN(then)) return "";
  let seconds = Math.max(0, Math.floor((now - then) / 1000));
  const days = Math.floor(seconds / 86400);
  seconds -= days * 86400;
  const hours = Math.floor(seconds / 3600);
  seconds -= hours * 3600;
  const minutes = Math.floor(seconds / 60);
  seconds -= minutes * 60;
  if (days) return `${days} d ${hours} h`;
  if (hours) return `${hours} h ${minutes} min`;
  if (minutes) return `${minutes} min ${seconds} s`;
  return `${seconds} s`;
}

// A cell with its column's name, shown beside the value when rows stack (narrow screens).
function cell(column, attributes, ...children) {
  return el("td", { ...attributes, "data-label": column }, ...children);
}

// One daemon that can take the queue's jobs: its name (and id), and the job it runs.
function daemonItem(daemon) {
  const job = daemon.currentJobId;
  return el(
    "li",
    { "data-daemon-id": daemon.id || "" },
    el("span", { class: "queue-daemon-name" }, daemon.name || ""),
    " ",
    el("span", { class: "mono muted" }, `(${daemon.id || ""})`),
    " ",
    job
      ? el(
          "span",
          { class: "queue-daemon-job" },
          "busy: ",
          el("a", { class: "mono", href: `#/jobs/${encodeURIComponent(job)}` }, job),
        )
      : el("span", { class: "muted queue-daemon-job" }, "no job"),
  );
}

// Who can take the queue's jobs, or — prominently — why nobody can.
function servedBy(queue) {
  const daemons = queue.daemons || [];
  if (!daemons.length) {
    return el(
      "p",
      { class: "queue-unroutable", role: "note" },
      el("strong", {}, "No connected daemon can take these jobs: "),
      queue.unroutableReason || "none is connected",
      ".",
    );
  }
  return el("ul", { class: "queue-daemons" }, daemons.map(daemonItem));
}

function queueRow(queue) {
  const servable = (queue.daemons || []).length > 0;
  return el(
    "tr",
    {
      "data-organization": queue.organization || "",
      "data-provisioner": queue.provisioner || "",
      "data-tags": formatTags(queue.tags),
      "data-servable": servable ? "yes" : "no",
    },
    cell("Organization", { class: "queue-organization" }, queue.organization || ""),
    cell("Provisioner", { class: "queue-provisioner" }, queue.provisioner || ""),
    cell("Tags", { class: "tags queue-tags" }, formatTags(queue.tags)),
    cell("Pending", { class: "number queue-pending" }, el("strong", {}, String(queue.pending ?? 0))),
    // One child: a stacked cell (narrow screens) is a grid of its label and one value.
    cell(
      "Oldest wait",
      { class: "queue-wait" },
      el(
        "span",
        {},
        el("span", { class: "queue-age" }, formatAge(queue.oldestCreatedAt)),
        " ",
        el("span", { class: "muted" }, `since ${formatTime(queue.oldestCreatedAt)}`),
      ),
    ),
    cell("Daemons", { class: "queue-served" }, servedBy(queue)),
  );
}

export function showQueues(view) {
  document.title = "Queues · provd";
  const controller = new AbortController();

  const organization = el("input", {
    id: "queues-organization",
    type: "text",
    value: state.organization,
    placeholder: "any",
    spellcheck: "false",
  });
  const filters = el(
    "form",
    { id: "queue-filters", class: "filters" },
    el("label", {}, "Organization ", organization),
    el("button", { type: "submit" }, "Filter"),
  );
  const body = el("tbody", { id: "queues-body" });
  const table = el(
    "table",
    { id: "queues", class: "data stack" },
    el("thead", {}, el("tr", {}, COLUMNS.map((name) => el("th", { scope: "col" }, name)))),
    body,
  );
  const count = el("span", { id: "queues-count", class: "muted" });
  const updated = el("span", { id: "queues-updated", class: "muted" });
  const problem = el("p", { id: "queues-error", class: "error", role: "alert", hidden: true });
  view.replaceChildren(
    el("h1", {}, "Queues"),
    el(
      "p",
      { class: "hint muted" },
      "Pending jobs by organization, provisioner and tags, longest-waiting first, with the " +
        "connected daemons that can take them.",
    ),
    filters,
    problem,
    table,
    el("div", { class: "pager" }, count, updated),
  );

  const showProblem = (message) => {
    problem.textContent = message;
    problem.hidden = !message;
  };

  const render = (queues) => {
    const none = state.organization
      ? `No job of ${state.organization} is pending.`
      : "No job is pending.";
    body.replaceChildren(
      ...(queues.length
        ? queues.map(queueRow)
        : [el("tr", {}, el("td", { colspan: COLUMNS.length, class: "muted" }, none))]),
    );
    const pending = queues.reduce((sum, queue) => sum + (queue.pending || 0), 0);
    const stuck = queues.filter((queue) => !(queue.daemons || []).length).length;
    count.textContent =
      `${queues.length} queue${queues.length === 1 ? "" : "s"}, ` +
      `${pending} pending job${pending === 1 ? "" : "s"}, ` +
      `${stuck} with no daemon to take them`;
    updated.textContent = `updated ${formatTime(new Date().toISOString())}, every ${REFRESH_SECONDS} s`;
  };

  const refresh = async () => {
    const request = state.organization ? { organization: state.organization } : {};
    try {
      const { queues = [] } = await unary("provd.v1.JobService/ListQueues", request, {
        signal: controller.signal,
      });
      render(queues);
      showProblem("");
    } catch (error) {
      if (error.name === "AbortError") return;
      showProblem(`Cannot list queues: ${error.message}`);
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
