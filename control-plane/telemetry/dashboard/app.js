// The meshlet dashboard: plain JavaScript over the control plane's API (docs/dashboard.md).
// The API token comes from the URL fragment (#token=..., which browsers never send to a server)
// or the login form, and is kept in this tab's sessionStorage.
'use strict';

const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g,
    (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
const state = {view: 'graph', timer: null, traces: [], services: new Set()};

function token() { return sessionStorage.getItem('meshlet-token') || ''; }

async function api(path) {
  const started = performance.now();
  const r = await fetch(path, {headers: {authorization: 'Bearer ' + token()}});
  if (r.status === 401) { showLogin(); throw new Error('the API refused the token'); }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.message || ('HTTP ' + r.status));
  $('#status').textContent = 'updated ' + new Date().toLocaleTimeString() + ' · ' +
      Math.round(performance.now() - started) + ' ms';
  return body;
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return '-';
  if (ms >= 1000) return (ms / 1000).toFixed(2) + 's';
  if (ms >= 10) return ms.toFixed(0) + 'ms';
  return ms.toFixed(1) + 'ms';
}
const fmtNanos = (n) => fmtMs(Number(n) / 1e6);
const fmtPct = (v) => (v === null || v === undefined) ? '-' : (v * 100).toFixed(2) + '%';
const fmtRate = (v) => v >= 100 ? v.toFixed(0) : v.toFixed(1);
function fmtBytes(v) {
  if (v >= 1048576) return (v / 1048576).toFixed(1) + ' MiB';
  if (v >= 1024) return (v / 1024).toFixed(1) + ' KiB';
  return v.toFixed(0) + ' B';
}
const healthClass = (sr) => sr === null || sr === undefined ? 'muted' :
    sr >= 0.99 ? 'ok' : sr >= 0.95 ? 'warn' : 'bad';

// ------------------------------------------------------------------------------------------
// Service graph

async function loadGraph() {
  const win = $('#window').value;
  const [stat, deps, problems] = await Promise.all([
    api('/api/v1/stat?window=' + encodeURIComponent(win)),
    api('/api/v1/dependencies?window=' + encodeURIComponent(win)).catch(() => ({items: []})),
    loadProblems().catch(() => new Map())]);
  const edges = stat.items.map((e) => ({...e, measured: true}));
  const seen = new Set(edges.map((e) => e.source + '\u0000' + e.destination));
  for (const d of deps.items) {
    // Trace-only edges: services in the collector that report no golden metrics.
    const known = [...seen].some((k) => k.startsWith(d.caller + '\u0000') ||
                                        k.endsWith('\u0000' + d.callee));
    if (!seen.has(d.caller + '\u0000' + d.callee) && !known) {
      edges.push({source: d.caller, destination: d.callee, measured: false, calls: d.calls,
                  p99: d.p99Nanos / 1e6, unverified: (d.unverifiedCalls || 0) >= d.calls});
    }
  }
  for (const e of edges) { state.services.add(e.source); state.services.add(e.destination); }
  drawGraph(edges, problems);
  const rows = stat.items.map((e) => `<tr>
    <td>${esc(e.source)}</td><td>${esc(e.destination)}</td>
    <td class="num ${healthClass(e.successRate)}">${fmtPct(e.successRate)}</td>
    <td class="num">${fmtRate(e.rps)}</td><td class="num">${fmtMs(e.latencyMs.p50)}</td>
    <td class="num">${fmtMs(e.latencyMs.p95)}</td><td class="num">${fmtMs(e.latencyMs.p99)}</td>
    <td class="num">${fmtBytes(e.txBytesPerSecond)}</td><td class="num">${fmtBytes(e.rxBytesPerSecond)}</td>
    <td class="num">${fmtRate(e.connectionsPerSecond)}</td><td class="num">${e.activeRequests}</td></tr>`);
  $('#edges tbody').innerHTML = rows.join('') ||
      `<tr><td colspan="11" class="empty">No traffic reported in the last ${esc(win)}.</td></tr>`;
}

// A service's health: the success rate of the measured edges into it (none: muted).
function inboundHealth(edges, name) {
  let requests = 0, failures = 0;
  for (const e of edges) {
    if (e.measured && e.destination === name) { requests += e.requests; failures += e.failures; }
  }
  return requests ? 1 - failures / requests : null;
}

