// The daemons page: DaemonService.ListDaemons — every daemon provd has seen, whether
// it is connected or stale, the job it runs, its provisioners, tags and key —
// refreshed every couple of seconds while the tab is visible (polling: a daemon
// connecting or going stale is not a job change, so WatchJobs does not tell).

import { el, formatTags, formatTime } from "./dom.js";
import { cell, showTablePage } from "./table_page.js";

const COLUMNS = ["Name", "Organization", "State", "Job", "Provisioners", "Tags", "Key", "Last seen"];

// Kept while the tab lives, so that a visit to a job and back keeps the filter.
const state = { organization: "" };

// What the API says: `connected` (a stream open, or running a job and seen lately),
// `stale` (no stream, not seen for three heartbeats), or neither: "idle", as
// `provd daemons list` calls it (seen lately, no stream, no job).
function stateOf(daemon) {
  if (daemon.connected) return "connected";
  if (daemon.stale) return "stale";
  return "idle";
}

function keyOf(daemon) {
  if (!daemon.keyId) return el("span", { class: "muted" }, "pre-shared key");
  if (!daemon.keyName) return el("span", { class: "mono" }, `${daemon.keyId} (deleted)`);
  return el("span", {}, daemon.keyName, " ", el("span", { class: "mono muted" }, `(${daemon.keyId})`));
}

function daemonRow(daemon) {
  const status = stateOf(daemon);
  const job = daemon.currentJobId;
  return el(
    "tr",
    { "data-daemon-id": daemon.id || "", "data-state": status },
    cell("Name", { class: "daemon-name" }, daemon.name || ""),
    cell("Organization", {}, daemon.organization || ""),
    cell("State", { class: "daemon-state" }, el("span", { class: `status state-${status}` }, status)),
    cell(
      "Job",
      { class: "mono daemon-job" },
      job ? el("a", { href: `#/jobs/${encodeURIComponent(job)}` }, job) : "",
    ),
    cell("Provisioners", {}, (daemon.provisioners || []).join(", ")),
    cell("Tags", { class: "tags" }, formatTags(daemon.tags)),
    cell("Key", { class: "daemon-key" }, keyOf(daemon)),
    cell("Last seen", { class: "time" }, formatTime(daemon.lastSeenAt)),
  );
}

function byOrganizationAndName(a, b) {
  return (
    (a.organization || "").localeCompare(b.organization || "") ||
    (a.name || "").localeCompare(b.name || "") ||
    (a.id || "").localeCompare(b.id || "")
  );
}

export function showDaemons(view) {
  return showTablePage(view, {
    id: "daemons",
    formId: "daemon-filters",
    title: "Daemons",
    columns: COLUMNS,
    state,
    method: "provd.v1.DaemonService/ListDaemons",
    items: ({ daemons = [] }) => daemons,
    rows: (daemons) => [...daemons].sort(byOrganizationAndName).map(daemonRow),
    empty: (organization) =>
      organization ? `No daemon of ${organization} has connected.` : "No daemon has connected yet.",
    summary: (daemons) => {
      const connected = daemons.filter((daemon) => daemon.connected).length;
      return `${daemons.length} daemon${daemons.length === 1 ? "" : "s"}, ${connected} connected`;
    },
    what: "daemons",
  });
}
