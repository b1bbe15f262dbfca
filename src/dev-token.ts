/**
 * `npm run token -- --org <org>`: prints a dev token signed with JWT_SECRET, or
 * with the dev secret that `npm start` persisted under DATA_DIR.
 */
import { parseArgs } from 'node:util'
import { resolve } from 'node:path'
import { loadConfig } from './config.js'
import { readDevJwtSecret, signDevToken, DEV_ORG } from './dev-environment.js'

const { values } = parseArgs({
  options: {
    org: { type: 'string', default: DEV_ORG },
    hours: { type: 'string', default: '12' }
  }
})
const config = loadConfig(process.env)
const jwt = config.files.jwt
let secret: string
if (jwt !== undefined && 'secret' in jwt) {
  secret = jwt.secret
} else if (jwt === undefined) {
  try {
    secret = await readDevJwtSecret(resolve(config.dataDir))
  } catch {
    process.stderr.write('No dev secret yet: run `npm start` once (it creates one), or set JWT_SECRET.\n')
    process.exit(1)
  }
} else {
  process.stderr.write('Tokens can only be minted here for an HS256 JWT_SECRET; your issuer signs RS/ES tokens.\n')
  process.exit(1)
}
const hours = Number(values.hours)
if (!Number.isFinite(hours) || hours <= 0) {
  process.stderr.write('--hours must be a positive number\n')
  process.exit(1)
}
process.stdout.write(`${signDevToken(secret, values.org, { orgClaim: config.files.orgClaim, expiresInSeconds: Math.round(hours * 3600) })}\n`)