function drawGraph(edges, problems) {
  const svg = $('#graph');
  const names = [...new Set(edges.flatMap((e) => [e.source, e.destination]))].sort();
  if (names.length === 0) {
    svg.innerHTML = '<text x="20" y="40" fill="#6b7685">No services with traffic yet.</text>';
    return;
  }
  // Layers by longest path from the callers that nobody calls (cycles are cut at a visit).
  const out = new Map(names.map((n) => [n, []]));
  const indeg = new Map(names.map((n) => [n, 0]));
  for (const e of edges) {
    if (e.source === e.destination) continue;
    out.get(e.source).push(e.destination);
    indeg.set(e.destination, indeg.get(e.destination) + 1);
  }
  const layer = new Map();
  const visit = (n, depth, path) => {
    if (path.has(n) || (layer.get(n) ?? -1) >= depth) return;
    layer.set(n, depth);
    path.add(n);
    for (const m of out.get(n)) visit(m, depth + 1, path);
    path.delete(n);
  };
  const roots = names.filter((n) => indeg.get(n) === 0);
  for (const r of (roots.length ? roots : [names[0]])) visit(r, 0, new Set());
  for (const n of names) if (!layer.has(n)) visit(n, 0, new Set());
  const columns = [];
  for (const n of names) (columns[layer.get(n)] ||= []).push(n);
  const width = Math.max(svg.clientWidth || 900, 300);
  const colW = Math.max(220, width / Math.max(columns.length, 1));
  const rowH = 110, nodeW = 160, nodeH = 36;
  const pos = new Map();
  let maxRows = 1;
  columns.forEach((col, i) => {
    maxRows = Math.max(maxRows, col.length);
    col.forEach((n, j) => pos.set(n, {x: 30 + i * colW, y: 40 + j * rowH}));
  });
  svg.setAttribute('height', Math.max(260, 80 + maxRows * rowH));
  let parts = [`<defs>${['ok', 'warn', 'bad', 'muted'].map((c) =>
      `<marker id="arrow-${c}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7"
        orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" class="fill-${c}"/></marker>`).join('')}</defs>`];
  const colors = {ok: '#2e9d57', warn: '#d69200', bad: '#d3342f', muted: '#9aa6b6'};
  for (const e of edges) {
    const a = pos.get(e.source), b = pos.get(e.destination);
    const cls = e.measured ? healthClass(e.successRate) : 'muted';
    const x1 = a.x + nodeW, y1 = a.y + nodeH / 2;
    const x2 = b.x, y2 = b.y + nodeH / 2;
    const back = x2 <= x1;
    const d = back ? `M${a.x + nodeW / 2},${a.y + nodeH} C${a.x + nodeW / 2},${a.y + nodeH + 60} ${b.x + nodeW / 2},${b.y + nodeH + 60} ${b.x + nodeW / 2},${b.y + nodeH}`
                   : `M${x1},${y1} C${x1 + 50},${y1} ${x2 - 50},${y2} ${x2},${y2}`;
    const label = e.measured
        ? `${fmtRate(e.rps)} rps · ${fmtPct(e.successRate)} · p99 ${fmtMs(e.latencyMs.p99)}`
        : `${e.calls} traced${e.unverified ? ' (unverified)' : ''} · p99 ${fmtMs(e.p99)}`;
    const lx = back ? (a.x + b.x + nodeW) / 2 : (x1 + x2) / 2;
    const ly = back ? Math.max(a.y, b.y) + nodeH + 52 : (y1 + y2) / 2 - 6;
    parts.push(`<g class="edge-g" data-source="${esc(e.source)}" data-destination="${esc(e.destination)}">
      <path class="edge ${e.measured ? '' : 'trace-only'}" d="${d}" stroke="${colors[cls]}"
        marker-end="url(#arrow-${cls})"><title>${esc(e.source)} → ${esc(e.destination)}${e.unverified
          ? ': only from spans whose senders were not authenticated' : ''}</title></path>
      <text class="label" x="${lx}" y="${ly}" text-anchor="middle">${esc(label)}</text></g>`);
  }
  for (const n of names) {
    const p = pos.get(n);
    const sr = inboundHealth(edges, n);
    const found = (problems && problems.get(n)) || [];
    const health = found.length && healthClass(sr) !== 'bad' ? 'warn' : healthClass(sr);
    parts.push(`<g class="node health-${health}" data-service="${esc(n)}" data-health="${health}"
        data-problems="${found.length}" transform="translate(${p.x},${p.y})">
      <rect width="${nodeW}" height="${nodeH}" rx="6"/>
      <text x="${nodeW / 2}" y="${nodeH / 2 + 5}" text-anchor="middle">${esc(n.length > 22 ? n.slice(0, 21) + '…' : n)}</text>
      <title>${esc(n)}: inbound success ${fmtPct(sr)}${found.length ? '\n' + found.map(esc).join('\n') : ''}</title>
      ${found.length ? `<g class="problem-badge"><circle cx="${nodeW}" cy="0" r="9"/>
        <text x="${nodeW}" y="4" text-anchor="middle">${found.length}</text></g>` : ''}</g>`);
  }
  svg.innerHTML = parts.join('');
  for (const [c, color] of Object.entries(colors)) {
    svg.querySelectorAll('.fill-' + c).forEach((p) => p.setAttribute('fill', color));
  }
  // A service opens its page; an edge, its destination's traces.
  const showTraces = (service) => {
    $('#trace-form').service.value = service;
    state.traces = [];
    location.hash = '#traces';
  };
  svg.querySelectorAll('.node').forEach((g) => g.addEventListener('click', () => {
    location.hash = '#service/' + g.dataset.service;
  }));
  svg.querySelectorAll('.edge-g').forEach((g) =>
    g.addEventListener('click', () => showTraces(g.dataset.destination)));
}

// ------------------------------------------------------------------------------------------
// Traces

async function searchTraces(ev) {
  if (ev) ev.preventDefault();
  const f = $('#trace-form');
  const q = new URLSearchParams();
  for (const name of ['service', 'operation', 'minDuration', 'status', 'limit']) {
    const v = f[name].value.trim();
    if (v && !(name === 'status' && v === 'any')) q.set(name, v);
  }
  if (f.since.value) q.set('start', String(BigInt(Date.now() - Number(f.since.value) * 1000) * 1000000n));
  $('#trace-error').hidden = true;
  $('#trace-detail').hidden = true;
  $('#trace-list').hidden = false;
  try {
    const list = await api('/api/v1/traces?' + q.toString());
    state.traces = list.items;
    renderTraceList();
  } catch (e) {
    $('#trace-error').textContent = e.message;
    $('#trace-error').hidden = false;
  }
}

function renderTraceList() {
  const items = state.traces;
  const longest = Math.max(1, ...items.map((t) => Number(t.durationNanos)));
  for (const t of items) for (const s of t.services) state.services.add(s);
  $('#services').innerHTML = [...state.services].sort().map((s) => `<option value="${esc(s)}">`).join('');
  $('#trace-list tbody').innerHTML = items.map((t) => `
    <tr class="clickable" data-trace="${esc(t.traceId)}">
      <td>${esc(new Date(Number(BigInt(t.startTimeUnixNano) / 1000000n)).toLocaleString())}</td>
      <td><b>${esc(t.rootService)}</b>: ${esc(t.rootOperation)}
        ${t.error ? '<span class="badge err">error</span>' : ''}
        ${t.unverifiedSpans ? `<span class="badge unverified" title="spans whose senders were not
          authenticated: their service is what the sender said">${t.unverifiedSpans === t.spanCount
          ? 'unverified' : `${t.unverifiedSpans} unverified`}</span>` : ''}</td>
      <td>${t.services.map((s) => `<span class="badge svc">${esc(s)}</span>`).join('')}</td>
      <td class="num">${t.spanCount}</td>
      <td class="num">${fmtNanos(t.durationNanos)}<span class="durbar"
        style="width:${Math.max(2, 80 * Number(t.durationNanos) / longest)}px"></span></td>
      <td class="mono">${esc(t.traceId.slice(0, 12))}…</td></tr>`).join('') ||
      '<tr><td colspan="6" class="empty">No traces match.</td></tr>';
  document.querySelectorAll('#trace-list tr[data-trace]').forEach((tr) =>
    tr.addEventListener('click', () => { location.hash = '#trace/' + tr.dataset.trace; }));
}

