// A page per service (#service/NAME, NAME as /api/v1/stat names services: "reviews.default") and
// the configuration problems the graph badges (docs/dashboard.md). Loaded before app.js, whose
// helpers it uses when called.
'use strict';

const serviceState = {name: '', problems: null, problemsAt: 0, subject: ''};

// What `meshctl check` finds, by service: NACKed configuration and proxies not ready (from
// /api/v1/proxies and /api/v1/workloads), and Gateway API routes whose status for a Service parent
// has a condition that is not True (Accepted, ResolvedRefs). Kept for 15 s.
async function loadProblems() {
  if (serviceState.problems && Date.now() - serviceState.problemsAt < 15000) return serviceState.problems;
  const problems = new Map();
  const add = (service, text) => { (problems.get(service) || problems.set(service, []).get(service)).push(text); };
  const [proxies, workloads, ...routes] = await Promise.all([
    api('/api/v1/proxies').catch(() => ({items: []})),
    api('/api/v1/workloads').catch(() => ({items: []})),
    ...['httproutes', 'grpcroutes'].map((r) =>
      api('/apis/gateway.networking.k8s.io/v1/' + r).catch(() => ({items: []})))]);
  for (const p of proxies.items || []) {
    const svc = p.service + '.' + p.namespace;
    for (const [url, t] of Object.entries(p.types || {})) {
      if (t.nack) add(svc, `${p.id}: ${shortType(url)} NACKed: ${t.nack}`);
    }
    if (p.notReady) add(svc, `${p.id} not ready: ${p.notReady}`);
  }
  for (const w of workloads.items || []) {
    if (w.connected && w.ready === false) add(w.service + '.' + w.namespace, `${w.id} not ready`);
  }
  for (const list of routes) {
    for (const item of list.items || []) {
      const name = `${item.kind || 'route'} ${item.metadata.namespace}/${item.metadata.name}`;
      for (const parent of (item.status && item.status.parents) || []) {
        const ref = parent.parentRef || {};
        const svc = ref.name + '.' + (ref.namespace || item.metadata.namespace);
        for (const c of parent.conditions || []) {
          if (c.status !== 'True') add(svc, `${name}: ${c.type} ${c.status} (${c.reason}: ${c.message})`);
        }
      }
    }
  }
  serviceState.problems = problems;
  serviceState.problemsAt = Date.now();
  return problems;
}

// One proxy's sync state over its resource types: NACKED, STALE (sent, not yet ACKed), SYNCED.
function syncState(proxy) {
  const types = Object.values((proxy && proxy.types) || {});
  if (!proxy) return 'DISCONNECTED';
  if (types.some((t) => t.nack)) return 'NACKED';
  if (types.some((t) => t.sent && t.sent !== t.acked)) return 'STALE';
  return 'SYNCED';
}

function edgeRow(e, peer) {
  return `<tr data-peer="${esc(peer)}"><td><a href="#service/${esc(peer)}">${esc(peer)}</a></td>
    <td class="num ${healthClass(e.successRate)}" data-field="successRate">${fmtPct(e.successRate)}</td>
    <td class="num" data-field="rps">${fmtRate(e.rps)}</td>
    <td class="num" data-field="p50">${fmtMs(e.latencyMs.p50)}</td>
    <td class="num" data-field="p95">${fmtMs(e.latencyMs.p95)}</td>
    <td class="num" data-field="p99">${fmtMs(e.latencyMs.p99)}</td></tr>`;
}

// The route figures of the routes API (GET /api/v1/stat/routes), read defensively: an absent API
// or unexpected answer shows "route figures unavailable", never an error.
async function loadRoutes(name, win) {
  const box = $('#svc-routes');
  let list = null;
  try {
    const r = await api('/api/v1/stat/routes?service=' + encodeURIComponent(name) +
        '&window=' + encodeURIComponent(win));
    if (Array.isArray(r.routes)) list = r.routes;
    else if (Array.isArray(r.items)) list = r.items;
  } catch (e) { list = null; }
  if (list === null) {
    box.innerHTML = '<div class="empty" id="routes-unavailable">route figures unavailable</div>';
    return [];
  }
  const num = (v) => (typeof v === 'number' ? v : null);
  const lat = (r, k) => num(r[k + 'Ms']) ?? num(r.latencyMs && r.latencyMs[k]);
  box.innerHTML = list.length ? `<table class="grid" id="svc-route-table"><thead><tr><th>Route</th>
    <th>Kind</th><th class="num">Rule</th><th class="num">Success</th><th class="num">RPS</th>
    <th class="num">P50</th><th class="num">P95</th><th class="num">P99</th></tr></thead><tbody>${
    list.map((r) => `<tr data-route="${esc(r.route)}" data-rule="${esc(r.rule)}"><td>${esc(r.route)}</td>
      <td>${esc(r.kind || '')}</td><td class="num">${esc(r.rule ?? '')}</td>
      <td class="num ${healthClass(num(r.successRate))}" data-field="successRate">${fmtPct(num(r.successRate))}</td>
      <td class="num" data-field="rps">${num(r.rps) === null ? '-' : fmtRate(r.rps)}</td><td class="num">${fmtMs(lat(r, 'p50'))}</td>
      <td class="num">${fmtMs(lat(r, 'p95'))}</td><td class="num">${fmtMs(lat(r, 'p99'))}</td></tr>`).join('')}
    </tbody></table>` : '<div class="empty">No route sent requests to this service in the window.</div>';
  return list;
}

