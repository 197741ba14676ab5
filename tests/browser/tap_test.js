// Drives the dashboard's Live tab (docs/dashboard.md "Live") in Debian's headless Chromium with
// playwright-core, while the test sends frontend -> backend traffic. Usage:
//   node tap_test.js URL TOKEN SCREENSHOT_DIR SPKI CALLER
// CALLER: the SPIFFE id the inbound rows must name. Prints "PASS live" and exits 0, or what went
// wrong and exits 1.
'use strict';
const {chromium} = require('playwright-core');
const assert = require('assert');
const path = require('path');

const [url, token, shots, spki, caller] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
      `--ignore-certificate-errors-spki-list=${spki}`],
  });
  const errors = [];
  try {
    const page = await browser.newPage({viewport: {width: 1500, height: 800}});
    page.on('pageerror', (e) => errors.push(String(e)));
    const foreign = [];
    page.on('request', (r) => { if (!r.url().startsWith(url)) foreign.push(r.url()); });

    await page.goto(`${url}/dashboard/#live&token=${encodeURIComponent(token)}`);
    await page.waitForSelector('#view-live:not([hidden])');
    assert.ok(await page.$('nav a.active[data-view="live"]'), 'the Live tab is the active one');
    // The targets come from the connected proxies: the service and each workload.
    await page.waitForSelector('#live-target option[value="service=default%2Fbackend"]',
        {state: 'attached'});
    await page.selectOption('#live-target', 'service=default%2Fbackend');
    await page.fill('#live-rate', '20');
    await page.fill('#live-duration', '20s');
    await page.click('#live-start');
    await page.waitForSelector('#live-table tbody tr.live-row', {timeout: 20000});
    await page.waitForFunction(
        () => document.querySelectorAll('#live-table tbody tr.live-row').length >= 5,
        null, {timeout: 20000});
    const state = await page.textContent('#live-state');
    assert.match(state, /tapping service default\/backend at 20\/s for 20s: backend-0/, state);
    const cells = await page.$$eval('#live-table tbody tr.live-row:first-child td',
        (tds) => tds.map((td) => td.innerText.trim()));
    assert.strictEqual(cells[1], 'inbound', cells.join(' | '));
    assert.strictEqual(cells[2], 'backend-0', cells.join(' | '));
    assert.strictEqual(cells[3], 'GET', cells.join(' | '));
    assert.strictEqual(cells[4], 'backend:9080', cells.join(' | '));
    assert.match(cells[5], /^\/hello\/\d+\?q=1$/, cells.join(' | '));
    assert.strictEqual(cells[6], '200', cells.join(' | '));
    assert.match(cells[7], /^\d+\.\d\d ms$/, cells.join(' | '));
    assert.strictEqual(cells[8], caller, cells.join(' | '));
    await page.screenshot({path: path.join(shots, 'dashboard-live.png'), fullPage: true});

    // Stop: the stream ends and no row comes after.
    await page.click('#live-stop');
    await page.waitForFunction(() => document.querySelector('#live-start').disabled === false);
    assert.match(await page.textContent('#live-state'), /^stopped/);
    const rows = await page.$$eval('#live-table tbody tr.live-row', (r) => r.length);
    assert.ok(rows <= 200, `rows bounded: ${rows}`);
    await page.waitForTimeout(1500);
    assert.strictEqual(await page.$$eval('#live-table tbody tr.live-row', (r) => r.length), rows,
        'no row after Stop');

    assert.deepStrictEqual(foreign, [], 'requests to other origins');
    assert.deepStrictEqual(errors, [], 'page errors');
    console.log(`PASS live (${rows} rows)`);
  } catch (e) {
    console.log(String(e.stack || e));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
