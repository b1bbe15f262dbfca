/**
 * Proof that our URLs are correct SigV4, against a server that verifies
 * signatures (Swift's s3api from scripts/swift-s3.sh, or real S3 given by
 * S3_TEST_*). s3rver would accept all of these, so this suite refuses to run
 * without a verifying server rather than pass vacuously.
 */
import t from 'tap'
import { externalS3Configured, startTestS3 } from '../helpers/s3.js'
import { buildTestApp } from '../helpers/app.js'
import { presignedUrlFor } from '../helpers/presign.js'

if (!externalS3Configured()) {
  throw new Error('S3_TEST_ENDPOINT is not set: run `bash scripts/swift-s3.sh start` and export its output (see README)')
}

const presign = presignedUrlFor

async function status (url: string, init?: RequestInit): Promise<number> {
  const res = await fetch(url, init)
  await res.arrayBuffer()
  return res.status
}

t.test('the server verifies signatures: genuine URLs work, altered ones do not', async t => {
  const s3 = await startTestS3(t)
  t.ok(s3.verifiesSignatures)
  const app = await buildTestApp(t, s3)
  const body = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251))
  await s3.put('org-1/doc.bin', body)
  await s3.put('org-1/other.bin', 'another object')
  const url = await presign(app, 'org-1/doc.bin')

  const genuine = await fetch(url)
  t.equal(genuine.status, 200, 'genuine URL')
  t.same(Buffer.from(await genuine.arrayBuffer()), body, 'same bytes')

  const ranged = await fetch(url, { headers: { range: 'bytes=0-9' } })
  t.equal(ranged.status, 206, 'Range is honoured on a presigned URL')
  t.same(Buffer.from(await ranged.arrayBuffer()), body.subarray(0, 10))

  const tampered = new URL(url)
  const signature = tampered.searchParams.get('X-Amz-Signature') as string
  tampered.searchParams.set('X-Amz-Signature', (signature[0] === 'a' ? 'b' : 'a') + signature.slice(1))
  t.equal(await status(tampered.href), 403, 'tampered signature')

  const longer = new URL(url)
  longer.searchParams.set('X-Amz-Expires', '7200')
  t.equal(await status(longer.href), 403, 'edited X-Amz-Expires')

  const otherObject = new URL(url)
  otherObject.pathname = otherObject.pathname.replace('doc.bin', 'other.bin')
  t.equal(await status(otherObject.href), 403, 'signature reused for another key')

  const wrongSecretApp = await buildTestApp(t, s3, { credentials: { ...s3.credentials, secretAccessKey: `${s3.credentials.secretAccessKey}-wrong` } })
  t.equal(await status(await presign(wrongSecretApp, 'org-1/doc.bin')), 403, 'signed with a wrong secret')
})

t.test('awkward keys are signed exactly as S3 canonicalizes them', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const keys = [
    'org-1/with spaces/file name.txt',
    'org-1/ünïcødé/文件 ✓.txt',
    'org-1/plus+sign.txt',
    'org-1/percent%25encoded%2Flooking.txt',
    'org-1/question?and#hash.txt',
    "org-1/sub-delims !$&'()*,;=@:.txt",
    'org-1/tilde~under_score.txt'
  ]
  for (const key of keys) {
    const body = `contents of ${key}`
    await s3.put(key, body)
    const res = await fetch(await presign(app, key))
    t.equal(res.status, 200, key)
    t.equal(await res.text(), body, `bytes of ${key}`)
  }
})

t.test('an expired URL is refused', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3, { expiresIn: 1 })
  await s3.put('org-1/brief.txt', 'brief')
  const url = await presign(app, 'org-1/brief.txt')
  await new Promise(resolve => setTimeout(resolve, 2500))
  t.equal(await status(url), 403)
})
