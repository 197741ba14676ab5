// What the browser tests share: launching Debian's Chromium and navigating in a way that survives
// the host's network interfaces changing underneath. Other tests of the suite create and delete
// podman networks and veth pairs while a browser test runs; Chromium then aborts a navigation in
// flight with net::ERR_NETWORK_CHANGED (and logs it for the page's own fetches), although the
// loopback address the tests use never changed. That error alone is retried; any other fails.
'use strict';
const {chromium} = require('playwright-core');

const NETWORK_CHANGED = /net::ERR_NETWORK_CHANGED/;

// Chromium headless, without a sandbox (the suite runs as root) or a GPU; `extraArgs` appended.
function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'].concat(extraArgs),
  });
}

// page.goto(url), repeated while Chromium reports only that the host's interfaces changed (at
// most `attempts` times, 250 ms apart).
async function gotoSteady(page, url, options = {}, attempts = 5) {
  for (let i = 1; ; i++) {
    try {
      return await page.goto(url, options);
    } catch (e) {
      if (i >= attempts || !NETWORK_CHANGED.test(String(e))) throw e;
      console.log(`retrying ${url}: the host's interfaces changed (attempt ${i} of ${attempts})`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

// A console message that only says an interface changed (the page retries its reads).
function isNetworkChanged(text) {
  return NETWORK_CHANGED.test(text);
}

module.exports = {launch, gotoSteady, isNetworkChanged};
