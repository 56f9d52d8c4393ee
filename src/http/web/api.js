// Calls to the pagemill API with the key kept for this browser session, and the job's
// server-sent events read from a streamed fetch (EventSource cannot send the key).

const KEY = 'pagemill.key';

/** An error answer of the API: its HTTP status, stable code and message. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export function key() {
  return sessionStorage.getItem(KEY) || '';
}

export function setKey(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

let onUnauthorized = () => {};

/** Sets what happens when the API answers 401: the page asks for a key again. */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

/** Fetches `path` with the key; throws an ApiError for an error answer. */
export async function call(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (key()) headers.set('Authorization', `Bearer ${key()}`);
  const response = await fetch(path, { ...options, headers });
  if (response.ok) return response;
  let body = {};
  try {
    body = await response.json();
  } catch {
    // Not a JSON error: the status says enough.
  }
  const error = new ApiError(
    response.status,
    body.error?.code ?? `http_${response.status}`,
    body.error?.message ?? response.statusText,
    Number(response.headers.get('Retry-After')) || null,
  );
  if (response.status === 401) onUnauthorized(error);
  throw error;
}

export async function getJson(path) {
  return (await call(path)).json();
}

/** Fetches `path` with the key and saves it as `filename`. */
export async function download(path, filename) {
  const blob = await (await call(path)).blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** An image fetched with the key, as a blob: URL for an <img>. */
export async function imageUrl(path) {
  return URL.createObjectURL(await (await call(path)).blob());
}

/** Yields `{event, data}` for each server-sent event of job `id` until the stream ends. */
async function* events(id) {
  const response = await call(`/v1/jobs/${encodeURIComponent(id)}/events`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll('\r\n', '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        const colon = line.indexOf(':');
        if (colon <= 0) continue; // a comment (keep-alive) or nothing
        const value = line.slice(colon + 1).replace(/^ /, '');
        if (line.startsWith('event:')) event = value;
        if (line.startsWith('data:')) data += value;
      }
      if (data) yield { event, data: JSON.parse(data) };
    }
  }
}

/**
 * Calls `onStatus` with each status of job `id` until it is final, from its events, or by
 * asking every second when no event stream is to be had (the tenant holds too many open).
 */
export async function watch(id, onStatus) {
  try {
    for await (const { data } of events(id)) {
      onStatus(data);
      if (['done', 'failed', 'cancelled'].includes(data.state)) return data;
    }
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 429) throw error;
  }
  for (;;) {
    const status = await getJson(`/v1/jobs/${encodeURIComponent(id)}`);
    onStatus(status);
    if (['done', 'failed', 'cancelled'].includes(status.state)) return status;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** What a status says the job is doing now, in words. */
export function stage(status) {
  const { total, rendered, ocred } = status.pages;
  switch (status.state) {
    case 'queued': return 'waiting for its turn';
    case 'done': return 'done';
    case 'failed': return 'failed';
    case 'cancelled': return 'cancelled';
    default:
      if (total == null) return 'opening the document';
      if (ocred >= total) return 'summarizing and saving';
      if (rendered > ocred) return 'recognizing text';
      return 'rendering pages';
  }
}
