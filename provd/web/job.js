// One job: its fields (GetJob, re-read whenever provd says this job changed —
// WatchJobs, through dom.js's `livePoll` — or every couple of seconds while that
// stream is down, until it ends), its inputs (secrets masked), its logs following live
// (StreamJobLogs with follow, resumed after the last line if the stream breaks), and a
// Cancel button for pending and running jobs.

import { serverStream, sleep, unary } from "./api.js";
import { el, formatTags, formatTime, livePoll, statusBadge, statusOf, typeOf } from "./dom.js";

const RECONNECT_SECONDS = 2;
const ENDED = new Set(["succeeded", "failed", "canceled"]);
const CANCELABLE = new Set(["pending", "running"]);
const LEVELS = new Set(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]);
// A log view scrolled to within this many pixels of its end keeps following.
const STICK_PIXELS = 8;

// Shown instead of a secret. The secret itself never reaches the page: not as text,
// not in an attribute.
const MASK = "••••••";

function masked() {
  return el("span", { class: "masked", title: "sensitive: not shown" }, MASK);
}

// `name = value` pairs, one a line; a sensitive value (or any value when `secret`)
// is a mask.
function pairs(items, { secret = false } = {}) {
  if (!items || !items.length) return null;
  return el(
    "ul",
    { class: "pairs" },
    ...items.map(({ name, value, sensitive }) =>
      el(
        "li",
        { "data-name": name || "" },
        el("span", { class: "mono" }, name || ""),
        " = ",
        secret || sensitive ? masked() : el("span", { class: "mono" }, value || ""),
      ),
    ),
  );
}

function stateSize(base64) {
  if (!base64) return "";
  const bytes = Math.floor((base64.length * 3) / 4) - (base64.match(/=*$/)[0].length || 0);
  return `${bytes} bytes (not shown)`;
}

// What the job was created with (the one input of its type), secrets masked: values
// of sensitive variables, the workspace owner's session and OIDC tokens, external
// auth tokens. A build's state file is shown by its size only.
function inputRows(job) {
  const input = job.templateImport || job.workspaceBuild || job.templateDryRun || {};
  const meta = input.metadata || {};
  const owner = [
    meta.workspaceOwnerName || meta.workspaceOwner,
    meta.workspaceOwnerId,
    meta.workspaceOwnerEmail,
  ]
    .filter(Boolean)
    .join(" · ");
  const token = (value) => (value ? masked() : "");
  return [
    ["variables", "Variables", pairs(input.userVariableValues || input.variableValues)],
    ["parameters", "Parameters", pairs(input.richParameterValues)],
    ["workspace", "Workspace", input.workspaceName || meta.workspaceName],
    ["workspace-id", "Workspace id", meta.workspaceId],
    ["build-id", "Workspace build", input.workspaceBuildId],
    [
      "transition",
      "Transition",
      job.workspaceBuild ? (meta.workspaceTransition || "START").toLowerCase() : "",
    ],
    ["owner", "Owner", owner],
    ["owner-groups", "Owner's groups", (meta.workspaceOwnerGroups || []).join(", ")],
    ["template", "Template", [meta.templateName, meta.templateVersion].filter(Boolean).join(" · ")],
    ["template-id", "Template id", meta.templateId],
    ["coder-url", "Coder URL", meta.coderUrl],
    ["log-level", "Log level", input.logLevel],
    ["state", "State", stateSize(input.state)],
    ["session-token", "Owner's session token", token(meta.workspaceOwnerSessionToken)],
    ["oidc-token", "Owner's OIDC token", token(meta.workspaceOwnerOidcAccessToken)],
    [
      "external-auth",
      "External auth",
      pairs(
        (input.externalAuthProviders || []).map((p) => ({ name: p.id, value: p.accessToken })),
        { secret: true },
      ),
    ],
  ];
}

function definitions(rows) {
  return rows
    .filter(([, , value]) => value)
    .flatMap(([key, label, value]) => [
      el("dt", {}, label),
      el("dd", { "data-field": key, class: key.startsWith("error") ? "error" : null }, value),
    ]);
}

function clock(timestamp) {
  return formatTime(timestamp).slice(11); // HH:MM:SS
}

function logLine(line) {
  const level = LEVELS.has(line.level) ? line.level : "TRACE";
  return el(
    "div",
    { class: `line level-${level.toLowerCase()}`, "data-id": line.id || "" },
    el("span", { class: "time" }, clock(line.createdAt)),
    el("span", { class: "stage" }, line.stage || ""),
    el("span", { class: "output" }, line.output || ""),
  );
}

