// The service's JSON API, read exactly: 64-bit integers (ns timestamps, order ids) become strings.
//
// JSON.parse turns 1761120015685279913 into 1761120015685279744 (a double), so before parsing,
// every integer literal of 16 or more digits that stands as a value is quoted. The chart API's
// answers hold no free text in which such a token could appear inside a string.

const BIG_INT = /([:,[]\s*)(-?\d{16,})(?=\s*[,\]}])/g;

/** JSON.parse, with integers of 16+ digits kept as digit strings. */
export function parseExact(text) {
  return JSON.parse(text.replace(BIG_INT, '$1"$2"'));
}

/** An answer other than 2xx: ``status`` and the service's ``{title, description}``. */
export class ApiError extends Error {
  constructor(status, title, description) {
    super(`${title}: ${description}`);
    this.name = "ApiError";
    this.status = status;
    this.title = title;
    this.description = description;
  }

  /** The store (lake directory or QuestDB) is down: the API's 503. */
  get storeDown() {
    return this.status === 503;
  }
}

/** True for the rejection of a fetch cancelled through its AbortController. */
export function isAbort(err) {
  return err && err.name === "AbortError";
}

/** GET requests to the API, each logged (path and query) in ``log``. */
export class Api {
  constructor(log) {
    this.log = log;
  }

  url(path, params) {
    if (!params) return path;
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, String(v));
    return `${path}?${q}`;
  }

  async get(path, params, signal) {
    const url = this.url(path, params);
    this.log.push(url);
    let resp;
    try {
      resp = await fetch(url, { signal, headers: { Accept: "application/json" } });
    } catch (err) {
      if (isAbort(err)) throw err;
      throw new ApiError(0, "Service unreachable", `${url}: ${err.message}`);
    }
    const text = await resp.text();
    if (!resp.ok) {
      let doc = null;
      try {
        doc = JSON.parse(text);
      } catch {
        doc = null;
      }
      throw new ApiError(resp.status, doc?.title || resp.statusText, doc?.description || text.slice(0, 300));
    }
    return parseExact(text);
  }
}