const serviceColors = ['#4c7ee8', '#20a387', '#a05ad8', '#e07b39', '#d14f8a', '#3aa0c8', '#7a8b2e'];
function colorOf(service, services) {
  return serviceColors[services.indexOf(service) % serviceColors.length];
}

// Why the request ended as it did: the collector's explanation of the trace (GET
// /api/v1/traces/{id}/explain, what `meshctl explain` prints): the verdict, then per sidecar hop
// the route and policy objects that decided it, cluster, timeouts, attempts, authorization and
// the error the proxy made. Traces without sidecar spans have none (the panel stays hidden).
async function loadExplanation(id) {
  const panel = $('#explanation');
  panel.hidden = true;
  let e;
  try {
    e = await api('/api/v1/traces/' + encodeURIComponent(id) + '/explain');
  } catch (err) {
    return;
  }
  const row = (label, value) => value ? `<tr><td>${esc(label)}</td><td>${esc(value)}</td></tr>` : '';
  const hops = e.hops.map((h, i) => {
    const route = h.routePolicy ? h.routePolicy + (h.routeRule !== undefined ? ' rule ' + h.routeRule : '') +
        (h.routeMatch !== undefined && h.routeMatch !== '-1' ? ' match ' + h.routeMatch : '') + (h.route ? ` [${h.route}]` : '') : h.route;
    // Each timeout with the policy object that set it, or the caller's deadline.
    const timeouts = [h.requestTimeoutMs && `request ${h.requestTimeoutMs}ms` +
        (h.timeoutOrigin === 'caller' ? " (the caller's deadline)" : h.timeoutPolicy ? ' from ' + h.timeoutPolicy : ''),
      h.perTryTimeoutMs && `per try ${h.perTryTimeoutMs}ms` +
        (h.perTryTimeoutPolicy ? ' from ' + h.perTryTimeoutPolicy : '')].filter(Boolean).join(', ');
    const attempts = h.attempts.map((a, n) => row(`attempt ${n + 1}`, `${a.endpoint || '-'} ${a.outcome || '?'}` +
        (a.durationMs !== undefined ? ` ${a.durationMs}ms` : '') + (a.next ? ` → ${a.next}` : ''))).join('');
    const authz = (h.authz || h.authzPolicy) ? (h.authz || 'decided') + (h.authzPolicy ? ' by ' + h.authzPolicy : '') +
        (h.peer ? ' for ' + h.peer : '') : '';
    const error = h.errorReason ? (h.responseFlags ? h.responseFlags + ': ' : '') + h.errorReason : '';
    return `<div class="hop${h.failedFirst ? ' failed-first' : ''}" data-hop="${i}" data-failed-first="${h.failedFirst ? 1 : 0}"
        style="margin-left:${h.depth * 18}px">
      <div class="hop-head">${i + 1}. ${esc(h.service)} ${esc(h.direction || '')} sidecar${h.node ? ' (' + esc(h.node) + ')' : ''}
        · ${esc(h.operation)} → ${esc(h.status || 'no response')}${h.failedFirst ? ' · failed first' : ''}${
        i === e.deadlineFrom ? ' · its timeout set the deadline' : ''}</div>
      <table>${row('route', route)}${row('cluster', h.cluster ? h.cluster + (h.subset ? ` (subset ${h.subset})` : '') : '')}
        ${row('policy', h.trafficPolicy)}${row('timeouts', timeouts)}
        ${row('limit', h.rateLimitPolicy && 'rate limit of ' + h.rateLimitPolicy)}
        ${row('shed', h.shed)}
        ${row('refusal', h.destinationPolicy && `unknown destinations refused by ${h.destinationPolicy} (outboundTrafficPolicy REGISTRY_ONLY)`)}
        ${attempts}${row('authz', authz)}${row('error', error)}</table></div>`;
  }).join('');
  const note = e.unsampled ? '<div class="empty">Not sampled: only the sidecars that failed the request, ' +
      "or passed a proxy's error on, exported their spans.</div>" : '';
  panel.innerHTML = `<div class="verdict${e.firstFailure >= 0 ? ' failed' : ''}">${esc(e.verdict)}</div>${note}${hops}`;
  panel.hidden = false;
}

