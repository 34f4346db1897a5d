// provd's public API from the browser: Connect over fetch, JSON only.
//
// Unary calls are a POST of JSON (Content-Type application/json); server streams
// (StreamJobLogs) are a POST of one enveloped message (application/connect+json)
// whose answer is a sequence of envelopes: 1 byte of flags, a 4-byte big-endian
// length, then that many bytes of JSON. Flag 0x02 marks the end-stream message,
// {"error": {...}, "metadata": {...}}, which carries the call's error if it failed.
//
// The admin token lives in sessionStorage (this tab only, gone when it closes) and
// travels only in the Authorization header: never in a URL, never in a cookie.

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
