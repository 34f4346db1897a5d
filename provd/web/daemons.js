// The daemons page: DaemonService.ListDaemons — every daemon provd has seen, whether
// it is connected or stale, the job it runs, its provisioners, tags and key —
// refreshed every couple of seconds while the tab is visible (polling, as jobs.js).

import { unary } from "./api.js";
import { el, formatTags, formatTime, poll } from "./dom.js";

const REFRESH_SECONDS = 2;
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

// A cell with its column's name, shown beside the value when rows stack (narrow screens).
function cell(column, attributes, ...children) {
  return el("td", { ...attributes, "data-label": column }, ...children);
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
  document.title = "Daemons · provd";
  const controller = new AbortController();

  const organization = el("input", {
    id: "daemons-organization",
    type: "text",
    value: state.organization,
    placeholder: "any",
    spellcheck: "false",
  });
  const filters = el(
    "form",
    { id: "daemon-filters", class: "filters" },
    el("label", {}, "Organization ", organization),
    el("button", { type: "submit" }, "Filter"),
  );
  const body = el("tbody", { id: "daemons-body" });
  const table = el(
    "table",
    { id: "daemons", class: "data stack" },
    el("thead", {}, el("tr", {}, COLUMNS.map((name) => el("th", { scope: "col" }, name)))),
    body,
  );
  const count = el("span", { id: "daemons-count", class: "muted" });
  const updated = el("span", { id: "daemons-updated", class: "muted" });
  const problem = el("p", { id: "daemons-error", class: "error", role: "alert", hidden: true });
  view.replaceChildren(
    el("h1", {}, "Daemons"),
    filters,
    problem,
    table,
    el("div", { class: "pager" }, count, updated),
  );

  const showProblem = (message) => {
    problem.textContent = message;
    problem.hidden = !message;
  };

  const render = (daemons) => {
    const none = state.organization
      ? `No daemon of ${state.organization} has connected.`
      : "No daemon has connected yet.";
    body.replaceChildren(
      ...(daemons.length
        ? [...daemons].sort(byOrganizationAndName).map(daemonRow)
        : [el("tr", {}, el("td", { colspan: COLUMNS.length, class: "muted" }, none))]),
    );
    const connected = daemons.filter((daemon) => daemon.connected).length;
    count.textContent = `${daemons.length} daemon${daemons.length === 1 ? "" : "s"}, ${connected} connected`;
    updated.textContent = `updated ${formatTime(new Date().toISOString())}, every ${REFRESH_SECONDS} s`;
  };

  const refresh = async () => {
    const request = state.organization ? { organization: state.organization } : {};
    try {
      const { daemons = [] } = await unary("provd.v1.DaemonService/ListDaemons", request, {
        signal: controller.signal,
      });
      render(daemons);
      showProblem("");
    } catch (error) {
      if (error.name === "AbortError") return;
      showProblem(`Cannot list daemons: ${error.message}`);
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
