// Drives headless Chromium through the reviewer dashboard: sign in with a reviewer token, find
// the held DELETE, approve it with a comment, and check the page says it executed. Takes a
// screenshot. Environment: DASHBOARD_URL, REVIEWER_TOKEN, REVIEW_ID, SCREENSHOT, CHROMIUM.
import { chromium } from "playwright-core";

const url = process.env.DASHBOARD_URL;
const token = process.env.REVIEWER_TOKEN;
const reviewId = process.env.REVIEW_ID;
const shot = process.env.SCREENSHOT;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage();
  await page.goto(`${url}/ui`);
  // Not signed in: redirected to the sign-in form.
  if (!page.url().endsWith("/ui/login")) throw new Error(`expected the login page, got ${page.url()}`);
  await page.fill("#token", token);
  await page.click("#signin");
  try {
    await page.waitForURL(`${url}/ui`, { timeout: 10000 });
  } catch (e) {
    console.log(`after sign-in: ${page.url()}\n${await page.content()}`);
    throw e;
  }
  const row = page.locator(`tr.review-row[data-id="${reviewId}"]`);
  await row.waitFor();
  const rowText = await row.innerText();
  if (!rowText.includes("DELETE") || !rowText.includes("pending")) throw new Error(`row: ${rowText}`);
  console.log(`pending row: ${rowText.replace(/\s+/g, " ")}`);
  await row.locator("a").click();
  await page.waitForURL(`${url}/ui/reviews/${reviewId}`);
  const request = await page.locator("#request").innerText();
  if (/authorization/i.test(request)) throw new Error("stored request shows a credential header");
  await page.fill("#comment", "approved from the browser test");
  await page.click("#approve");
  await page.locator("#message").waitFor();
  const state = await page.locator("#state").innerText();
  const message = await page.locator("#message").innerText();
  console.log(`after approve: state=${state} message=${message}`);
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  if (state.trim() !== "executed") throw new Error(`state is ${state}`);
  const audit = await page.locator("#audit").innerText();
  if (!audit.includes("pending → approved")) throw new Error(`audit table: ${audit}`);
  console.log("OK");
} finally {
  await browser.close();
}
