import t from 'tap'
import fc from 'fast-check'
import { redactUrl } from '../src/log-redaction.js'

t.test('secrets are removed from logged URLs', async t => {
  const presigned = 'https://b.s3.amazonaws.com/o/k?X-Amz-Credential=AKID%2F20260101&X-Amz-Signature=abc123&X-Amz-Security-Token=tok'
  t.equal(redactUrl(`/api/v1/proxy/file?presigned_url=${encodeURIComponent(presigned)}`), '/api/v1/proxy/file?presigned_url=[REDACTED]')
  t.equal(redactUrl(presigned), 'https://b.s3.amazonaws.com/o/k?X-Amz-Credential=[REDACTED]&X-Amz-Signature=[REDACTED]&X-Amz-Security-Token=[REDACTED]')
  t.equal(redactUrl('/x?a=1&x-amz-signature=s&b=2'), '/x?a=1&x-amz-signature=[REDACTED]&b=2', 'case-insensitive')
  t.equal(redactUrl('/x?presigned%5Furl=secret'), '/x?presigned%5Furl=[REDACTED]', 'percent-encoded name')
  t.equal(redactUrl('/x?presigned_url'), '/x?presigned_url=[REDACTED]', 'no value')
  t.equal(redactUrl('/x?%E0%A4%A=1'), '/x?%E0%A4%A=1', 'malformed encoding is left alone')
  t.equal(redactUrl('/health'), '/health')
})

t.test('property: no secret parameter value survives redaction', async t => {
  const name = fc.constantFrom('presigned_url', 'X-Amz-Signature', 'x-amz-credential', 'X-AMZ-SECURITY-TOKEN', 'a', 'key')
  const value = fc.string({ unit: fc.constantFrom('s', 'e', 'c', 'x', '%', '2', '0', '=', '?', '/', '&'), minLength: 1, maxLength: 10 })
  fc.assert(fc.property(fc.array(fc.tuple(name, value), { minLength: 1, maxLength: 6 }), pairs => {
    const url = '/p?' + pairs.map(([n, v]) => `${n}=SECRET${encodeURIComponent(v)}`).join('&')
    const secrets = pairs.filter(([n]) => !['a', 'key'].includes(n)).length
    const out = redactUrl(url)
    return (out.match(/SECRET/g) ?? []).length === pairs.length - secrets
  }), { numRuns: 2000 })
  t.pass('2000 generated query strings checked')
})
