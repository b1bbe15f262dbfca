/**
 * Our POST routes read application/json only: any other or a missing content
 * type on a body is a 415 in our error shape (the contract's answer), in the
 * plugin's own context, so a host's parsers keep working for the host.
 */
import t from 'tap'
import fc from 'fast-check'
import Fastify from 'fastify'
import { artosFiles } from '../src/app.js'
import { acceptJsonBodiesOnly } from '../src/json-body.js'
import { errorHandler } from '../src/error-handler.js'
import { startTestS3 } from './helpers/s3.js'
import { buildTestApp } from './helpers/app.js'
import { orgToken, TEST_SECRET } from './helpers/tokens.js'

const auth = { authorization: `Bearer ${orgToken('org-1')}` }
const body = JSON.stringify({ key: 'org-1/a.pdf' })
const NOT_JSON = [
  'text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x',
  'application/xml', 'text/xml', 'application/octet-stream', 'text/json', 'application/javascript',
  'application/jsonx', 'application/json-patch+json', 'application/vnd.api+json', 'application/ld+json', '*/*', 'application/*'
]
const JSON_TYPES = ['application/json', 'application/json; charset=utf-8', 'application/json;charset=UTF-8', 'Application/JSON']
const UNSUPPORTED = { statusCode: 415, code: 'ARTOS_UNSUPPORTED_MEDIA_TYPE', error: 'Unsupported Media Type', message: 'Request body must be application/json' }

t.test('POST /generate-presigned-url: 415 for every body that is not application/json', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  for (const type of NOT_JSON) {
    const res = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { ...auth, 'content-type': type }, payload: body })
    t.equal(res.statusCode, 415, `${type}: 415`)
    t.same(res.json(), UNSUPPORTED, `${type}: our error shape and message`)
  }
  // light-my-request would add a JSON content type to an object payload; a string one goes without.
  const untyped = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth, payload: body })
  t.equal(untyped.headers['content-type'], 'application/json; charset=utf-8', 'the answer itself is JSON')
  t.same(untyped.json(), UNSUPPORTED, 'a body without Content-Type: 415')

  // A header Fastify cannot even parse is refused by Fastify itself, still a 415 in our shape.
  for (const malformed of ['garbage', 'application/', '/json', 'application/json extra']) {
    const res = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { ...auth, 'content-type': malformed }, payload: body })
    t.equal(res.statusCode, 415, `malformed ${JSON.stringify(malformed)}: 415`)
    t.same(Object.keys(res.json()).sort(), ['code', 'error', 'message', 'statusCode'], `malformed ${JSON.stringify(malformed)}: error shape`)
  }

  for (const type of JSON_TYPES) {
    const res = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { ...auth, 'content-type': type }, payload: body })
    t.equal(res.statusCode, 200, `${type}: 200`)
    t.type(res.json().url, 'string', `${type}: a URL`)
  }
  const empty = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: auth })
  t.equal(empty.statusCode, 400, 'no body and no content type: the body is missing (400), not of a wrong type')
  const poisoned = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { ...auth, 'content-type': 'application/json' }, payload: '{"key":"org-1/a.pdf","__proto__":{"x":1}}' })
  t.equal(poisoned.statusCode, 400, 'prototype poisoning is still refused by the JSON parser')
  const large = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { ...auth, 'content-type': 'application/json' }, payload: JSON.stringify({ key: `org-1/${'a'.repeat(1024 * 1024)}` }) })
  t.equal(large.statusCode, 413, 'the body limit still applies')
})

t.test('any media type other than application/json (property, plain and with a charset): 415', async t => {
  const s3 = await startTestS3(t)
  const app = await buildTestApp(t, s3)
  const token = fc.stringMatching(/^[a-z0-9][a-z0-9.+-]{0,15}$/)
  const randomType = fc.tuple(token, token).map(([type, subtype]) => `${type}/${subtype}`)
  const mediaType = fc.oneof(randomType, fc.constantFrom(...NOT_JSON.map(type => type.split(';')[0]))).filter(type => type !== 'application/json')
  await fc.assert(fc.asyncProperty(mediaType, fc.constantFrom('', '; charset=utf-8'), async (type, parameters) => {
    const res = await app.inject({ method: 'POST', url: '/generate-presigned-url', headers: { ...auth, 'content-type': type + parameters }, payload: body })
    return res.statusCode === 415
  }), { numRuns: 300 })
  t.pass('300 media types (random and known ones) answered 415')
})

t.test('the rule covers every POST route of the context it is applied to, and no other context', async t => {
  const app = Fastify()
  t.teardown(async () => { await app.close() })
  await app.register(async function ours (scope) {
    scope.setErrorHandler(errorHandler)
    acceptJsonBodiesOnly(scope)
    scope.post('/one', async request => ({ got: request.body }))
    scope.post('/batch', async request => ({ got: request.body }))
  })
  app.post('/theirs', async request => ({ got: request.body }))
  await app.ready()
  for (const url of ['/one', '/batch']) {
    t.equal((await app.inject({ method: 'POST', url, headers: { 'content-type': 'text/plain' }, payload: 'x' })).statusCode, 415, `${url}: text/plain is 415`)
    t.same((await app.inject({ method: 'POST', url, payload: { a: 1 } })).json(), { got: { a: 1 } }, `${url}: JSON parsed`)
  }
  t.same((await app.inject({ method: 'POST', url: '/theirs', headers: { 'content-type': 'text/plain' }, payload: 'x' })).json(), { got: 'x' }, 'a sibling context keeps Fastify\'s text/plain parser')
})

t.test('embedded: the host\'s own parsers keep working for the host, ours answer 415', async t => {
  const s3 = await startTestS3(t)
  const host = Fastify()
  t.teardown(async () => { await host.close() })
  // Registered before us, so our context would inherit them without the rule.
  host.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, raw, done) => { done(null, Object.fromEntries(new URLSearchParams(raw as string))) })
  host.addContentTypeParser('application/xml', { parseAs: 'string' }, (_request, raw, done) => { done(null, { xml: raw }) })
  host.post('/host/echo', async request => ({ got: request.body }))
  await host.register(artosFiles, { prefix: '/files', bucket: s3.bucket, endpoint: s3.endpoint, forcePathStyle: true, credentials: s3.credentials, jwt: { secret: TEST_SECRET } })
  await host.ready()
  const hostCases: Array<[string, string, unknown]> = [
    ['text/plain', 'hello', 'hello'],
    ['application/x-www-form-urlencoded', 'key=org-1/a.pdf', { key: 'org-1/a.pdf' }],
    ['application/xml', '<key/>', { xml: '<key/>' }]
  ]
  for (const [type, payload, expected] of hostCases) {
    const res = await host.inject({ method: 'POST', url: '/host/echo', headers: { 'content-type': type }, payload })
    t.same(res.json(), { got: expected }, `host route still parses ${type}`)
    const ours = await host.inject({ method: 'POST', url: '/files/generate-presigned-url', headers: { ...auth, 'content-type': type }, payload })
    t.equal(ours.statusCode, 415, `our route: ${type} is 415`)
    t.same(ours.json(), UNSUPPORTED, `our route: ${type} error body`)
  }
  const ok = await host.inject({ method: 'POST', url: '/files/generate-presigned-url', headers: { ...auth, 'content-type': 'application/json' }, payload: body })
  t.equal(ok.statusCode, 200, 'JSON still works under the host')
})
