/** Driving Swagger UI in Debian's headless Chromium (/usr/bin/chromium or CHROMIUM_PATH) as a person does. */
import { chromium, type Browser, type Page } from 'playwright-core'

const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

export async function launchChromium (t: { teardown: (fn: () => unknown) => void }): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic']
  })
  t.teardown(async () => { await browser.close() })
  return browser
}

/** "Authorize", paste the bearer token, confirm, close the dialog. */
export async function authorize (page: Page, token: string): Promise<void> {
  await page.click('button.authorize')
  await page.fill('.modal-ux input[type="text"]', token)
  await page.click('.modal-ux .auth-btn-wrapper button.authorize')
  await page.click('.modal-ux .auth-btn-wrapper button.btn-done')
}

/** Opens an operation, "Try it out", fills it in, "Execute"; returns the status the UI shows. */
export async function tryItOut (page: Page, operationSelector: string, fill: (operation: ReturnType<Page['locator']>) => Promise<void>) {
  const operation = page.locator(operationSelector)
  await operation.locator('.opblock-summary').first().click()
  await operation.locator('button.try-out__btn').click()
  await fill(operation)
  await operation.locator('button.execute').click()
  const status = operation.locator('.live-responses-table .response .response-col_status').first()
  await status.waitFor({ timeout: 15_000 })
  return { operation, status: (await status.innerText()).trim() }
}
