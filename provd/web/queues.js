// The queues page: JobService.ListQueues — the pending jobs per organization,
// provisioner and tags, how long the oldest has waited, and the connected daemons
// that can take them, or why none can: "why is nothing running?" on one screen.
// Re-read whenever provd says jobs changed (WatchJobs, as jobs.js), and every 5 s
// all the same: daemons connecting and leaving change it too, and are not pushed.

import { el, formatTags, formatTime } from "./dom.js";
import { cell, showTablePage } from "./table_page.js";

const COLUMNS = ["Organization", "Provisioner", "Tags", "Pending", "Oldest wait", "Daemons"];
// How often the page re-reads while pushes come: for the daemons.
const DAEMONS_SECONDS = 5;

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
  return showTablePage(view, {
    id: "queues",
    formId: "queue-filters",
    title: "Queues",
    hint:
      "Pending jobs by organization, provisioner and tags, longest-waiting first, with the " +
      "connected daemons that can take them.",
    columns: COLUMNS,
    state,
    method: "provd.v1.JobService/ListQueues",
    items: ({ queues = [] }) => queues,
    rows: (queues) => queues.map(queueRow),
    empty: (organization) =>
      organization ? `No job of ${organization} is pending.` : "No job is pending.",
    summary: (queues) => {
      const pending = queues.reduce((sum, queue) => sum + (queue.pending || 0), 0);
      const stuck = queues.filter((queue) => !(queue.daemons || []).length).length;
      return (
        `${queues.length} queue${queues.length === 1 ? "" : "s"}, ` +
        `${pending} pending job${pending === 1 ? "" : "s"}, ` +
        `${stuck} with no daemon to take them`
      );
    },
    what: "queues",
    live: { seconds: DAEMONS_SECONDS, label: `live; daemons every ${DAEMONS_SECONDS} s` },
  });
}