function chartRange() {
  const w = $('#chart-window').value;
  if (w !== 'custom') return {window: w};
  const from = Date.parse($('#chart-from').value), to = Date.parse($('#chart-to').value);
  if (Number.isNaN(from) || Number.isNaN(to) || to <= from) return {window: '1h'};
  return {from: String(from / 1000), to: String(to / 1000)};
}

function loadServiceCharts() {
  const subject = $('#chart-subject').value || ('service=' + encodeURIComponent(serviceState.name));
  return loadCharts($('#svc-charts'), subject, chartRange());
}

async function loadService(name) {
  serviceState.name = name;
  const win = $('#window').value;
  const [stat, workloads, proxies, problems, failed] = await Promise.all([
    api('/api/v1/stat?window=' + encodeURIComponent(win)),
    api('/api/v1/workloads').catch(() => ({items: []})),
    api('/api/v1/proxies').catch(() => ({items: []})),
    loadProblems(),
    api('/api/v1/traces?status=error&limit=10&service=' + encodeURIComponent(name)).catch(() => ({items: []}))]);
  if (serviceState.name !== name) return;  // another page was opened meanwhile
  $('#svc-name').textContent = name;
  const callers = stat.items.filter((e) => e.destination === name);
  const callees = stat.items.filter((e) => e.source === name);
  // The service's inbound figures: its callers' edges summed.
  const requests = callers.reduce((a, e) => a + e.requests, 0);
  const failures = callers.reduce((a, e) => a + e.failures, 0);
  const rps = callers.reduce((a, e) => a + e.rps, 0);
  const sr = requests ? 1 - failures / requests : null;
  $('#svc-summary').innerHTML = `inbound over ${esc(win)}: <b data-field="rps">${fmtRate(rps)}</b> rps ·
      <b class="${healthClass(sr)}" data-field="successRate">${fmtPct(sr)}</b> success ·
      <b data-field="requests">${requests}</b> requests`;
  const empty = (what) => `<tr><td colspan="6" class="empty">No ${what} in the last ${esc(win)}.</td></tr>`;
  $('#svc-callers tbody').innerHTML = callers.map((e) => edgeRow(e, e.source)).join('') || empty('callers');
  $('#svc-callees tbody').innerHTML = callees.map((e) => edgeRow(e, e.destination)).join('') || empty('callees');
  const found = problems.get(name) || [];
  $('#svc-problems').innerHTML = found.length ? '<h3>Configuration problems</h3>' +
      found.map((p) => `<div class="problem">${esc(p)}</div>`).join('') : '';
  const byId = new Map((proxies.items || []).map((p) => [p.id, p]));
  const mine = (workloads.items || []).filter((w) => w.service + '.' + w.namespace === name);
  $('#svc-workloads tbody').innerHTML = mine.map((w) => {
    const p = byId.get(w.id);
    const sync = syncState(p);
    const cls = sync === 'SYNCED' ? 'ok' : sync === 'STALE' ? 'warn' : 'bad';
    const notReady = (p && p.notReady) || (w.ready === false ? 'not ready' : '');
    return `<tr data-workload="${esc(w.id)}"><td>${esc(w.id)}</td><td>${esc((w.labels || {}).version || '')}</td>
      <td>${esc((w.addresses || []).join(', '))}</td><td>${w.connected ? 'yes' : 'no'}</td>
      <td><span class="${cls}" data-field="sync">${sync}</span></td>
      <td class="${notReady ? 'bad' : 'ok'}">${esc(notReady || 'ready')}</td></tr>`;
  }).join('') || '<tr><td colspan="6" class="empty">No workloads registered for this service.</td></tr>';
  $('#svc-failures tbody').innerHTML = (failed.items || []).map((t) => `<tr data-trace="${esc(t.traceId)}">
      <td>${esc(new Date(Number(BigInt(t.startTimeUnixNano) / 1000000n)).toLocaleString())}</td>
      <td>${esc(t.rootService)}: ${esc(t.rootOperation)}</td><td class="num">${fmtNanos(t.durationNanos)}</td>
      <td><a href="#trace/${esc(t.traceId)}">explain</a></td></tr>`).join('') ||
      '<tr><td colspan="4" class="empty">No failed requests kept.</td></tr>';
  const routes = await loadRoutes(name, win);
  if (serviceState.name !== name) return;
  // What the charts can show: the service, each of its edges, each route rule.
  const subjects = [[`service=${encodeURIComponent(name)}`, `${name} (inbound)`]]
      .concat(callers.map((e) => [`edge=${encodeURIComponent(e.source + ',' + name)}`, `${e.source} → ${name}`]))
      .concat(callees.map((e) => [`edge=${encodeURIComponent(name + ',' + e.destination)}`, `${name} → ${e.destination}`]))
      .concat(routes.filter((r) => r.route !== undefined).map((r) =>
        [`route=${encodeURIComponent(r.route)}&rule=${encodeURIComponent(r.rule ?? 0)}`, `route ${r.route} rule ${r.rule ?? 0}`]));
  const select = $('#chart-subject');
  const keep = select.value;
  select.innerHTML = subjects.map(([v, label]) => `<option value="${esc(v)}">${esc(label)}</option>`).join('');
  if (subjects.some(([v]) => v === keep)) select.value = keep;
  await loadServiceCharts();
}
