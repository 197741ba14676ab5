// Drives the control plane's dashboard in Debian's headless Chromium with playwright-core
// (docs/dashboard.md). Usage:
//   node dashboard_test.js URL TOKEN TRACE_ID SCREENSHOT_DIR SPKI TIMEOUT_TRACE_ID SHED_TRACE_ID
// TIMEOUT_TRACE_ID: a trace whose outbound hop timed out; SHED_TRACE_ID: one whose outbound hop
// shed the request (their explanations are checked).
// SPKI: the base64 SHA-256 of the HTTPS certificate's public key, accepted as an operator's browser
// that trusts the mesh CA accepts it. Prints "PASS ..." and exits 0, or what went wrong and exits 1.
'use strict';
const {launch, gotoSteady, isNetworkChanged} = require('./browser_util');
const assert = require('assert');
const path = require('path');

const [url, token, traceId, shots, spki, timeoutTraceId, shedTraceId] = process.argv.slice(2);

(async () => {
  const browser = await launch(spki ? [`--ignore-certificate-errors-spki-list=${spki}`] : []);
  const errors = [];
  try {
    const page = await browser.newPage({viewport: {width: 1400, height: 900}});
    page.on('pageerror', (e) => errors.push(String(e)));
    // A fetch aborted because the host's network interfaces changed (pods of other tests start
    // and stop beside this one) is the machine's doing, not the page's: the page polls again.
    page.on('console', (m) => {
      if (m.type() === 'error' && !isNetworkChanged(m.text())) errors.push(m.text());
    });
    // Anything not from the control plane (a CDN, a font service) fails the test.
    const foreign = [];
    page.on('request', (r) => { if (!r.url().startsWith(url)) foreign.push(r.url()); });

    // The link `meshctl dashboard` prints: the token travels in the fragment.
    await gotoSteady(page, `${url}/dashboard/#token=${encodeURIComponent(token)}`);
    // The traffic was sent once before the browser started, which on a loaded machine can take
    // longer than the default 1m window: the 10m window keeps it in the graph (choosing it
    // redraws the graph), and the wait is for the node, however long the page takes to load.
    await page.waitForSelector('#window');
    await page.selectOption('#window', '10m');
    // Service graph: the three services and golden metrics on the measured edges.
    await page.waitForSelector('#graph .node[data-service="db"]', {timeout: 90000});
    for (const s of ['frontend', 'backend', 'db', 'app']) {
      assert.ok(await page.$(`#graph .node[data-service="${s}"]`), `graph node ${s}`);
    }
    const label = await page.textContent(
        '#graph .edge-g[data-source="backend"][data-destination="db"] .label');
    assert.match(label, /rps · 100\.00% · p99 /, label);
    // The edge table: a row per measured edge, not "No traffic reported".
    await page.waitForSelector('#edges tbody tr td');
    const edgeRows = await page.$$eval('#edges tbody tr', (rows) => rows.map((r) => r.innerText));
    assert.strictEqual(await page.$('#edges tbody td.empty'), null, edgeRows.join('\n'));
    assert.strictEqual(edgeRows.length, 3, edgeRows.join('\n'));
    for (const edge of [/frontend\s+backend\s+100\.00%/, /backend\s+db\s+100\.00%/,
      /db\s+app\s+100\.00%/]) {
      assert.ok(edgeRows.some((r) => edge.test(r)), `${edge}:\n${edgeRows.join('\n')}`);
    }
    await page.screenshot({path: path.join(shots, 'dashboard-graph.png'), fullPage: true});

    // An edge opens its destination's traces.
    await page.click('#graph .edge-g[data-source="backend"][data-destination="db"] .label');
    // The spans may reach the trace store after the golden metrics on a loaded machine.
    await page.waitForSelector(`#trace-list tr[data-trace="${traceId}"]`, {timeout: 90000});
    assert.strictEqual(await page.inputValue('#trace-form input[name=service]'), 'db');

    // Trace search with filters: service db, at least 0 ms, errors only (the failed attempt).
    await page.fill('#trace-form input[name=service]', 'db');
    await page.fill('#trace-form input[name=minDuration]', '0ms');
    await page.selectOption('#trace-form select[name=status]', 'error');
    await page.selectOption('#trace-form select[name=since]', '900');
    await page.click('#search');
    // The spans may reach the trace store after the golden metrics on a loaded machine.
    await page.waitForSelector(`#trace-list tr[data-trace="${traceId}"]`, {timeout: 90000});
    assert.strictEqual(await page.$$eval('#trace-list tr[data-trace]', (r) => r.length), 1);
    // A filter that matches nothing says so.
    await page.fill('#trace-form input[name=minDuration]', '1h');
    await page.click('#search');
    await page.waitForSelector('#trace-list td.empty');
    await page.fill('#trace-form input[name=minDuration]', '0ms');
    await page.click('#search');
    await page.click(`#trace-list tr[data-trace="${traceId}"]`);

    // The waterfall: 5 spans (one per request at frontend and backend, db's two attempts under
    // its server span), nested by parent, the retry attempt visible with its 503.
    await page.waitForSelector('.span-row');
    const rows = await page.$$eval('.span-row', (rs) => rs.map((r) => ({
      depth: Number(r.dataset.depth), attempt: Number(r.dataset.attempt),
      error: r.dataset.error === '1', text: r.querySelector('.span-name').innerText})));
    assert.strictEqual(rows.length, 5, JSON.stringify(rows));
    assert.deepStrictEqual(rows.map((r) => r.depth), [0, 1, 2, 3, 3]);
    assert.match(rows[0].text, /frontend/);
    assert.match(rows[1].text, /backend/);
    assert.match(rows[2].text, /db/);
    assert.deepStrictEqual(rows.slice(3).map((r) => [r.attempt, r.error]), [[1, true], [2, false]]);
    assert.match(rows[4].text, /retry 1/);
    assert.match(await page.textContent('#trace-title'), /5 spans · 3 services/);
    // Span attributes open on a click.
    const spanRows = page.locator('.span-row');
    await spanRows.nth(3).locator('.span-name').click();
    const attrs = await spanRows.nth(3).locator('.span-attrs').innerText();
    assert.match(attrs, /http\.response\.status_code\s+503/);
    assert.match(attrs, /meshlet\.retry_attempt\s+1/);
    await spanRows.nth(4).locator('.span-name').click();
    // Its explanation: nothing failed; db's sidecar needed a second attempt.
    await page.waitForSelector('#explanation:not([hidden]) .verdict');
    assert.match(await page.textContent('#explanation .verdict'),
        /^200: no hop failed \(db\S*'s inbound sidecar needed 2 attempts\)$/);
    assert.strictEqual(await page.$$eval('#explanation .hop', (h) => h.length), 3);
    await page.screenshot({path: path.join(shots, 'dashboard-trace.png'), fullPage: true});

    // A timed-out request: the verdict names the hop, the reason and the policy objects, and the
    // hop that failed first is marked with its attempts.
    await gotoSteady(page, `${url}/dashboard/#trace/${timeoutTraceId}`);
    await page.waitForSelector('#explanation:not([hidden]) .verdict');
    assert.strictEqual(await page.textContent('#explanation .verdict'),
        '504 at productpage.default\'s outbound sidecar: request timeout 300ms from ' +
        'TrafficPolicy/default/reviews (route HTTPRoute/default/reviews-split rule 0) expired ' +
        'after 2 attempts');
    const hops = await page.$$eval('#explanation .hop', (hs) => hs.map((h) => ({
      failedFirst: h.dataset.failedFirst === '1', text: h.innerText})));
    assert.strictEqual(hops.length, 2, JSON.stringify(hops));
    assert.deepStrictEqual(hops.map((h) => h.failedFirst), [true, false]);
    assert.match(hops[0].text, /route\s+HTTPRoute\/default\/reviews-split rule 0 match 0/);
    assert.match(hops[0].text, /policy\s+TrafficPolicy\/default\/reviews\n/);
    assert.match(hops[0].text, /timeouts\s+request 300ms from TrafficPolicy\/default\/reviews/);
    assert.match(hops[0].text, /attempt 2\s+10\.0\.0\.6:15006 timeout 100ms → no-retry\(deadline\)/);
    assert.match(hops[0].text, /error\s+UT: upstream request timeout/);
    assert.match(hops[1].text, /authz\s+allow by AuthorizationPolicy\/default\/reviews-callers/);
    await page.screenshot({path: path.join(shots, 'dashboard-explain.png'), fullPage: true});

    // A shed request: the verdict and the hop name the limit and its setting.
    await gotoSteady(page, `${url}/dashboard/#trace/${shedTraceId}`);
    await page.waitForFunction(() => /shed/.test(
        (document.querySelector('#explanation:not([hidden]) .verdict') || {}).textContent || ''));
    assert.strictEqual(await page.textContent('#explanation .verdict'),
        '503 at productpage.default\'s outbound sidecar: the sidecar shed the request: more than ' +
        '20 requests in flight on its worker (its share of --overload-max-active-requests 40)');
    assert.match(await page.textContent('#explanation .hop'),
        /shed\s*more than 20 requests in flight on its worker/);

    // Proxies: the three sidecars, connected over xDS.
    await page.click('nav a[data-view="proxies"]');
    await page.waitForSelector('#proxies tbody td');
    const proxyIds = await page.$$eval('#proxies tbody tr', (rows) => rows.map(
        (r) => r.querySelector('td').innerText));
    assert.deepStrictEqual(proxyIds.sort(), ['backend-0', 'db-0', 'frontend-0']);
    await page.screenshot({path: path.join(shots, 'dashboard-proxies.png')});

    assert.deepStrictEqual(foreign, [], 'requests left the control plane');
    assert.deepStrictEqual(errors, [], 'errors in the page');
    console.log('PASS dashboard: graph, trace search, waterfall with the retry, explanations, proxies');
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error('FAIL', e && e.stack || e);
  process.exit(1);
});
