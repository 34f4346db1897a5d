// The new-job page: upload a template archive (UploadFile) and create a job of any of
// the three types from it (CreateJob), then go to the job's page, which follows it.
//
// The archive is read in the browser and sent base64 (bytes in Connect JSON); provd
// checks and normalizes it and enforces its upload cap, and its refusal is shown as
// it says it. Nothing typed here goes into a URL: the form's fields have no names,
// the page's address stays #/new, and only the new job's id is put in the next one.

import { DEFAULT_ORGANIZATION, unary } from "./api.js";
import { el } from "./dom.js";

// The provisioner `provd jobs create` and `provd daemon` default to.
const DEFAULT_PROVISIONER = "echo";
const TYPES = [
  ["templateImport", "template import"],
  ["workspaceBuild", "workspace build"],
  ["templateDryRun", "template dry run"],
];
const TRANSITIONS = ["start", "stop", "destroy"];
const INT32 = [-(2 ** 31), 2 ** 31 - 1];
const GZIP_MAGIC = [0x1f, 0x8b];
const ZIP_MAGIC = [0x50, 0x4b, 0x03, 0x04];

const startsWith = (bytes, magic) => magic.every((byte, i) => bytes[i] === byte);

// Bytes as base64, in slices (String.fromCharCode takes its arguments on the stack).
function base64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

// A version 4 UUID, also where crypto.randomUUID is missing (plain HTTP to a host
// other than localhost is not a secure context).
function uuid() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  const parts = [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20)];
  return [...parts, hex.slice(20)].join("-");
}

// A mistake in the form, before anything is sent: `input` is the field to fix.
class FormError extends Error {
  constructor(message, input) {
    super(message);
    this.input = input;
  }
}

// "k=v, k2=v2" (or one per line) → [[k, v], …]; the value may hold "=" and be empty.
function pairs(text, separator, what, input) {
  const found = [];
  for (const part of text.split(separator)) {
    const item = part.trim();
    if (!item) continue;
    const eq = item.indexOf("=");
    if (eq <= 0) throw new FormError(`${what}: each is name=value, got "${item}"`, input);
    found.push([item.slice(0, eq).trim(), item.slice(eq + 1).trim()]);
  }
  return found;
}

// The archive's bytes and the mimetype to declare. A .tar.gz is unpacked here, as
// `provd files upload` does; otherwise provd sniffs (zip by its magic number).
async function readArchive(file) {
  let bytes = new Uint8Array(await file.arrayBuffer());
  if (startsWith(bytes, GZIP_MAGIC) && typeof DecompressionStream === "function") {
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    try {
      bytes = new Uint8Array(await new Response(stream).arrayBuffer());
    } catch (error) {
      throw new Error(`cannot unpack ${file.name} as gzip (${error.message})`);
    }
  }
  return { bytes, mimetype: startsWith(bytes, ZIP_MAGIC) ? "application/zip" : "" };
}