export function showJob(view, id) {
  document.title = `Job ${id} · provd`;
  const controller = new AbortController();
  const signal = controller.signal;
  const daemonNames = new Map(); // daemon id → name, from ListDaemons

  const cancel = el("button", { type: "button", id: "cancel-job", class: "danger", hidden: true }, "Cancel job");
  const problem = el("p", { id: "job-error", class: "error", role: "alert", hidden: true });
  const fields = el("dl", { id: "job-fields", class: "fields" });
  const inputs = el("dl", { id: "job-inputs", class: "fields", hidden: true });
  const inputsTitle = el("h2", { id: "job-inputs-title", hidden: true }, "Inputs");
  const logs = el("div", { id: "job-logs", class: "logs", tabindex: "0" });
  const logState = el("span", { id: "log-state", class: "muted" }, "connecting…");
  const toEnd = el("button", { type: "button", id: "log-follow", hidden: true }, "Follow the end ↓");
  const mode = el("span", { id: "job-live", class: "muted" });
  view.replaceChildren(
    el("p", {}, el("a", { href: "#/jobs" }, "← Jobs"), " ", mode),
    el("h1", {}, "Job ", el("span", { class: "mono", id: "job-id" }, id), " ", cancel),
    problem,
    fields,
    inputsTitle,
    inputs,
    el("h2", {}, "Logs ", logState, " ", toEnd),
    logs,
  );

  const showProblem = (message) => {
    problem.textContent = message;
    problem.hidden = !message;
  };

  // --- fields

  let inputsShown = false;
  const render = (job) => {
    const status = statusOf(job);
    const rows = [
      ["status", "Status", statusBadge(job)],
      ["pending-reason", "Waiting because", job.pendingReason],
      [
        "queue",
        "Queue",
        status === "pending" && job.queuePosition ? `${job.queuePosition} of ${job.queueSize}` : "",
      ],
      ["type", "Type", typeOf(job)],
      ["provisioner", "Provisioner", job.provisioner],
      ["organization", "Organization", job.organization],
      ["tags", "Tags", formatTags(job.tags)],
      [
        "daemon",
        "Daemon",
        job.workerId
          ? daemonNames.has(job.workerId)
            ? `${daemonNames.get(job.workerId)} (${job.workerId})`
            : job.workerId
          : "",
      ],
      ["priority", "Priority", job.priority ? String(job.priority) : ""],
      [
        "initiator",
        "Initiator",
        job.initiator ? [job.initiator.userName, job.initiator.userId].filter(Boolean).join(" · ") : "",
      ],
      ["file-hash", "Template file", job.fileHash],
      ["error-code", "Error code", job.errorCode],
      ["error", "Error", job.error],
      ["created", "Created", formatTime(job.createdAt)],
      ["started", "Started", formatTime(job.startedAt)],
      ["canceled", "Canceled", formatTime(job.canceledAt)],
      ["completed", "Completed", formatTime(job.completedAt)],
      ["updated", "Updated", formatTime(job.updatedAt)],
    ];
    fields.replaceChildren(...definitions(rows));
    if (!inputsShown) {
      // A job's inputs never change: shown once.
      inputsShown = true;
      inputs.replaceChildren(...definitions(inputRows(job)));
      inputsTitle.hidden = inputs.hidden = !inputs.childElementCount;
    }
    cancel.hidden = !CANCELABLE.has(status);
    if (job.workerId && !daemonNames.has(job.workerId)) lookUpDaemon(job);
    return status;
  };

  const lookUpDaemon = async (job) => {
    daemonNames.set(job.workerId, ""); // once per daemon, even if the look-up fails
    try {
      const { daemons = [] } = await unary("provd.v1.DaemonService/ListDaemons", {}, { signal });
      for (const daemon of daemons) daemonNames.set(daemon.id, daemon.name || "");
      if (daemonNames.get(job.workerId)) render(job);
    } catch {
      // The id alone is shown.
    }
  };

  const refresh = async () => {
    try {
      const job = await unary("provd.v1.JobService/GetJob", { id }, { signal });
      showProblem("");
      if (ENDED.has(render(job))) poller.stop(); // an ended job no longer changes
    } catch (error) {
      if (error.name === "AbortError") return;
      showProblem(`Cannot get the job: ${error.message}`);
      if (error.code === "not_found" || error.code === "invalid_argument") poller.stop();
    }
  };
  const poller = livePoll(refresh, {
    wants: ({ jobIds, many }) => many || jobIds.includes(id),
    mode,
  });

  cancel.addEventListener("click", async () => {
    if (!window.confirm(`Cancel job ${id}?`)) return;
    cancel.disabled = true;
    try {
      render(await unary("provd.v1.JobService/CancelJob", { id }, { signal }));
      showProblem("");
    } catch (error) {
      if (error.name !== "AbortError") showProblem(`Cannot cancel: ${error.message}`);
    } finally {
      cancel.disabled = false;
    }
    poller.now();
  });

  // --- logs

  let stick = true; // follow the end until the user scrolls up
  let queued = [];
  let flushing = false;
  let lastId = "0";

  const scrollToEnd = () => {
    logs.scrollTop = logs.scrollHeight;
  };
  logs.addEventListener("scroll", () => {
    stick = logs.scrollHeight - logs.scrollTop - logs.clientHeight <= STICK_PIXELS;
    toEnd.hidden = stick;
  });
  toEnd.addEventListener("click", () => {
    stick = true;
    toEnd.hidden = true;
    scrollToEnd();
  });

  // Lines arrive one message at a time; add them in batches, then scroll once.
  const flush = () => {
    flushing = false;
    const batch = queued;
    queued = [];
    logs.append(...batch.map(logLine));
    if (stick) scrollToEnd();
  };
  const addLine = (line) => {
    queued.push(line);
    if (line.id) lastId = line.id;
    if (!flushing) {
      flushing = true;
      setTimeout(flush, 30);
    }
  };

  const follow = async () => {
    for (;;) {
      try {
        logState.textContent = "following";
        const request = { id, follow: true, after: lastId };
        for await (const line of serverStream("provd.v1.JobService/StreamJobLogs", request, { signal })) {
          addLine(line);
        }
        logState.textContent = "complete";
        logs.dataset.complete = "true";
        poller.now();
        return;
      } catch (error) {
        if (error.name === "AbortError" || signal.aborted) return;
        if (["not_found", "invalid_argument", "unauthenticated"].includes(error.code)) {
          logState.textContent = `unavailable: ${error.message}`;
          return;
        }
        logState.textContent = `reconnecting (${error.message})`;
        await sleep(RECONNECT_SECONDS, signal);
        if (signal.aborted) return;
      }
    }
  };
  follow();

  return {
    stop() {
      poller.stop();
      controller.abort();
    },
  };
}
