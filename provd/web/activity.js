// The activity page: JobService.GetJobHistory — the jobs finished per minute by
// outcome, and the jobs pending at the end of each minute, over the last hour —
// as two small charts, re-read whenever provd says jobs changed (WatchJobs, as
// jobs.js), or every couple of seconds while that stream is down. provd computes the
// figures from its store, so they cover every worker and replica.
//
// Each chart has an accessible name that sums it up, and the numbers behind both are
// in a table that screen readers read (visually hidden): `#activity-numbers`, one
// row per minute with its start in `data-start` (Unix ms).

import { unary } from "./api.js";
import { el, formatTime, livePoll } from "./dom.js";
import { areaLine, clock, stackedBars } from "./charts.js";

const OUTCOMES = [
  { key: "succeeded", name: "succeeded" },
  { key: "failed", name: "failed" },
  { key: "canceled", name: "canceled" },
];

// Kept while the tab lives, so that leaving the page and coming back keeps the filter.
const state = { organization: "" };

// GetJobHistory's buckets as points: JSON leaves out fields that are 0.
function pointsOf(history) {
  return (history.buckets || []).map((bucket) => ({
    at: new Date(bucket.start),
    succeeded: bucket.succeeded ?? 0,
    failed: bucket.failed ?? 0,
    canceled: bucket.canceled ?? 0,
    pending: bucket.pending ?? 0,
  }));
}

const sum = (points, key) => points.reduce((total, point) => total + point[key], 0);

function outcomeWords(point) {
  return OUTCOMES.map(({ key, name }) => `${point[key]} ${name}`).join(", ");
}

function legend() {
  return el(
    "ul",
    { class: "chart-legend", "aria-hidden": "true" },
    OUTCOMES.map(({ key, name }) => el("li", {}, el("span", { class: `swatch bar-${key}` }), name)),
  );
}

// The numbers of both charts, a row per minute, newest first.
function numbersTable(points) {
  return el(
    "table",
    { id: "activity-numbers" },
    el("caption", {}, "Jobs finished and pending, per minute, newest first"),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ["Minute", "Succeeded", "Failed", "Canceled", "Pending at its end"].map((name) =>
          el("th", { scope: "col" }, name),
        ),
      ),
    ),
    el(
      "tbody",
      {},
      [...points].reverse().map((point) =>
        el(
          "tr",
          { "data-start": point.at.getTime() },
          el("th", { scope: "row" }, clock(point.at)),
          el("td", { class: "succeeded" }, point.succeeded),
          el("td", { class: "failed" }, point.failed),
          el("td", { class: "canceled" }, point.canceled),
          el("td", { class: "pending" }, point.pending),
        ),
      ),
    ),
  );
}

export function showActivity(view) {
  document.title = "Activity · provd";
  const controller = new AbortController();

  const organization = el("input", {
    id: "activity-organization",
    type: "text",
    value: state.organization,
    placeholder: "any",
    spellcheck: "false",
  });
  const filters = el(
    "form",
    { id: "activity-filters", class: "filters" },
    el("label", {}, "Organization ", organization),
    el("button", { type: "submit" }, "Filter"),
  );
  const pendingNow = el("strong", { id: "activity-pending" });
  const thisMinute = el("span", { id: "activity-minute" });
  const lastHour = el("span", { id: "activity-hour" });
  const finished = el("div", { id: "activity-finished", class: "chart-box" });
  const depth = el("div", { id: "activity-depth", class: "chart-box" });
  // Hidden by its box: a table itself does not clip what overflows it.
  const numbers = el("div", { id: "activity-table", class: "visually-hidden" });
  const updated = el("span", { id: "activity-updated", class: "muted" });
  const mode = el("span", { id: "activity-live", class: "muted" });
  const problem = el("p", { id: "activity-error", class: "error", role: "alert", hidden: true });
  view.replaceChildren(
    el("h1", {}, "Activity"),
    el(
      "p",
      { class: "hint muted" },
      "The last hour, minute by minute, in your time zone: jobs finished by outcome, and jobs pending.",
    ),
    filters,
    problem,
    el(
      "p",
      { class: "activity-summary" },
      "Pending now: ",
      pendingNow,
      el("span", { class: "muted" }, " · "),
      "this minute: ",
      thisMinute,
      el("span", { class: "muted" }, " · "),
      "last hour: ",
      lastHour,
    ),
    el(
      "div",
      { class: "charts" },
      el(
        "section",
        { class: "chart-panel" },
        el("h2", {}, "Jobs finished per minute"),
        legend(),
        finished,
      ),
      el("section", { class: "chart-panel" }, el("h2", {}, "Jobs pending"), depth),
    ),
    numbers,
    el("div", { class: "pager" }, updated, mode),
  );

  const showProblem = (message) => {
    problem.textContent = message;
    problem.hidden = !message;
  };

  const render = (history) => {
    const points = pointsOf(history);
    const now = points.length ? points[points.length - 1] : null;
    const hour = Object.fromEntries(OUTCOMES.map(({ key }) => [key, sum(points, key)]));
    const scope = state.organization ? ` of ${state.organization}` : "";
    pendingNow.textContent = String(history.pending ?? 0);
    thisMinute.textContent = now ? outcomeWords(now) : "";
    lastHour.textContent = outcomeWords(hour);
    finished.replaceChildren(
      stackedBars(
        points,
        OUTCOMES,
        `Jobs${scope} finished per minute over the last hour: ${outcomeWords(hour)} in all;` +
          ` this minute ${now ? outcomeWords(now) : "none"}.`,
      ),
    );
    const most = Math.max(0, ...points.map((point) => point.pending));
    depth.replaceChildren(
      areaLine(
        points,
        "pending",
        "pending",
        `Jobs${scope} pending at the end of each minute over the last hour: ${history.pending ?? 0}` +
          ` now, at most ${most}.`,
      ),
    );
    numbers.replaceChildren(numbersTable(points));
    updated.textContent = `updated ${formatTime(new Date().toISOString())}`;
  };

  const refresh = async () => {
    const request = state.organization ? { organization: state.organization } : {};
    try {
      render(await unary("provd.v1.JobService/GetJobHistory", request, { signal: controller.signal }));
      showProblem("");
    } catch (error) {
      if (error.name === "AbortError") return;
      showProblem(`Cannot read the activity: ${error.message}`);
    }
  };

  const poller = livePoll(refresh, { mode });

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
