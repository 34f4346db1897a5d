// The dashboard's entry point: sign-in, sign-out and hash routing.
//
//   #/jobs         the jobs page (jobs.js)
//   #/jobs/<id>    one job with its live logs (job.js)
//   #/activity     jobs finished per minute and jobs pending, as charts (activity.js)
//   #/queues       pending jobs per queue and who can take them (queues.js)
//   #/daemons      the daemons provd has seen (daemons.js)
//   #/quota        an organization's quota allowances (quota.js)
//   #/new          upload a template and create a job (create.js)
//
// The admin token is typed once into the login form, checked with a ListJobs call,
// then kept in sessionStorage (api.js). Whenever provd answers `unauthenticated`,
// the token is dropped and the login form comes back.

import { showActivity } from "./activity.js";
import { clearToken, closeJobsWatch, getToken, onUnauthenticated, setToken, unary } from "./api.js";
import { showCreate } from "./create.js";
import { showDaemons } from "./daemons.js";
import { showJob } from "./job.js";
import { showJobs } from "./jobs.js";
import { showQueues } from "./queues.js";
import { showQuota } from "./quota.js";

const $ = (id) => document.getElementById(id);

// The view on screen: an object with stop(), which ends its timers and calls.
let current = null;

function stopView() {
  if (current) current.stop();
  current = null;
  $("view").replaceChildren();
}

function showLogin(message = "") {
  stopView();
  document.title = "Sign in · provd";
  $("bar").hidden = true;
  $("login").hidden = false;
  const error = $("login-error");
  error.textContent = message;
  error.hidden = !message;
  $("token").focus();
}

// The navigation link of the page on screen gets aria-current (and its style).
function markNav(page) {
  for (const link of document.querySelectorAll("#bar nav a")) {
    if (link.id === `nav-${page}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function signOut(message = "") {
  clearToken();
  showLogin(message);
  closeJobsWatch(); // opened with the token just dropped
}

function route() {
  if (!getToken()) {
    showLogin();
    return;
  }
  stopView();
  $("login").hidden = true;
  $("bar").hidden = false;
  const view = $("view");
  const job = /^#\/jobs\/([^/?#]+)$/.exec(location.hash);
  if (job) {
    markNav("jobs");
    current = showJob(view, decodeURIComponent(job[1]));
  } else if (location.hash === "#/activity") {
    markNav("activity");
    current = showActivity(view);
  } else if (location.hash === "#/queues") {
    markNav("queues");
    current = showQueues(view);
  } else if (location.hash === "#/daemons") {
    markNav("daemons");
    current = showDaemons(view);
  } else if (location.hash === "#/quota") {
    markNav("quota");
    current = showQuota(view);
  } else if (location.hash === "#/new") {
    markNav("new");
    current = showCreate(view);
  } else {
    markNav("jobs");
    current = showJobs(view);
  }
}

async function login(event) {
  event.preventDefault();
  const input = $("token");
  const token = input.value.trim();
  input.value = "";
  if (!token) {
    showLogin("Enter the admin token.");
    return;
  }
  const submit = $("login-submit");
  submit.disabled = true;
  try {
    await unary("provd.v1.JobService/ListJobs", { limit: 1 }, { token, reportAuth: false });
  } catch (error) {
    showLogin(
      error.code === "unauthenticated"
        ? `provd refused this token: ${error.message}`
        : `Cannot sign in: ${error.message}`,
    );
    return;
  } finally {
    submit.disabled = false;
  }
  setToken(token);
  route();
}

onUnauthenticated((error) => signOut(`Signed out: provd refused the token (${error.message}).`));
$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
route();
