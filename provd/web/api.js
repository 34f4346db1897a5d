// provd's public API from the browser: Connect over fetch, JSON only.
//
// Unary calls are a POST of JSON (Content-Type application/json); server streams
// (StreamJobLogs, WatchJobs) are a POST of one enveloped message (application/connect+json)
// whose answer is a sequence of envelopes: 1 byte of flags, a 4-byte big-endian
// length, then that many bytes of JSON. Flag 0x02 marks the end-stream message,
// {"error": {...}, "metadata": {...}}, which carries the call's error if it failed.
//
// The admin token lives in sessionStorage (this tab only, gone when it closes) and
// travels only in the Authorization header: never in a URL, never in a cookie.

// provd's organization when none is named (model.DEFAULT_ORGANIZATION).
export const DEFAULT_ORGANIZATION = "default";

const TOKEN_KEY = "provd.adminToken";
const END_STREAM = 0x02;
const COMPRESSED = 0x01;

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// An error from provd (its Connect code and message) or from getting there.
export class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "ApiError";
    this.code = code;
  }
}

let unauthenticated = () => {};

// `handler(error)` runs whenever a call is refused as `unauthenticated`: the token is
// wrong, or was changed on the server since the user signed in.
export function onUnauthenticated(handler) {
  unauthenticated = handler;
}

function headers(token, contentType) {
  return {
    "Content-Type": contentType,
    "Connect-Protocol-Version": "1",
    Authorization: `Bearer ${token}`,
  };
}

// The Connect code for an HTTP status, when the body does not say.
function codeForStatus(status) {
  return (
    {
      400: "invalid_argument",
      401: "unauthenticated",
      403: "permission_denied",
      404: "unimplemented",
      408: "deadline_exceeded",
      429: "unavailable",
      502: "unavailable",
      503: "unavailable",
      504: "unavailable",
    }[status] || "unknown"
  );
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page, say
  }
  const code = typeof body?.code === "string" ? body.code : codeForStatus(response.status);
  const message = typeof body?.message === "string" ? body.message : `HTTP ${response.status}`;
  return new ApiError(code, message);
}

function report(error, reportAuth) {
  if (reportAuth && error instanceof ApiError && error.code === "unauthenticated") {
    unauthenticated(error);
  }
  return error;
}

async function send(path, init) {
  try {
    return await fetch(path, { ...init, credentials: "omit", cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("unavailable", `cannot reach provd (${error.message})`);
  }
}

// One unary call: `method` is "provd.v1.JobService/ListJobs"; `request` the message
// in protobuf's JSON mapping. Resolves to the response message.
export async function unary(method, request, { token = getToken(), signal, reportAuth = true } = {}) {
  const response = await send(`/${method}`, {
    method: "POST",
    headers: headers(token, "application/json"),
    body: JSON.stringify(request),
    signal,
  });
  if (!response.ok) throw report(await errorOf(response), reportAuth);
  return response.json();
}

function envelope(flags, data) {
  const framed = new Uint8Array(5 + data.length);
  framed[0] = flags;
  new DataView(framed.buffer).setUint32(1, data.length);
  framed.set(data, 5);
  return framed;
}

function concat(a, b) {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a, 0);
  joined.set(b, a.length);
  return joined;
}

// A server stream: yields each response message until the end-stream message, and
// throws its error if it carries one. Aborting `signal` ends it.
export async function* serverStream(method, request, { token = getToken(), signal } = {}) {
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const response = await send(`/${method}`, {
    method: "POST",
    headers: headers(token, "application/connect+json"),
    body: envelope(0, encoder.encode(JSON.stringify(request))),
    signal,
  });
  if (!response.ok) throw report(await errorOf(response), true);
  const reader = response.body.getReader();
  let buffer = new Uint8Array(0);
  try {
    for (;;) {
      while (buffer.length >= 5) {
        const flags = buffer[0];
        const length = new DataView(buffer.buffer, buffer.byteOffset, 5).getUint32(1);
        if (buffer.length < 5 + length) break;
        const data = buffer.subarray(5, 5 + length);
        buffer = buffer.subarray(5 + length);
        if (flags & COMPRESSED) {
          throw new ApiError("internal", "a compressed message, though none was asked for");
        }
        const message = JSON.parse(decoder.decode(data));
        if (flags & END_STREAM) {
          if (message.error) {
            const error = new ApiError(message.error.code || "unknown", message.error.message || "");
            throw report(error, true);
          }
          return;
        }
        yield message;
      }
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (error.name === "AbortError") throw error;
        throw new ApiError("unavailable", `the stream broke (${error.message})`);
      }
      if (chunk.done) throw new ApiError("unavailable", "the stream ended without its end message");
      buffer = concat(buffer, chunk.value);
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// Resolves after `seconds`, or at once when `signal` is aborted.
export function sleep(seconds, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, seconds * 1000);
    signal.addEventListener("abort", done);
  });
}

