// Drives headless Chromium through the reviewer dashboard at 800 and 390 px wide: on the
// pending list, the history and a review's page every column (Expires, Approvals, Decided by)
// is on screen and nothing scrolls sideways; screenshots of each. Then, with the pending list
// open, prints WAITING, and waits for a new held review to appear on it by itself (live
// updates), printing LIVE <id>. Run by tests/dashboard_views.rs. Environment: DASHBOARD_URL,
// REVIEWER_TOKEN, REVIEW_ID (a decided review), SCREENSHOTS (a directory), CHROMIUM.
import { chromium } from "playwright-core";

const url = process.env.DASHBOARD_URL;
const shots = process.env.SCREENSHOTS;
const reviewId = process.env.REVIEW_ID;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

// Fails unless the page has no horizontal overflow.
async function noSidewaysScroll(page, what) {
  const { scroll, inner } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    inner: window.innerWidth,
  }));
  if (scroll > inner) throw new Error(`${what}: the page is ${scroll} px wide in a ${inner} px window`);
}

// Fails unless every element matching `selector` is visible and within the viewport's width.
async function onScreen(page, selector, width, what) {
  const cells = page.locator(selector);
  const n = await cells.count();
  if (n === 0) throw new Error(`${what}: nothing matches ${selector}`);
  for (let i = 0; i < n; i++) {
    const cell = cells.nth(i);
    if (!(await cell.isVisible())) throw new Error(`${what}: ${selector} #${i} is hidden`);
    const box = await cell.boundingBox();
    if (!box || box.x < 0 || box.x + box.width > width + 0.5 || box.width < 1) {
      throw new Error(`${what}: ${selector} #${i} is outside the window: ${JSON.stringify(box)}`);
    }
  }
}

try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`console: ${m.text()}`));
  await page.goto(`${url}/ui/login`);
  await page.fill("#token", process.env.REVIEWER_TOKEN);
  await page.click("#signin");
  await page.waitForURL(`${url}/ui`, { timeout: 10000 });

  for (const width of [800, 390]) {
    await page.setViewportSize({ width, height: 900 });
    await page.goto(`${url}/ui`);
    await page.locator("tr.review-row").first().waitFor();
    await noSidewaysScroll(page, `pending at ${width}`);
    for (const col of ["td.expires", "td.approvals", "td.arguments", "td.request"]) {
      await onScreen(page, `tr.review-row ${col}`, width, `pending at ${width}`);
    }
    await page.screenshot({ path: `${shots}/dashboard-pending-${width}.png`, fullPage: true });

    await page.goto(`${url}/ui/history`);
    await page.locator(`tr.review-row[data-id="${reviewId}"]`).waitFor();
    await noSidewaysScroll(page, `history at ${width}`);
    for (const col of ["td.expires", "td.approvals", "td.decided"]) {
      await onScreen(page, `tr.review-row ${col}`, width, `history at ${width}`);
    }
    const decided = await page.locator(`tr.review-row[data-id="${reviewId}"] td.decided`).innerText();
    if (!decided.includes("rejected by dana")) throw new Error(`decided by: ${decided}`);
    await page.screenshot({ path: `${shots}/dashboard-history-${width}.png`, fullPage: true });

    await page.goto(`${url}/ui/reviews/${reviewId}`);
    await page.locator("#request").waitFor();
    await noSidewaysScroll(page, `detail at ${width}`);
    await onScreen(page, "#audit td", width, `detail at ${width}`);
    await page.screenshot({ path: `${shots}/dashboard-detail-${width}.png`, fullPage: true });
    console.log(`WIDTH ${width} OK`);
  }

  // Live: the open list shows a review held after it was loaded, without a reload by anyone.
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.goto(`${url}/ui`);
  const before = await page.locator("tr.review-row").evaluateAll((rows) => rows.map((r) => r.dataset.id));
  console.log(`WAITING ${before.length}`);
  const handle = await page.waitForFunction(
    (known) => {
      const ids = Array.from(document.querySelectorAll("tr.review-row")).map((r) => r.dataset.id);
      return ids.find((id) => !known.includes(id)) || null;
    },
    before,
    { timeout: 30000, polling: 200 },
  );
  console.log(`LIVE ${await handle.jsonValue()}`);
} finally {
  await browser.close();
}
