// Headless proof that the npm `fhirclient` library (the reference SMART
// client) works against the KetaBridge gateway unchanged (docs/design/security.md
// APP-1, APP-2).
//
// It drives a standalone patient launch of a public client with fhirclient's
// Node adapter: authorize (PKCE S256 from discovery) -> the gateway's login
// and consent forms over plain HTTP (fetch + a tiny cookie jar, no browser)
// -> ready (code exchange) -> FHIR requests -> refresh.
//
// Environment:
//   KB_GATEWAY_URL   gateway base URL, e.g. http://127.0.0.1:8080 (required)
//   KB_FHIR_BASE     FHIR base URL (default {KB_GATEWAY_URL}/fhir)
//   KB_CLIENT_ID     registered public client id (required)
//   KB_REDIRECT_URI  its registered redirect URI (required; nothing needs to
//                    listen there: the code is taken from the Location header)
//   KB_USERNAME      a patient user (required)
//   KB_PASSWORD      that user's password (required)
//   KB_SCOPE         scope to request (default below)
//
// The last line printed is `N passed, M failed`; the exit code is non-zero on
// any failure.

import smart from "fhirclient";

const DEFAULT_SCOPE = "launch/patient openid fhirUser offline_access patient/*.rs";

let passed = 0;
let failed = 0;

function ok(name, detail) {
  passed++;
  const shown = detail ? String(detail).replace(/([?&]code=)[^&]+/, "$1...") : "";
  console.log(`ok   ${name}${shown ? ": " + shown : ""}`);
}

function fail(name, err) {
  failed++;
  const msg = err instanceof Error ? err.stack || err.message : String(err);
  console.log(`FAIL ${name}: ${msg}`);
}