async function openTrace(id) {
  $('#trace-list').hidden = true;
  $('#trace-detail').hidden = false;
  $('#waterfall').innerHTML = '<div class="empty">Loading…</div>';
  loadExplanation(id);
  let trace;
  try {
    trace = await api('/api/v1/traces/' + encodeURIComponent(id));
  } catch (e) {
    $('#waterfall').innerHTML = `<div class="error">${esc(e.message)}</div>`;
    return;
  }
  const spans = trace.spans;
  const byId = new Map(spans.map((s) => [s.spanId, {...s, children: []}]));
  const roots = [];
  for (const s of byId.values()) {
    const parent = byId.get(s.parentSpanId);
    (parent ? parent.children : roots).push(s);
  }
  const start = Math.min(...spans.map((s) => Number(BigInt(s.startTimeUnixNano) / 1000n)));
  const end = Math.max(...spans.map((s) =>
      Number(BigInt(s.startTimeUnixNano) / 1000n) + Number(s.durationNanos) / 1000));
  const total = Math.max(1, end - start);
  const services = [...new Set(spans.map((s) => s.service))];
  // A span's source is verified when the collector authenticated its sender (OTLP/gRPC on the
  // discovery port): it then carries the sender's SPIFFE id.
  const verified = (s) => Boolean(s.attributes['meshlet.source.identity']);
  const unverified = spans.filter((s) => !verified(s)).length;
  $('#trace-title').innerHTML = `Trace <span class="mono">${esc(trace.traceId)}</span> ·
      ${spans.length} spans · ${services.length} services · ${fmtMs(total / 1000)}` +
      (unverified ? ` · <span class="badge unverified">${unverified} from unverified senders</span>` : '');
  const rows = [];
  const walk = (s, depth) => {
    const offset = Number(BigInt(s.startTimeUnixNano) / 1000n) - start;
    const attempt = Number(s.attributes['meshlet.retry_attempt'] || 0);
    const failed = s.status && s.status.code === 'ERROR';
    const badges = (attempt > 1 ? `<span class="badge retry">retry ${attempt - 1}</span>` :
                    attempt === 1 && failed ? '<span class="badge svc">attempt 1</span>' : '') +
        (failed ? `<span class="badge err">${esc(s.status.message || 'error')}</span>` : '') +
        (verified(s) ? '' : `<span class="badge unverified" title="the sender was not authenticated
          (received by ${esc(s.attributes['meshlet.source.unverified'] || 'an older collector')}): its
          service is what it said">unverified source</span>`);
    const attrs = Object.entries(s.attributes).sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join('');
    rows.push(`<div class="span-row" data-span="${esc(s.spanId)}" data-depth="${depth}"
        data-attempt="${attempt}" data-error="${failed ? 1 : 0}" data-verified="${verified(s) ? 1 : 0}">
      <div class="span-name" style="padding-left:${8 + depth * 14}px">
        <span class="badge svc" style="background:${colorOf(s.service, services)}22;color:${colorOf(s.service, services)}">${esc(s.service)}</span>
        ${esc(s.name)}<span class="kind">${esc(s.kind)}</span> ${badges}</div>
      <div class="span-track"><div class="span-bar ${failed ? 'error' : ''}" style="left:${100 * offset / total}%;
        width:${100 * Number(s.durationNanos) / 1000 / total}%;background:${colorOf(s.service, services)}"></div></div>
      <div class="span-dur">${fmtNanos(s.durationNanos)}</div>
      <div class="span-attrs" hidden><table>
        <tr><td>span</td><td class="mono">${esc(s.spanId)} (parent ${esc(s.parentSpanId || '-')})</td></tr>
        <tr><td>start</td><td>+${fmtMs(offset / 1000)} (${esc(s.start)})</td></tr>${attrs}</table></div></div>`);
    s.children.sort((a, b) => (BigInt(a.startTimeUnixNano) < BigInt(b.startTimeUnixNano) ? -1 : 1));
    for (const c of s.children) walk(c, depth + 1);
  };
  for (const r of roots) walk(r, 0);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) =>
      `<span style="left:${f * 100}%">${fmtMs(f * total / 1000)}</span>`).join('');
  $('#waterfall').innerHTML = `<div class="axis"><div class="span-name">service · span</div>
      <div class="ticks">${ticks}</div><div class="span-dur">duration</div></div>` + rows.join('');
  document.querySelectorAll('.span-row').forEach((row) => row.addEventListener('click', (ev) => {
    if (ev.target.closest('.span-attrs')) return;
    const attrs = row.querySelector('.span-attrs');
    attrs.hidden = !attrs.hidden;
  }));
}