// --- WatchJobs: one stream for the whole tab
//
// Pages that show jobs re-read when provd says jobs changed, instead of polling fast.
// One WatchJobs stream serves them all: it opens with the first listener, stays open
// from page to page, and closes a few seconds after the last one left (at once on
// sign-out: `closeJobsWatch`). provd sends a message at once, then one whenever jobs
// changed (at most every half second), and a keep-alive every 20 s. Listeners hear
// `state(live)` when the stream comes up or goes down, and `changed({jobIds, many})`
// for each message but keep-alives (`many`: re-read everything; so is the first).
// A stream that breaks, or stays silent past two keep-alives, is opened again after
// 1 s, then 2, 4, … up to 30 s between tries. A tab that stays hidden for a few
// seconds closes its stream and opens it again when shown: browsers give an origin
// six HTTP/1.1 connections across all its tabs, and an open stream holds one.

const WATCH_METHOD = "provd.v1.JobService/WatchJobs";
const WATCH_RETRY_SECONDS = [1, 2, 4, 8, 16, 30];
const WATCH_IDLE_CLOSE_SECONDS = 5;
const WATCH_SILENCE_SECONDS = 45;

const jobWatchers = new Set();
let watchController = null; // while the stream (or its reconnecting) runs
let watchLive = false;
let idleTimer = null;

// `listener`: {changed(changes), state(live)}; `state` is called at once with the
// current state. Returns the function that removes the listener.
export function watchJobs(listener) {
  jobWatchers.add(listener);
  clearTimeout(idleTimer);
  if (!watchController && !document.hidden) runJobsWatch();
  listener.state(watchLive);
  return () => {
    jobWatchers.delete(listener);
    if (!jobWatchers.size) {
      clearTimeout(idleTimer);
      idleTimer = setTimeout(closeJobsWatch, WATCH_IDLE_CLOSE_SECONDS * 1000);
    }
  };
}

// Close the stream now (signing out); the next listener opens a new one.
export function closeJobsWatch() {
  clearTimeout(idleTimer);
  if (watchController) watchController.abort();
  watchController = null;
  setWatchLive(false);
}

document.addEventListener("visibilitychange", () => {
  clearTimeout(idleTimer);
  if (document.hidden) {
    idleTimer = setTimeout(() => {
      if (document.hidden) closeJobsWatch();
    }, WATCH_IDLE_CLOSE_SECONDS * 1000);
  } else if (jobWatchers.size && !watchController) {
    runJobsWatch();
  }
});

function setWatchLive(live) {
  if (live === watchLive) return;
  watchLive = live;
  for (const listener of [...jobWatchers]) listener.state(live);
}

// One connection: resolves when it ends or breaks (rejects only for `unauthenticated`).
async function readJobsWatch(signal) {
  const connection = new AbortController();
  const abort = () => connection.abort();
  signal.addEventListener("abort", abort);
  let silence = null;
  const expectSoon = () => {
    clearTimeout(silence);
    silence = setTimeout(abort, WATCH_SILENCE_SECONDS * 1000);
  };
  let heard = false;
  try {
    expectSoon();
    for await (const message of serverStream(WATCH_METHOD, {}, { signal: connection.signal })) {
      expectSoon();
      heard = true;
      setWatchLive(true);
      if (message.keepAlive) continue;
      const changes = { jobIds: message.jobIds || [], many: Boolean(message.many) };
      for (const listener of [...jobWatchers]) listener.changed(changes);
    }
  } catch (error) {
    if (error.code === "unauthenticated") throw error;
  } finally {
    clearTimeout(silence);
    signal.removeEventListener("abort", abort);
  }
  return heard;
}

async function runJobsWatch() {
  const controller = new AbortController();
  watchController = controller;
  const { signal } = controller;
  let failures = 0;
  try {
    while (!signal.aborted) {
      failures = (await readJobsWatch(signal)) ? 0 : failures + 1;
      setWatchLive(false);
      if (signal.aborted) break;
      const step = Math.min(Math.max(failures - 1, 0), WATCH_RETRY_SECONDS.length - 1);
      await sleep(WATCH_RETRY_SECONDS[step], signal);
    }
  } catch {
    // unauthenticated: the sign-in form is back (api.js reported it)
    setWatchLive(false);
  } finally {
    if (watchController === controller) watchController = null;
  }
}
