// Drives the gateway's Bulk Data export with @medplum/core's MedplumClient,
// unchanged: bulkExport kicks off (POST with Prefer: respond-async), polls
// the status URL until the manifest, and the files are downloaded with the
// access token. Environment: KB_GATEWAY_URL (no trailing slash), KB_TOKEN (a
// backend access token with system/*.rs), KB_GROUP (a Group id). Prints one
// line per check and "N passed, M failed" last.
// @medplum/core 5 targets Node 22, whose global WebSocket it references at
// load (for subscriptions, unused here); Node 20 lacks it.
globalThis.WebSocket ??= class {};
const { MedplumClient } = await import('@medplum/core');

const gateway = process.env.KB_GATEWAY_URL;
const token = process.env.KB_TOKEN;
const group = process.env.KB_GROUP;
let passed = 0;
let failed = 0;
function check(name, ok, detail) {
  if (ok) {
    passed++;
    console.log(`ok   ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}${detail ? ': ' + detail : ''}`);
  }
}

const medplum = new MedplumClient({ baseUrl: gateway + '/', fhirUrlPath: 'fhir', fetch: globalThis.fetch.bind(globalThis) });
medplum.setAccessToken(token);

async function download(url) {
  const resp = await fetch(url, { headers: { Authorization: 'Bearer ' + token, Accept: 'application/fhir+ndjson' } });
  const text = await resp.text();
  return { status: resp.status, type: resp.headers.get('content-type'), lines: text.split('\n').filter((l) => l !== '') };
}

async function exportAndCheck(label, level, types) {
  let manifest;
  try {
    manifest = await medplum.bulkExport(level, types, undefined, { pollStatusOnAccepted: true, pollStatusPeriod: 200 });
  } catch (err) {
    check(`${label}: bulkExport completes`, false, String(err && err.message ? err.message : err));
    return;
  }
  check(`${label}: manifest with transactionTime and output`, !!manifest?.transactionTime && Array.isArray(manifest?.output) && manifest.output.length > 0,
    JSON.stringify(manifest).slice(0, 300));
  check(`${label}: requiresAccessToken`, manifest?.requiresAccessToken === true);
  for (const out of manifest?.output ?? []) {
    const f = await download(out.url);
    const typesOk = f.lines.every((l) => JSON.parse(l).resourceType === out.type);
    check(`${label}: ${out.type} file (${out.count})`, f.status === 200 && f.type === 'application/fhir+ndjson' && f.lines.length === out.count && typesOk,
      `status ${f.status}, ${f.lines.length} lines`);
    if (types) {
      check(`${label}: ${out.type} requested`, types.split(',').includes(out.type));
    }
  }
}

await exportAndCheck('system', '', 'Patient,Observation');
if (group) {
  await exportAndCheck('group', `Group/${group}`, 'Patient,Coverage');
}
await exportAndCheck('patient', 'Patient', undefined);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