// ------------------------------------------------------------------------------------------
// Proxies (what `meshctl proxy-status` shows)

function age(rfc3339) {
  const t = Date.parse(rfc3339);
  if (Number.isNaN(t)) return '-';
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  return s < 120 ? s + 's' : s < 7200 ? Math.round(s / 60) + 'm' :
      s < 172800 ? Math.round(s / 3600) + 'h' : Math.round(s / 86400) + 'd';
}

function shortType(url) {
  for (const [k, v] of [['Listener', 'LDS'], ['RouteConfiguration', 'RDS'], ['ClusterLoadAssignment', 'EDS'],
                        ['Cluster', 'CDS']]) if (url.endsWith('.' + k) || url.endsWith('/' + k)) return v;
  return url;
}

async function loadProxies() {
  let list;
  try {
    list = await api('/api/v1/proxies');
  } catch (e) {
    $('#proxies tbody').innerHTML = `<tr><td colspan="8" class="error">${esc(e.message)}</td></tr>`;
    return;
  }
  const nacks = [];
  $('#proxies tbody').innerHTML = list.items.map((p) => {
    const types = {};
    for (const [url, t] of Object.entries(p.types || {})) {
      const short = shortType(url);
      if (t.nack) {
        types[short] = '<span class="badge err">NACKED</span>';
        nacks.push(`${p.id} ${short}: ${t.nack}`);
      } else if (!t.sent) {
        types[short] = esc(t.state || '-');
      } else {
        const synced = t.sent === t.acked;
        types[short] = `<span class="${synced ? 'ok' : 'warn'}">${esc(t.state || (synced ? 'SYNCED' : 'STALE'))}</span>
            <span class="mono muted">${esc((synced ? t.acked : t.sent).slice(0, 8))}</span>`;
      }
    }
    return `<tr><td>${esc(p.id)}</td><td>${esc(p.service)}</td><td>${esc(p.namespace)}</td>
      <td title="${esc(p.connectedSince)}">${esc(age(p.connectedSince))}</td>${['LDS', 'RDS', 'CDS', 'EDS'].map((t) =>
        `<td>${types[t] || '-'}</td>`).join('')}</tr>`;
  }).join('') || '<tr><td colspan="8" class="empty">No sidecars connected.</td></tr>';
  $('#nacks').innerHTML = nacks.length ? '<h3>NACK errors</h3>' +
      nacks.map((n) => `<div class="error">${esc(n)}</div>`).join('') : '';
}