// check runs one named step; a thrown error fails it. It returns the step's
// value, or undefined when it failed.
async function check(name, fn) {
  try {
    const v = await fn();
    ok(name, typeof v === "string" ? v : undefined);
    return v;
  } catch (err) {
    fail(name, err);
    return undefined;
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

function env(name, def) {
  const v = process.env[name];
  if (v === undefined || v === "") {
    if (def !== undefined) return def;
    throw new Error(`environment variable ${name} is required`);
  }
  return v;
}

// --- a tiny cookie jar -----------------------------------------------------

// CookieJar keeps the cookies of one origin (enough for the gateway's /auth
// pages): name -> value, honouring Max-Age<=0 / past Expires as deletion.
class CookieJar {
  constructor() {
    this.cookies = new Map();
  }

  store(resp) {
    const list = typeof resp.headers.getSetCookie === "function" ? resp.headers.getSetCookie() : [];
    for (const line of list) {
      const [pair, ...attrs] = line.split(";");
      const eq = pair.indexOf("=");
      if (eq < 1) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let expired = false;
      for (const a of attrs) {
        const [k, v = ""] = a.split("=");
        const key = k.trim().toLowerCase();
        if (key === "max-age" && Number(v) <= 0) expired = true;
        if (key === "expires" && Date.parse(v) < Date.now()) expired = true;
      }
      if (expired) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }
}

// browser is one "user agent": fetch without following redirects, with the
// cookie jar applied.
function browser() {
  const jar = new CookieJar();
  return {
    jar,
    async request(url, init = {}) {
      const headers = new Headers(init.headers || {});
      const cookie = jar.header();
      if (cookie) headers.set("cookie", cookie);
      const resp = await fetch(url, { ...init, headers, redirect: "manual" });
      jar.store(resp);
      const body = await resp.text();
      return { status: resp.status, headers: resp.headers, body, url };
    },
  };
}

// --- HTML form scraping ----------------------------------------------------

function unescapeHTML(s) {
  return s
    .replace(/&#(\d+);/g, (_, n) => String.fromCodePoint(Number(n)))
    .replace(/&#x([0-9a-f]+);/gi, (_, n) => String.fromCodePoint(parseInt(n, 16)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, "&");
}

function attr(tag, name) {
  const m = tag.match(new RegExp(`\\s${name}="([^"]*)"`, "i"));
  return m ? unescapeHTML(m[1]) : undefined;
}

// formFields returns the <form> whose action is `action` and method post:
// its hidden inputs and its checked checkboxes/radios, as [name, value]
// pairs in document order (what a browser would submit, minus buttons).
function formFields(html, action) {
  const forms = [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)];
  const form = forms.find((f) => attr(f[1], "action") === action && (attr(f[1], "method") || "").toLowerCase() === "post");
  assert(form, `no POST form with action ${action} in the page (${html.length} bytes)`);
  const fields = [];
  for (const m of form[2].matchAll(/<input\b[^>]*>/gi)) {
    const tag = m[0];
    const type = (attr(tag, "type") || "text").toLowerCase();
    const name = attr(tag, "name");
    if (!name) continue;
    const value = attr(tag, "value") ?? "";
    if (type === "hidden") fields.push([name, value]);
    if ((type === "checkbox" || type === "radio") && /\schecked\b/i.test(tag)) fields.push([name, value]);
  }
  return fields;
}

// page summarises an HTML answer for a failure message: status, title and
// the page's error text (never the whole document).
function page(r) {
  const text = (re) => {
    const m = r.body.match(re);
    return m ? unescapeHTML(m[1].replace(/<[^>]+>/g, "")).replace(/\s+/g, " ").trim() : "";
  };
  const parts = [`${r.status}`, text(/<title>([\s\S]*?)<\/title>/i), text(/<h1>([\s\S]*?)<\/h1>/i),
    text(/<p class="error"[^>]*>([\s\S]*?)<\/p>/i)].filter(Boolean);
  if (!/<html/i.test(r.body)) parts.push(r.body.slice(0, 300));
  const loc = r.headers.get("location");
  if (loc) parts.push("Location: " + loc);
  return parts.join(" | ");
}

function formBody(fields) {
  const p = new URLSearchParams();
  for (const [k, v] of fields) p.append(k, v);
  return p.toString();
}

// --- fhirclient's Node adapter with an in-memory storage ---------------------

// memoryStorage is fhirclient's Storage interface ({get,set,unset}, async).
function memoryStorage() {
  const m = new Map();
  return {
    map: m,
    async get(key) {
      return m.get(key);
    },
    async set(key, value) {
      m.set(key, value);
      return value;
    },
    async unset(key) {
      return m.delete(key);
    },
  };
}

// nodeRequest is the minimal http.IncomingMessage the Node adapter reads
// (getUrl: headers.host, url, socket.encrypted).
function nodeRequest(absoluteURL) {
  const u = new URL(absoluteURL);
  return {
    url: u.pathname + u.search,
    headers: { host: u.host },
    socket: { encrypted: u.protocol === "https:" },
  };
}

// nodeResponse records a redirect the adapter might write (it should not:
// noRedirect is used).
function nodeResponse() {
  return {
    status: 0,
    headers: {},
    writeHead(status, headers) {
      this.status = status;
      this.headers = headers || {};
    },
    end() {},
  };
}

// --- the test --------------------------------------------------------------

async function main() {
  let cfg;
  try {
    const gateway = env("KB_GATEWAY_URL").replace(/\/+$/, "");
    cfg = {
      gateway,
      fhirBase: env("KB_FHIR_BASE", gateway + "/fhir").replace(/\/+$/, ""),
      clientId: env("KB_CLIENT_ID"),
      redirectUri: env("KB_REDIRECT_URI"),
      username: env("KB_USERNAME"),
      password: env("KB_PASSWORD"),
      scope: env("KB_SCOPE", DEFAULT_SCOPE),
    };
  } catch (err) {
    fail("configuration", err.message);
    return;
  }

  const storage = memoryStorage();
  const redirect = new URL(cfg.redirectUri);
  const launchURL = new URL("/launch", redirect).href;

  // 1. authorize: discovery + PKCE, returning the authorization URL.
  const authorizeURL = await check("fhirclient authorize (noRedirect)", async () => {
    const res = nodeResponse();
    const url = await smart(nodeRequest(launchURL), res, storage).authorize({
      iss: cfg.fhirBase,
      clientId: cfg.clientId,
      scope: cfg.scope,
      redirectUri: cfg.redirectUri,
      noRedirect: true,
    });
    assert(typeof url === "string" && url.startsWith("http"), `authorize returned ${url}`);
    assert(res.status === 0, `authorize wrote a ${res.status} response despite noRedirect`);
    return url;
  });
  if (!authorizeURL) return;

  let stateKey;
  await check("authorize URL parameters (PKCE S256, aud = iss)", async () => {
    const u = new URL(authorizeURL);
    const p = u.searchParams;
    assert(u.href.startsWith(cfg.gateway + "/"), `authorization endpoint ${u.origin + u.pathname} is not on the gateway ${cfg.gateway}`);
    assert(p.get("response_type") === "code", `response_type=${p.get("response_type")}`);
    assert(p.get("client_id") === cfg.clientId, `client_id=${p.get("client_id")}`);
    assert(p.get("redirect_uri") === cfg.redirectUri, `redirect_uri=${p.get("redirect_uri")}`);
    assert(p.get("scope") === cfg.scope, `scope=${p.get("scope")}`);
    assert(p.get("aud") === cfg.fhirBase, `aud=${p.get("aud")}, want the iss ${cfg.fhirBase}`);
    assert(p.get("code_challenge_method") === "S256", `code_challenge_method=${p.get("code_challenge_method")} (discovery must advertise S256)`);
    assert(/^[A-Za-z0-9_-]{43}$/.test(p.get("code_challenge") || ""), `code_challenge=${p.get("code_challenge")}`);
    stateKey = p.get("state");
    assert(stateKey, "no state");
    const st = await storage.get(stateKey);
    assert(st && st.codeVerifier && st.tokenUri, "fhirclient stored no codeVerifier/tokenUri");
    return `authorization_endpoint ${u.origin + u.pathname}, token_endpoint ${st.tokenUri}`;
  });

  // 2-3. The user agent: authorize -> login -> consent -> redirect_uri.
  const ua = browser();
  const callbackURL = await check("login and consent over HTTP", async () => {
    let r = await ua.request(authorizeURL);
    assert(r.status === 303 || r.status === 302, `GET authorize: ${page(r)}`);
    const consentURL = new URL(r.headers.get("location"), authorizeURL).href;
    assert(new URL(consentURL).pathname === "/auth/consent", `authorize redirected to ${consentURL}`);

    r = await ua.request(consentURL);
    assert(r.status === 200, `GET consent (login page): ${page(r)}`);
    const login = formFields(r.body, "/auth/login");
    const loginBody = [...login, ["username", cfg.username], ["password", cfg.password]];
    r = await ua.request(new URL("/auth/login", cfg.gateway).href, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: formBody(loginBody),
    });
    assert(r.status === 303 || r.status === 302, `POST login: ${page(r)}`);
    const afterLogin = new URL(r.headers.get("location"), cfg.gateway).href;

    r = await ua.request(afterLogin);
    assert(r.status === 200, `GET consent: ${page(r)}`);
    const consent = formFields(r.body, "/auth/consent");
    const scopes = consent.filter(([k]) => k === "scope").map(([, v]) => v);
    assert(scopes.length > 0, "the consent form offers no scopes");
    r = await ua.request(new URL("/auth/consent", cfg.gateway).href, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: formBody([...consent, ["action", "approve"]]),
    });
    assert(r.status === 302 || r.status === 303, `POST consent: ${page(r)}`);
    const loc = r.headers.get("location");
    assert(loc && loc.startsWith(cfg.redirectUri), `consent redirected to ${loc}, not the redirect URI`);
    const cb = new URL(loc);
    assert(!cb.searchParams.get("error"), `authorization error ${cb.searchParams.get("error")}: ${cb.searchParams.get("error_description")}`);
    assert(cb.searchParams.get("state") === stateKey, `state=${cb.searchParams.get("state")}, want ${stateKey}`);
    const code = cb.searchParams.get("code") || "";
    assert(/^[A-Za-z0-9._~-]+$/.test(code), `code is not URL-safe: ${JSON.stringify(code)} (fhirclient posts it unencoded, APP-1)`);
    return cb.href;
  });
  if (!callbackURL) return;

  // 4. ready: fhirclient exchanges the code, reading code and state from
  // the callback request's URL as it would in an app's redirect handler.
  const client = await check("fhirclient ready (code exchange)", async () => {
    const c = await smart(nodeRequest(callbackURL), nodeResponse(), storage).ready();
    assert(c && c.state && c.state.tokenResponse && c.state.tokenResponse.access_token, "no access token");
    return c;
  });
  if (!client) return;

  const tr = client.state.tokenResponse;
  await check("token response", async () => {
    assert(String(tr.token_type).toLowerCase() === "bearer", `token_type=${tr.token_type}`);
    assert(typeof tr.expires_in === "number" && tr.expires_in > 0, `expires_in=${JSON.stringify(tr.expires_in)}`);
    assert(typeof tr.refresh_token === "string" && tr.refresh_token.length > 0, "no refresh_token");
    assert(typeof tr.id_token === "string" && tr.id_token.split(".").length === 3, "no id_token");
    assert(typeof tr.scope === "string" && /\boffline_access\b/.test(tr.scope), `scope=${tr.scope}`);
    assert(typeof tr.patient === "string" && tr.patient.length > 0, "no patient in context");
    return `expires_in ${tr.expires_in}, scope "${tr.scope}"`;
  });

  const patientId = client.patient.id;
  await check("client.patient.id", async () => {
    assert(patientId, "client.patient.id is empty");
    return String(patientId);
  });

  await check("client.getFhirUser()", async () => {
    const fu = client.getFhirUser();
    assert(typeof fu === "string" && /^(Patient|Practitioner|RelatedPerson|Person)\/[A-Za-z0-9\-.]{1,64}$/.test(fu),
      `getFhirUser()=${fu}`);
    assert(fu === "Patient/" + patientId, `getFhirUser()=${fu}, want Patient/${patientId} (a patient user)`);
    assert(client.getUserType() === "Patient" && client.getUserId() === String(patientId), "getUserType/getUserId");
    return fu;
  });

  await check(`client.request("Patient/" + id)`, async () => {
    const p = await client.request("Patient/" + patientId);
    assert(p && p.resourceType === "Patient" && p.id === patientId, `got ${JSON.stringify(p).slice(0, 200)}`);
  });

  await check("client.patient.read()", async () => {
    const p = await client.patient.read();
    assert(p && p.resourceType === "Patient" && p.id === patientId, `got ${JSON.stringify(p).slice(0, 200)}`);
  });

  await check("client.user.read() (fhirUser is readable, OIDC-2)", async () => {
    const u = await client.user.read();
    assert(u && u.resourceType === "Patient" && u.id === patientId, `got ${JSON.stringify(u).slice(0, 200)}`);
  });

  await check(`client.request("Observation?_count=5")`, async () => {
    const b = await client.request("Observation?_count=5");
    assert(b && b.resourceType === "Bundle" && b.type === "searchset", `got ${JSON.stringify(b).slice(0, 200)}`);
    const entries = b.entry || [];
    assert(entries.length <= 5, `${entries.length} entries for _count=5`);
    for (const e of entries) {
      const r = e.resource || {};
      assert(r.resourceType === "Observation", `entry ${r.resourceType}`);
      const subj = r.subject && r.subject.reference;
      assert(subj === "Patient/" + patientId, `Observation/${r.id} has subject ${subj}: outside the patient in context`);
    }
    return `${entries.length} entries`;
  });

  await check(`client.patient.request("Observation")`, async () => {
    const b = await client.patient.request("Observation?_count=5");
    assert(b && b.resourceType === "Bundle", `got ${JSON.stringify(b).slice(0, 200)}`);
    return `${(b.entry || []).length} entries`;
  });

  const oldAccess = tr.access_token;
  const oldRefresh = tr.refresh_token;
  const refreshed = await check("client.refresh()", async () => {
    const st = await client.refresh();
    const t = st.tokenResponse;
    assert(t.access_token && t.access_token !== oldAccess, "refresh returned no new access token");
    assert(typeof t.expires_in === "number" && t.expires_in > 0, `expires_in=${JSON.stringify(t.expires_in)}`);
    assert(client.state.expiresAt > Date.now() / 1000, `expiresAt ${client.state.expiresAt} is not in the future`);
    return t.refresh_token !== oldRefresh ? "refresh token rotated" : "same refresh token";
  });

  if (refreshed !== undefined) {
    await check("new access token works", async () => {
      const p = await client.request("Patient/" + patientId);
      assert(p && p.resourceType === "Patient" && p.id === patientId, `got ${JSON.stringify(p).slice(0, 200)}`);
      // And the request really carried the new token.
      assert(client.getAuthorizationHeader() === "Bearer " + client.state.tokenResponse.access_token, "Authorization header");
    });
  }
}

main()
  .catch((err) => fail("unexpected error", err))
  .finally(() => {
    console.log(`${passed} passed, ${failed} failed`);
    process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
  });
