// The quota page: QuotaService.ListAllowances — the allowances (credits per day) of an
// organization's users and groups — refreshed every couple of seconds while the tab
// is visible (polling: allowances are not job changes, so WatchJobs does not tell);
// SetAllowance from a form, and DeleteAllowance from each row after a confirmation.

import { DEFAULT_ORGANIZATION, unary } from "./api.js";
import { el, formatTime, poll } from "./dom.js";

const REFRESH_SECONDS = 2;
const COLUMNS = ["Kind", "Subject", "Allowance (credits per day)", ""];

// Kept while the tab lives, so that leaving the page and coming back keeps it.
const state = { organization: DEFAULT_ORGANIZATION };

// An allowance's subject is one of userId and group (a oneof in quota.proto).
function subjectOf(allowance) {
  if (allowance.group !== undefined) return ["group", allowance.group];
  return ["user", allowance.userId ?? ""];
}

// The request field of a subject: {userId} or {group}.
function subjectField(kind, subject) {
  return kind === "group" ? { group: subject } : { userId: subject };
}

function allowanceRow(allowance, remove) {
  const [kind, subject] = subjectOf(allowance);
  const button = el(
    "button",
    { type: "button", class: "allowance-delete", "aria-label": `Delete the allowance of ${kind} ${subject}` },
    "Delete",
  );
  button.addEventListener("click", () => remove(kind, subject));
  return el(
    "tr",
    { "data-kind": kind, "data-subject": subject },
    el("td", { class: "allowance-kind", "data-label": COLUMNS[0] }, kind),
    el("td", { class: "allowance-subject", "data-label": COLUMNS[1] }, subject),
    el(
      "td",
      { class: "allowance-credits number", "data-label": COLUMNS[2] },
      String(allowance.allowance ?? 0),
    ),
    el("td", { class: "allowance-actions" }, button),
  );
}

// The form that sets an allowance (adds one, or changes the subject's).
function allowanceForm() {
  const kind = el(
    "select",
    { id: "allowance-kind" },
    el("option", { value: "user" }, "user"),
    el("option", { value: "group" }, "group"),
  );
  const subject = el("input", {
    id: "allowance-subject",
    type: "text",
    placeholder: "user id or group",
    spellcheck: "false",
  });
  const credits = el("input", { id: "allowance-credits", type: "number", min: "0", step: "1" });
  const error = el("p", { id: "allowance-error", class: "error", role: "alert", hidden: true });
  const form = el(
    "form",
    { id: "allowance-form", class: "filters" },
    el("label", {}, "Kind ", kind),
    el("label", {}, "Subject ", subject),
    el("label", {}, "Credits per day ", credits),
    el("button", { type: "submit" }, "Set allowance"),
  );
  return { form, kind, subject, credits, error };
}

export function showQuota(view) {
  document.title = "Quota · provd";
  const controller = new AbortController();
  let shownFor = null; // the organization whose allowances are on screen

  const organization = el("input", {
    id: "quota-organization",
    type: "text",
    value: state.organization,
    placeholder: DEFAULT_ORGANIZATION,
    spellcheck: "false",
  });
  const form = el(
    "form",
    { id: "quota-filters", class: "filters" },
    el("label", {}, "Organization ", organization),
    el("button", { type: "submit" }, "Show"),
  );
  const body = el("tbody", { id: "quota-body" });
  const table = el(
    "table",
    { id: "quota", class: "data stack" },
    el("thead", {}, el("tr", {}, COLUMNS.map((name) => el("th", { scope: "col" }, name)))),
    body,
  );
  const heading = el("span", { id: "quota-shown", class: "muted" });
  const updated = el("span", { id: "quota-updated", class: "muted" });
  const problem = el("p", { id: "quota-error", class: "error", role: "alert", hidden: true });
  const setter = allowanceForm();
  const setterHeading = el("h2", { id: "allowance-heading" }, "Set an allowance");
  view.replaceChildren(
    el("h1", {}, "Quota ", heading),
    el(
      "p",
      { class: "muted" },
      "A user's daily budget is their own allowance plus those of their groups. " +
        "An organization without any allowance has no quota.",
    ),
    form,
    problem,
    table,
    el("div", { class: "pager" }, updated),
    setterHeading,
    setter.form,
    setter.error,
  );

  const showProblem = (message) => {
    problem.textContent = message;
    problem.hidden = !message;
  };

  const render = (name, allowances) => {
    shownFor = name;
    heading.textContent = `· ${name}`;
    setterHeading.textContent = `Set an allowance in ${name}`;
    const none = `No allowances: ${name} has no quota.`;
    body.replaceChildren(
      ...(allowances.length
        ? allowances.map((allowance) => allowanceRow(allowance, remove))
        : [el("tr", {}, el("td", { colspan: COLUMNS.length, class: "muted" }, none))]),
    );
    updated.textContent = `updated ${formatTime(new Date().toISOString())}, every ${REFRESH_SECONDS} s`;
  };

  const refresh = async () => {
    const name = state.organization || DEFAULT_ORGANIZATION;
    try {
      const { allowances = [] } = await unary(
        "provd.v1.QuotaService/ListAllowances",
        { organization: name },
        { signal: controller.signal },
      );
      if (name !== (state.organization || DEFAULT_ORGANIZATION)) return; // asked for another since
      render(name, allowances);
      showProblem("");
    } catch (error) {
      if (error.name === "AbortError") return;
      if (shownFor !== name) {
        shownFor = null;
        heading.textContent = "";
        body.replaceChildren(); // not another organization's allowances under this name
      }
      showProblem(`Cannot list the allowances of ${name}: ${error.message}`);
    }
  };

  const poller = poll(refresh, REFRESH_SECONDS);

  const showSetError = (message) => {
    setter.error.textContent = message;
    setter.error.hidden = !message;
  };

  // provd checks the values (a subject, a whole number of credits) and says what is
  // wrong; its message is shown as it is.
  setter.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = shownFor || state.organization || DEFAULT_ORGANIZATION;
    const credits = setter.credits.value.trim();
    const allowance = {
      organization: name,
      ...subjectField(setter.kind.value, setter.subject.value.trim()),
      allowance: credits === "" ? Number.NaN : Number(credits),
    };
    if (!Number.isInteger(allowance.allowance)) {
      showSetError("Credits per day: a whole number is needed.");
      setter.credits.focus();
      return;
    }
    try {
      await unary("provd.v1.QuotaService/SetAllowance", { allowance }, { signal: controller.signal });
      showSetError("");
      setter.subject.value = "";
      setter.credits.value = "";
      poller.now();
    } catch (error) {
      if (error.name === "AbortError") return;
      showSetError(`Cannot set the allowance: ${error.message}`);
    }
  });

  async function remove(kind, subject) {
    const name = shownFor || DEFAULT_ORGANIZATION;
    if (!window.confirm(`Delete the allowance of ${kind} ${subject} in ${name}?`)) return;
    try {
      await unary(
        "provd.v1.QuotaService/DeleteAllowance",
        { organization: name, ...subjectField(kind, subject) },
        { signal: controller.signal },
      );
      showProblem("");
      poller.now();
    } catch (error) {
      if (error.name === "AbortError") return;
      showProblem(`Cannot delete the allowance of ${kind} ${subject}: ${error.message}`);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.organization = organization.value.trim() || DEFAULT_ORGANIZATION;
    organization.value = state.organization;
    poller.now();
  });

  return {
    stop() {
      poller.stop();
      controller.abort();
    },
  };
}
