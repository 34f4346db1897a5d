// The jobs page: ListJobs with filters and pages, re-read whenever provd says jobs
// changed (WatchJobs, through dom.js's `livePoll`), or every couple of seconds while
// that stream is down. On a narrow screen the table shows each job as a card
// (table_page.js's `cell`).

import { unary } from "./api.js";
import { el, formatTags, formatTime, livePoll, statusBadge, statusOf, typeOf } from "./dom.js";
import { cell } from "./table_page.js";

const STATUSES = ["pending", "running", "succeeded", "failed", "canceling", "canceled"];
const TYPES = ["template_import", "workspace_build", "template_dry_run"];
const PAGE_SIZE = 50;
const COLUMNS = ["ID", "Type", "Status", "Provisioner", "Organization", "Tags", "Created", "Queue"];

// Kept while the tab lives, so that a visit to a job and back keeps the filters.
// `pages` holds the page token of each page from the first to the one shown.
const state = { status: "", type: "", provisioner: "", organization: "", tags: "", pages: [""] };

// "k=v, k2=v2" → {k: "v", k2: "v2"}; throws for an item without "=".
function parseTags(text) {
  const tags = {};
  for (const part of text.split(",")) {
    const item = part.trim();
    if (!item) continue;
    const eq = item.indexOf("=");
    if (eq <= 0) throw new Error(`a tag filter is key=value, got "${item}"`);
    tags[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  return tags;
}

// Why a pending job waits, at a glance: the pending reason's first clause ("Waiting
// for a free daemon", "No connected daemon can take this job"), the whole of it on
// hover and on the job's page. Red when no connected daemon can take the job.
function pendingNote(job) {
  const reason = job.pendingReason || "";
  if (!reason) return null;
  const colon = reason.indexOf(":");
  const unroutable = reason.startsWith("No connected daemon");
  return el(
    "div",
    { class: unroutable ? "pending-reason unroutable" : "pending-reason", title: reason },
    colon > 0 ? reason.slice(0, colon) : reason,
  );
}

function queueCell(job, status) {
  if (status !== "pending") return "";
  const position = job.queuePosition
    ? `${job.queuePosition} of ${job.queueSize || job.queuePosition}`
    : "";
  return [el("span", { class: "queue-position" }, position), pendingNote(job)].filter(Boolean);
}

function jobRow(job) {
  const status = statusOf(job);
  return el(
    "tr",
    { "data-job-id": job.id, "data-status": status },
    cell("ID", { class: "mono" }, el("a", { href: `#/jobs/${encodeURIComponent(job.id)}` }, job.id)),
    cell("Type", {}, typeOf(job)),
    cell("Status", { class: "job-status" }, statusBadge(job)),
    cell("Provisioner", {}, job.provisioner || ""),
    cell("Organization", {}, job.organization || ""),
    cell("Tags", { class: "tags" }, formatTags(job.tags)),
    cell("Created", { class: "time" }, formatTime(job.createdAt)),
    cell("Queue", { class: "queue" }, queueCell(job, status)),
  );
}

export function showJobs(view) {
  document.title = "Jobs · provd";
  const controller = new AbortController();
  let nextToken = "";

  const status = el(
    "select",
    { id: "filter-status" },
    el("option", { value: "" }, "any"),
    STATUSES.map((name) => el("option", { value: `JOB_STATUS_${name.toUpperCase()}` }, name)),
  );
  status.value = state.status;
  const type = el(
    "select",
    { id: "filter-type" },
    el("option", { value: "" }, "any"),
    TYPES.map((name) =>
      el("option", { value: `JOB_TYPE_${name.toUpperCase()}` }, name.replaceAll("_", " ")),
    ),
  );
  type.value = state.type;
  const text = (id, value, placeholder) =>
    el("input", { id, type: "text", value, placeholder, spellcheck: "false" });
  const provisioner = text("filter-provisioner", state.provisioner, "any");
  const organization = text("filter-organization", state.organization, "any");
  const tags = text("filter-tags", state.tags, "key=value, …");
  const filters = el(
    "form",
    { id: "job-filters", class: "filters" },
    el("label", {}, "Status ", status),
    el("label", {}, "Type ", type),
    el("label", {}, "Provisioner ", provisioner),
    el("label", {}, "Organization ", organization),
    el("label", {}, "Tags ", tags),
    el("button", { type: "submit" }, "Filter"),
  );
  const body = el("tbody", { id: "jobs-body" });
  const table = el(
    "table",
    { id: "jobs", class: "jobs stack" },
    el("thead", {}, el("tr", {}, COLUMNS.map((name) => el("th", { scope: "col" }, name)))),
    body,
  );
  const newer = el("button", { type: "button", id: "page-newer" }, "← Newer");
  const older = el("button", { type: "button", id: "page-older" }, "Older →");
  const pageLabel = el("span", { id: "page-label", class: "muted" });
  const updated = el("span", { id: "jobs-updated", class: "muted" });
  const mode = el("span", { id: "jobs-live", class: "muted" });
  const problem = el("p", { id: "jobs-error", class: "error", role: "alert", hidden: true });
  view.replaceChildren(
    el("h1", {}, "Jobs ", el("a", { href: "#/new", id: "jobs-new", class: "action" }, "New job")),
    filters,
    problem,
    table,
    el("div", { class: "pager" }, newer, pageLabel, older, updated, mode),
  );

  const showProblem = (message) => {
    problem.textContent = message;
    problem.hidden = !message;
  };

  const render = (page) => {
    const jobs = page.jobs || [];
    body.replaceChildren(
      ...(jobs.length
        ? jobs.map(jobRow)
        : [el("tr", {}, el("td", { colspan: COLUMNS.length, class: "muted" }, "No jobs match."))]),
    );
    nextToken = page.nextPageToken || "";
    newer.disabled = state.pages.length <= 1;
    older.disabled = !nextToken;
    pageLabel.textContent = `page ${state.pages.length}`;
    updated.textContent = `updated ${formatTime(new Date().toISOString())}`;
  };

  const refresh = async () => {
    const request = { limit: PAGE_SIZE };
    try {
      const wanted = parseTags(state.tags);
      if (Object.keys(wanted).length) request.tags = wanted;
    } catch (error) {
      showProblem(error.message);
      return;
    }
    if (state.status) request.status = state.status;
    if (state.type) request.type = state.type;
    if (state.provisioner) request.provisioner = state.provisioner;
    if (state.organization) request.organization = state.organization;
    const token = state.pages[state.pages.length - 1];
    if (token) request.pageToken = token;
    try {
      render(await unary("provd.v1.JobService/ListJobs", request, { signal: controller.signal }));
      showProblem("");
    } catch (error) {
      if (error.name === "AbortError") return;
      if (token && error.code === "invalid_argument" && error.message.startsWith("pageToken")) {
        state.pages = [""]; // issued before the admin token changed, say: start over
        poller.now();
        return;
      }
      showProblem(`Cannot list jobs: ${error.message}`);
    }
  };

  const poller = livePoll(refresh, { mode });

  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    state.status = status.value;
    state.type = type.value;
    state.provisioner = provisioner.value.trim();
    state.organization = organization.value.trim();
    state.tags = tags.value.trim();
    state.pages = [""];
    poller.now();
  });
  status.addEventListener("change", () => filters.requestSubmit());
  type.addEventListener("change", () => filters.requestSubmit());
  older.addEventListener("click", () => {
    if (!nextToken) return;
    state.pages.push(nextToken);
    poller.now();
  });
  newer.addEventListener("click", () => {
    if (state.pages.length > 1) state.pages.pop();
    poller.now();
  });

  return {
    stop() {
      poller.stop();
      controller.abort();
    },
  };
}