// ------------------------------------------------------------------------------------------
// Navigation

function showLogin() {
  $('#login').hidden = false;
  document.querySelectorAll('.view').forEach((v) => { v.hidden = true; });
}

function route() {
  const hash = location.hash.replace(/^#/, '');
  const m = hash.match(/(?:^|&)token=([^&]+)/);
  if (m) {
    // "#token=T" or "#trace/ID&token=T": keep the token, show the rest of the fragment.
    sessionStorage.setItem('meshlet-token', decodeURIComponent(m[1]));
    const rest = hash.replace(/(?:^|&)token=[^&]+/, '').replace(/^&/, '');
    history.replaceState(null, '', location.pathname + '#' + (rest || 'graph'));
    return route();
  }
  if (!token()) return showLogin();
  $('#login').hidden = true;
  clearInterval(state.timer);
  const [view, arg] = hash.split('/');
  const name = ['graph', 'traces', 'trace', 'proxies', 'service', 'live'].includes(view) ? view : 'graph';
  const section = name === 'trace' ? 'traces' : name;
  state.view = name;
  document.querySelectorAll('.view').forEach((v) => { v.hidden = v.id !== 'view-' + section; });
  document.querySelectorAll('nav a').forEach((a) =>
    a.classList.toggle('active', a.dataset.view === section));
  const fail = (e) => { $('#status').textContent = e.message; };
  if (name === 'graph') {
    loadGraph().catch(fail);
    state.timer = setInterval(() => loadGraph().catch(fail), 5000);
  } else if (name === 'traces') {
    $('#trace-detail').hidden = true;
    $('#trace-list').hidden = false;
    if (!state.traces.length) searchTraces();
    else renderTraceList();
  } else if (name === 'trace') {
    openTrace(arg);
  } else if (name === 'service') {
    const service = decodeURIComponent(arg || '');
    if (serviceState.name !== service) $('#chart-subject').innerHTML = '';
    loadService(service).catch(fail);
    state.timer = setInterval(() => loadService(service).catch(fail), 10000);
  } else if (name === 'live') {
    liveTap.show();  // tap.js
  } else {
    loadProxies();
    state.timer = setInterval(loadProxies, 5000);
  }
}

$('#login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sessionStorage.setItem('meshlet-token', $('#token').value.trim());
  route();
});
$('#trace-form').addEventListener('submit', searchTraces);
$('#back').addEventListener('click', () => { location.hash = '#traces'; });
$('#window').addEventListener('change', () => {
  if (state.view === 'graph' || state.view === 'service') route();
});
$('#chart-window').addEventListener('change', () => {
  $('#chart-custom').hidden = $('#chart-window').value !== 'custom';
  if ($('#chart-window').value !== 'custom') loadServiceCharts();
});
$('#chart-apply').addEventListener('click', () => loadServiceCharts());
$('#chart-subject').addEventListener('change', () => loadServiceCharts());
window.addEventListener('hashchange', route);
route();
