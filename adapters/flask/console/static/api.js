// The REST API, through the browser's session: a cookie (HttpOnly) and, on every write, the
// CSRF token that POST /session and GET /session answer.

const meta = document.querySelector('meta[name="grayrelease-api"]');
export const API = meta ? meta.getAttribute('content') : '/api/gray-release';

let csrf = null;
let unauthenticated = () => {};

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }

  get field() {
    return this.details.field || null;
  }
}

/** Called when a request comes back 401: the session ended, show the login again. */
export function onUnauthenticated(callback) {
  unauthenticated = callback;
}

function queryString(query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === '') continue;
    if (Array.isArray(value)) value.forEach((v) => params.append(name, String(v)));
    else params.append(name, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

export async function call(method, path, options = {}) {
  const { body, query, ifMatch, quiet } = options;
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  if (ifMatch !== undefined && ifMatch !== null) headers['If-Match'] = `"${ifMatch}"`;
  let answer;
  try {
    answer = await fetch(API + path + queryString(query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (error) {
    throw new ApiError(0, 'NETWORK', String((error && error.message) || error), {});
  }
  if (answer.status === 204) return null;
  const text = await answer.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!answer.ok) {
    const error = (data && data.error) || {};
    const failure = new ApiError(
      answer.status,
      error.code || `HTTP_${answer.status}`,
      error.message || answer.statusText,
      error.details,
    );
    if (answer.status === 401 && !quiet) unauthenticated(failure);
    throw failure;
  }
  return data;
}

export const get = (path, query, options = {}) => call('GET', path, { ...options, query });
export const post = (path, body, options = {}) => call('POST', path, { ...options, body });
export const put = (path, body, options = {}) => call('PUT', path, { ...options, body });
export const del = (path, options = {}) => call('DELETE', path, options);

/** The session's actor, or null when there is none (the login page is shown). */
export async function session() {
  try {
    const answer = await get('/session', undefined, { quiet: true });
    csrf = answer.csrfToken;
    return answer.actor;
  } catch (error) {
    if (error.status !== 401) throw error;
  }
  // A host with its own login (grayrelease_identify) needs no cookie of ours.
  try {
    await get('/messages/unread-count', undefined, { quiet: true });
    return '';
  } catch (error) {
    if (error.status === 401) return null;
    throw error;
  }
}

export async function login(token) {
  const answer = await post('/session', { token }, { quiet: true });
  csrf = answer.csrfToken;
  return answer.actor;
}

export async function logout() {
  await del('/session', { quiet: true });
  csrf = null;
}

export const planPath = (id) => `/plan/${encodeURIComponent(id)}`;