export function showCreate(view) {
  document.title = "New job · provd";
  const controller = new AbortController();
  const signal = controller.signal;
  let uploaded = null; // {file, modified, hash}: already uploaded, not sent twice

  // Every field has a label; none has a name, so a submit without the script sends
  // nothing (and method=post keeps it out of the URL even then).
  const ids = new Map(); // input → its label, for messages
  const field = (label, input, hint) => {
    ids.set(input, label);
    const hintId = hint ? `${input.id}-hint` : null;
    if (hintId) input.setAttribute("aria-describedby", hintId);
    return el(
      "div",
      { class: "field" },
      el("label", { for: input.id }, label),
      input,
      hint ? el("small", { id: hintId, class: "muted" }, hint) : null,
    );
  };
  const text = (id, attributes = {}) =>
    el("input", { id, type: "text", spellcheck: "false", autocomplete: "off", ...attributes });
  const lines = (id, placeholder) =>
    el("textarea", { id, rows: 3, spellcheck: "false", autocomplete: "off", placeholder });

  const archive = el("input", {
    id: "create-file",
    type: "file",
    required: true,
    accept: ".tar,.zip,.tgz,.tar.gz,application/x-tar,application/zip,application/gzip",
  });
  const type = el(
    "select",
    { id: "create-type" },
    TYPES.map(([value, label]) => el("option", { value }, label)),
  );
  const provisioner = text("create-provisioner", { value: DEFAULT_PROVISIONER, required: true });
  const organization = text("create-organization", { placeholder: DEFAULT_ORGANIZATION });
  const tags = text("create-tags", { placeholder: "key=value, …" });
  const priority = el("input", {
    id: "create-priority",
    type: "number",
    value: "0",
    step: "1",
    min: INT32[0],
    max: INT32[1],
    inputmode: "numeric",
  });
  const variables = lines("create-variables", "name=value, one per line");
  const parameters = lines("create-parameters", "name=value, one per line");
  const workspace = text("create-workspace");
  const workspaceId = text("create-workspace-id");
  const transition = el(
    "select",
    { id: "create-transition" },
    TRANSITIONS.map((name) => el("option", { value: name.toUpperCase() }, name)),
  );
  const ownerId = text("create-owner-id");
  const ownerName = text("create-owner-name");
  const groups = text("create-groups", { placeholder: "group, …" });
  const state = el("input", { id: "create-state", type: "file" });
  const debug = el("input", { id: "create-debug", type: "checkbox" });
  const userId = text("create-user-id");
  const userName = text("create-user-name");

  // Shown for some job types only; hidden ones are disabled, so their fields are
  // neither checked nor sent.
  const parametersBox = el(
    "div",
    { class: "field-group", "data-types": "workspaceBuild templateDryRun" },
    field("Rich parameter values", parameters, "name=value, one per line"),
  );
  const workspaceBox = el(
    "fieldset",
    { id: "create-workspace-fields", "data-types": "workspaceBuild templateDryRun" },
    el("legend", {}, "Workspace"),
    field("Workspace name", workspace),
    field("Workspace id", workspaceId, "quota counts a build's cost by it"),
    field("Owner's user id", ownerId),
    field("Owner's user name", ownerName),
    field("Owner's groups", groups, "comma-separated; quota counts their allowances"),
  );
  const buildBox = el(
    "fieldset",
    { id: "create-build-fields", "data-types": "workspaceBuild" },
    el("legend", {}, "Workspace build"),
    field("Transition", transition),
    field("State file", state, "Terraform state to start from (optional)"),
    el(
      "div",
      { class: "field check" },
      debug,
      el("label", { for: debug.id }, "Debug logs from the provisioner"),
    ),
  );
  const byType = [parametersBox, workspaceBox, buildBox];

  const submit = el("button", { type: "submit", id: "create-submit" }, "Create job");
  const progress = el("p", { id: "create-progress", class: "muted", role: "status" });
  const actions = el("div", { class: "actions" }, submit, progress);
  const problem = el("p", {
    id: "create-error",
    class: "error",
    role: "alert",
    tabindex: "-1",
    hidden: true,
  });
  const form = el(
    "form",
    { id: "create-form", class: "create", method: "post", autocomplete: "off" },
    el(
      "fieldset",
      {},
      el("legend", {}, "Template"),
      field(
        "Template archive",
        archive,
        "a .tar or .zip (a .tar.gz is unpacked first); provd checks it",
      ),
    ),
    el(
      "fieldset",
      {},
      el("legend", {}, "Job"),
      field("Type", type),
      field(
        "Provisioner",
        provisioner,
        `the daemons' provisioner type; ${DEFAULT_PROVISIONER} is built in`,
      ),
      field("Organization", organization, `${DEFAULT_ORGANIZATION} when empty`),
      field("Tags", tags, "key=value, comma-separated; scope defaults to organization"),
      field("Priority", priority, "higher runs first"),
      field("Variable values", variables, "template variables, name=value, one per line"),
      parametersBox,
      field("Initiator's user id", userId),
      field("Initiator's user name", userName),
    ),
    workspaceBox,
    buildBox,
    problem,
    actions,
  );
  view.replaceChildren(
    el("p", {}, el("a", { href: "#/jobs" }, "← Jobs")),
    el("h1", {}, "New job"),
    form,
  );

  const showType = () => {
    for (const box of byType) {
      const on = box.dataset.types.split(" ").includes(type.value);
      box.hidden = !on;
      for (const input of box.querySelectorAll("input, select, textarea")) input.disabled = !on;
    }
  };
  type.addEventListener("change", showType);
  showType();

  const showProblem = (message, input = null) => {
    for (const marked of form.querySelectorAll("[aria-invalid]")) {
      marked.removeAttribute("aria-invalid");
      marked.removeAttribute("aria-errormessage");
    }
    problem.textContent = message;
    problem.hidden = !message;
    if (!message) return;
    // Under the field it is about (in view when the field gets the focus), else
    // above the button.
    const place = input && input.closest(".field");
    if (place) {
      place.after(problem);
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-errormessage", problem.id);
      input.focus();
    } else {
      actions.before(problem);
      problem.focus();
    }
  };

  // provd names the field first ("provisioner: …", "workspaceBuild.metadata.…"):
  // the input it refers to, when there is one.
  const inputFor = (message) => {
    const path = /^([A-Za-z.]+):/.exec(message)?.[1] || "";
    const last = path.split(".").pop();
    return (
      {
        data: archive,
        mimetype: archive,
        fileHash: archive,
        provisioner,
        organization,
        tags,
        priority,
        userVariableValues: variables,
        variableValues: variables,
        richParameterValues: parameters,
        workspaceName: workspace,
        workspaceId,
        workspaceOwnerId: ownerId,
        workspaceOwner: ownerName,
        workspaceOwnerGroups: groups,
        workspaceTransition: transition,
        state,
        logLevel: debug,
        userId,
        userName,
      }[last] || null
    );
  };

  const integer = (input, [low, high]) => {
    const value = input.value.trim();
    const number = Number(value || "0");
    if (input.validity.badInput || !/^-?\d+$/.test(value || "0") || number < low || number > high) {
      throw new FormError(`${ids.get(input)}: a whole number from ${low} to ${high}`, input);
    }
    return number;
  };

  // The CreateJobRequest, in protobuf's JSON mapping, without its fileHash.
  const request = async () => {
    const kind = type.value;
    const body = {
      provisioner: provisioner.value.trim(),
      organization: organization.value.trim(),
      tags: Object.fromEntries(pairs(tags.value, ",", "Tags", tags)),
      priority: integer(priority, INT32),
      initiator: { userId: userId.value.trim(), userName: userName.value.trim() },
    };
    const variableValues = pairs(variables.value, "\n", "Variable values", variables).map(
      ([name, value]) => ({ name, value }),
    );
    if (kind === "templateImport") {
      body.templateImport = { userVariableValues: variableValues };
      return body;
    }
    const metadata = {
      workspaceName: workspace.value.trim(),
      workspaceId: workspaceId.value.trim(),
      workspaceOwnerId: ownerId.value.trim(),
      workspaceOwner: ownerName.value.trim(),
      workspaceOwnerGroups: groups.value
        .split(",")
        .map((g) => g.trim())
        .filter(Boolean),
    };
    const richParameterValues = pairs(
      parameters.value,
      "\n",
      "Rich parameter values",
      parameters,
    ).map(([name, value]) => ({ name, value }));
    if (kind === "templateDryRun") {
      body.templateDryRun = { richParameterValues, variableValues, metadata };
      return body;
    }
    metadata.workspaceTransition = transition.value;
    const build = {
      workspaceBuildId: uuid(),
      workspaceName: metadata.workspaceName,
      logLevel: debug.checked ? "debug" : "",
      richParameterValues,
      variableValues,
      metadata,
    };
    const [stateFile] = state.files;
    if (stateFile) build.state = base64(new Uint8Array(await stateFile.arrayBuffer()));
    body.workspaceBuild = build;
    return body;
  };

  const upload = async (file) => {
    if (uploaded && uploaded.file === file && uploaded.modified === file.lastModified) {
      return uploaded.hash;
    }
    progress.textContent = `Reading ${file.name}…`;
    let archiveBytes;
    try {
      archiveBytes = await readArchive(file);
    } catch (error) {
      throw new FormError(`Cannot read ${file.name}: ${error.message}`, archive);
    }
    progress.textContent = `Uploading ${file.name} (${archiveBytes.bytes.length} bytes)…`;
    let answer;
    try {
      answer = await unary(
        "provd.v1.JobService/UploadFile",
        { data: base64(archiveBytes.bytes), mimetype: archiveBytes.mimetype },
        { signal },
      );
    } catch (error) {
      if (error.name === "AbortError") throw error;
      const what = error.code === "unavailable" ? "Cannot upload" : "provd refused the archive";
      throw new FormError(`${what}: ${error.message}`, archive);
    }
    uploaded = { file, modified: file.lastModified, hash: answer.hash };
    progress.textContent = `Uploaded ${file.name}: ${answer.hash}`;
    return answer.hash;
  };

  archive.addEventListener("change", () => {
    uploaded = null;
    progress.textContent = "";
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submit.disabled) return;
    const [file] = archive.files;
    if (!file) {
      showProblem("Choose a template archive.", archive);
      return;
    }
    submit.disabled = true;
    showProblem("");
    try {
      const body = await request(); // form mistakes first, before any upload
      body.fileHash = await upload(file);
      progress.textContent = "Creating the job…";
      let job;
      try {
        job = await unary("provd.v1.JobService/CreateJob", body, { signal });
      } catch (error) {
        if (error.name === "AbortError") throw error;
        const what =
          error.code === "unavailable" ? "Cannot create the job" : "provd refused the job";
        throw new FormError(`${what}: ${error.message}`, inputFor(error.message));
      }
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (error) {
      if (error.name === "AbortError" || signal.aborted) return;
      progress.textContent = uploaded ? `Uploaded ${uploaded.file.name}: ${uploaded.hash}` : "";
      showProblem(error.message, error instanceof FormError ? error.input : null);
    } finally {
      submit.disabled = false;
    }
  });

  return {
    stop() {
      controller.abort();
    },
  };
}
