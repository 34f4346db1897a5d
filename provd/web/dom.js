// Building the page from data without ever parsing it as HTML: every string from
// provd (job fields, log lines, error messages) becomes a text node. And the timers
// that keep a page fresh: `poll`, and `livePoll` (push, with polling as a safety net).

import { watchJobs } from "./api.js";

// How often a page re-reads by itself: while the WatchJobs stream is down, and while
// it is up (a safety net: pushes do the work then).
export const POLL_SECONDS = 2;
export const LIVE_POLL_SECONDS = 30;
// Pushes that come together make one re-read.
const PUSH_DEBOUNCE_MS = 100;

const SVG_NS = "http://www.w3.org/2000/svg";

// An element: `attributes` are set with setAttribute (never event handlers);
// children are nodes or strings (made text nodes); null and false are skipped.
export function el(tag, attributes = {}, ...children) {
  return build(document.createElement(tag), attributes, children);
}

// An SVG element (charts.js), built as `el` builds HTML ones.
export function svgEl(tag, attributes = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attributes, children);
}

function build(element, attributes, children) {
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) throw new Error(`no event handler attributes: ${name}`);
    element.setAttribute(name, value === true ? "" : String(value));
  }
  return append(element, ...children);
}

export function append(parent, ...children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

// "JOB_STATUS_PENDING" → "pending"; "JOB_TYPE_TEMPLATE_IMPORT" → "template import".
export function enumLabel(value, prefix) {
  if (!value) return "";
  return String(value).replace(prefix, "").toLowerCase().replaceAll("_", " ");
}

export function statusOf(job) {
  return enumLabel(job.status || "JOB_STATUS_UNSPECIFIED", "JOB_STATUS_");
}

export function typeOf(job) {
  return enumLabel(job.type || "JOB_TYPE_UNSPECIFIED", "JOB_TYPE_");
}

const pad = (n) => String(n).padStart(2, "0");

// A protobuf JSON timestamp as local "YYYY-MM-DD HH:MM:SS"; "" when unset.
export function formatTime(timestamp) {
  if (!timestamp) return "";
  const t = new Date(timestamp);
  if (Number.isNaN(t.getTime())) return String(timestamp);
  return (
    `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ` +
    `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`
  );
}

export function formatTags(tags) {
  return Object.entries(tags || {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, value]) => `${key}=${value}`)
    .join(", ");
}

export function statusBadge(job) {
  const status = statusOf(job);
  return el("span", { class: `status status-${status.replaceAll(" ", "-")}` }, status);
}

// A timer that calls `tick` now and then every `seconds` (a number, or a function
// read before each wait) while the tab is visible, and at once when it becomes
// visible again. Returns {now(), stop()}.
export function poll(tick, seconds) {
  const interval = typeof seconds === "function" ? seconds : () => seconds;
  let timer = null;
  let stopped = false;
  let running = false;
  let again = false; // asked for while a tick ran: run once more right after it
  const run = async () => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    clearTimeout(timer);
    if (document.visibilityState === "visible") {
      running = true;
      try {
        await tick();
      } catch (error) {
        console.error(error); // ticks report their own errors; keep polling
      } finally {
        running = false;
      }
    }
    if (stopped) return;
    if (again) {
      again = false;
      run();
    } else {
      timer = setTimeout(run, interval() * 1000);
    }
  };
  const onVisible = () => {
    if (document.visibilityState === "visible") run();
  };
  document.addEventListener("visibilitychange", onVisible);
  run();
  return {
    now: run,
    stop() {
      stopped = true;
      clearTimeout(timer);
      document.removeEventListener("visibilitychange", onVisible);
    },
  };
}

// `tick` now, shortly after each push of WatchJobs that `wants(changes)` accepts
// (changes: {jobIds, many}; any, by default), and by polling: every `liveSeconds`
// while the stream is up, every POLL_SECONDS while it is down (and at once when it
// goes down). `mode`, if given, is an element that says which ("live" or "polling
// every 2 s", with `data-live`; empty once stopped). Returns {now(), stop()}.
export function livePoll(
  tick,
  { wants = () => true, mode = null, liveSeconds = LIVE_POLL_SECONDS, liveLabel = "live" } = {},
) {
  let live = false;
  let debounce = null;
  const poller = poll(tick, () => (live ? liveSeconds : POLL_SECONDS));
  const unwatch = watchJobs({
    changed(changes) {
      if (!wants(changes)) return;
      clearTimeout(debounce);
      debounce = setTimeout(poller.now, PUSH_DEBOUNCE_MS);
    },
    state(isLive) {
      const wasLive = live;
      live = isLive;
      if (mode) {
        mode.textContent = live ? liveLabel : `polling every ${POLL_SECONDS} s`;
        mode.dataset.live = String(live);
      }
      if (wasLive && !live) poller.now(); // from a 30 s wait to 2 s polling, now
    },
  });
  return {
    now: poller.now,
    stop() {
      clearTimeout(debounce);
      unwatch();
      poller.stop();
      if (mode) mode.textContent = ""; // no longer re-read: neither live nor polling
    },
  };
}
