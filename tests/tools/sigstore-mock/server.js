'use strict';
// TEST DOUBLE. A loopback stand-in for Sigstore's Fulcio (certificate
// authority + CT log) and Rekor v1 (transparency log), for ml-integrity's
// keyless signing tests. Real Fulcio and Rekor are Go services that cannot run
// here; the certificate, SCT, signed entry timestamp and checkpoint logic comes
// from npm's @sigstore/mock (0.13.0). This file is only the HTTP adapter around
// it, plus the parts of real Fulcio/Rekor behaviour that sigstore-python relies
// on and the mock does not do:
//
//   * Fulcio (POST /api/v2/signingCert): sigstore-python sends the OIDC token
//     as a bearer header and the CSR as base64 of its PEM text; the mock wants
//     the token in the body and the PEM itself. Like real Fulcio, the token is
//     verified (HS256 with the secret shared with the OIDC stand-in, standing in
//     for the issuer's JWKS; audience "sigstore"; expiry) and refused with 401,
//     and the SAN is chosen as Fulcio does: for GitHub Actions tokens
//     https://github.com/ + job_workflow_ref, for email issuers the email
//     claim, otherwise sub.
//   * Rekor (POST /api/v1/log/entries): real Rekor stores a dsse entry in
//     canonical form (envelopeHash, payloadHash, signatures[{signature,
//     verifier}]); the mock would log the proposed entry verbatim, which
//     sigstore-python's consistency check refuses. The canonical form is
//     derived here before the entry is logged.
//   * Test controls: POST /__mock/fail {"path", "status", "times"} makes the next
//     requests to a path fail; GET /__mock/requests lists what was received.
//
// Usage: node server.js [--port N] [--oidc-secret S]
// Prints one JSON line on stdout (URL and trust material), then serves until
// stdin closes or SIGTERM.

const http = require('node:http');
const crypto = require('node:crypto');
const mock = require('@sigstore/mock');

const HOST = '127.0.0.1';
const GITHUB_ISSUER = 'https://token.actions.githubusercontent.com';
const EMAIL_ISSUERS = new Set([
  'https://accounts.google.com',
  'https://oauth2.sigstore.dev/auth',
  'https://oauth2.sigstage.dev/auth',
]);
const SAN_CLAIM = 'x-fulcio-san';
const FULCIO_PATH = '/api/v2/signingCert';
const REKOR_PATH = '/api/v1/log/entries';

function parseArgs(argv) {
  const out = { port: 0, oidcSecret: null };
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--port') out.port = Number(argv[++i]);
    else if (argv[i] === '--oidc-secret') out.oidcSecret = argv[++i];
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return out;
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const fromB64url = (text) => Buffer.from(text, 'base64url');

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// Verify the token as Fulcio would (signature, audience, time); return claims.
function checkToken(token, secret) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new HttpError(401, 'malformed OIDC token');
  let header;
  let claims;
  try {
    header = JSON.parse(fromB64url(parts[0]).toString('utf8'));
    claims = JSON.parse(fromB64url(parts[1]).toString('utf8'));
  } catch {
    throw new HttpError(401, 'malformed OIDC token');
  }
  if (secret !== null) {
    if (header.alg !== 'HS256') throw new HttpError(401, `unsupported token algorithm ${header.alg}`);
    const expected = crypto.createHmac('sha256', secret).update(`${parts[0]}.${parts[1]}`).digest();
    const given = fromB64url(parts[2]);
    if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) {
      throw new HttpError(401, 'invalid OIDC token signature');
    }
  }
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!aud.includes('sigstore')) throw new HttpError(401, 'OIDC token audience is not sigstore');
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.exp !== 'number' || claims.exp <= now) {
    throw new HttpError(401, 'OIDC token has expired');
  }
  return claims;
}

function subjectFor(claims) {
  if (claims.iss === GITHUB_ISSUER) {
    if (!claims.job_workflow_ref) throw new HttpError(400, 'GitHub token without job_workflow_ref');
    return `https://github.com/${claims.job_workflow_ref}`;
  }
  if (EMAIL_ISSUERS.has(claims.iss)) {
    if (!claims.email) throw new HttpError(400, 'token without email claim');
    return claims.email;
  }
  return claims.sub;
}

// Re-encode the claims (plus the SAN chosen above) for the mock, which reads
// but does not verify the token.
function tokenForMock(claims) {
  const header = b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ ...claims, [SAN_CLAIM]: subjectFor(claims) }));
  return `${header}.${body}.`;
}

function fulcioRequest(raw, headers, secret) {
  const auth = headers.authorization || '';
  const match = /^bearer\s+(\S+)$/i.exec(auth);
  if (!match) throw new HttpError(401, 'missing bearer token');
  const claims = checkToken(match[1], secret);
  let body;
  try {
    body = JSON.parse(raw);
  } catch {
    throw new HttpError(400, 'request body is not JSON');
  }
  const csr = body.certificateSigningRequest;
  if (typeof csr !== 'string') throw new HttpError(400, 'missing certificateSigningRequest');
  const pem = csr.includes('-----BEGIN') ? csr : Buffer.from(csr, 'base64').toString('utf8');
  return JSON.stringify({
    credentials: { oidcIdentityToken: tokenForMock(claims) },
    certificateSigningRequest: pem,
  });
}

const sha256hex = (data) => crypto.createHash('sha256').update(data).digest('hex');

function rekorRequest(raw) {
  let entry;
  try {
    entry = JSON.parse(raw);
  } catch {
    throw new HttpError(400, 'request body is not JSON');
  }
  if (entry.kind !== 'dsse') return raw;
  const content = entry.spec && entry.spec.proposedContent;
  if (!content || typeof content.envelope !== 'string' || !Array.isArray(content.verifiers)) {
    throw new HttpError(400, 'dsse entry without proposedContent');
  }
  const envelope = JSON.parse(content.envelope);
  return JSON.stringify({
    apiVersion: entry.apiVersion,
    kind: 'dsse',
    spec: {
      envelopeHash: { algorithm: 'sha256', value: sha256hex(content.envelope) },
      payloadHash: {
        algorithm: 'sha256',
        value: sha256hex(Buffer.from(envelope.payload, 'base64')),
      },
      signatures: envelope.signatures.map((s) => ({
        signature: s.sig,
        verifier: content.verifiers[0],
      })),
    },
  });
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, body, contentType = 'application/json') {
  res.writeHead(status, { 'Content-Type': contentType });
  res.end(body);
}

function sendError(res, status, message) {
  send(res, status, JSON.stringify({ code: status, message }));
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const server = http.createServer();
  await new Promise((resolve) => server.listen(opts.port, HOST, resolve));
  const url = `http://${HOST}:${server.address().port}`;

  const keys = () => crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const ctKeys = keys();
  const ctlog = await mock.initializeCTLog(ctKeys);
  const ca = await mock.initializeCA(keys(), ctlog);
  const rekorKeys = keys();
  const tlog = await mock.initializeTLog(url, rekorKeys);
  const fulcio = mock.fulcioHandler(ca, { strict: true, subjectClaim: SAN_CLAIM });
  const rekor = mock.rekorHandler(tlog, { strict: true });

  const failures = new Map(); // path -> {status, times}
  const received = [];

  server.on('request', async (req, res) => {
    const path = new URL(req.url, url).pathname;
    try {
      const raw = await readBody(req);
      if (path === '/__mock/fail' && req.method === 'POST') {
        const spec = JSON.parse(raw);
        failures.set(spec.path, { status: spec.status, times: spec.times ?? 1 });
        send(res, 200, '{}');
        return;
      }
      if (path === '/__mock/requests' && req.method === 'GET') {
        send(res, 200, JSON.stringify(received));
        return;
      }
      received.push({ method: req.method, path });
      const failure = failures.get(path);
      if (failure && failure.times > 0) {
        failure.times -= 1;
        sendError(res, failure.status, `injected failure ${failure.status}`);
        return;
      }
      let handler;
      let body;
      if (path === FULCIO_PATH && req.method === 'POST') {
        handler = fulcio;
        body = fulcioRequest(raw, req.headers, opts.oidcSecret);
      } else if (path === REKOR_PATH && req.method === 'POST') {
        handler = rekor;
        body = rekorRequest(raw);
      } else {
        sendError(res, 404, `no such endpoint: ${req.method} ${path}`);
        return;
      }
      const result = await handler.fn(body);
      if (result.statusCode >= 400) {
        sendError(res, result.statusCode, String(result.response));
      } else {
        send(res, result.statusCode, result.response, result.contentType || 'application/json');
      }
    } catch (err) {
      const status = err instanceof HttpError ? err.status : 500;
      sendError(res, status, err.message);
    }
  });

  const der = (key) => key.export({ format: 'der', type: 'spki' });
  const rekorKey = der(rekorKeys.publicKey);
  const info = {
    url,
    fulcio: { root_certificate: Buffer.from(ca.rootCertificate).toString('base64') },
    ctlog: {
      public_key: Buffer.from(ctlog.publicKey).toString('base64'),
      log_id: Buffer.from(ctlog.logID).toString('base64'),
    },
    rekor: {
      public_key: rekorKey.toString('base64'),
      log_id: crypto.createHash('sha256').update(rekorKey).digest('base64'),
    },
  };
  process.stdout.write(`${JSON.stringify(info)}\n`);

  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.resume();
}

main().catch((err) => {
  process.stderr.write(`sigstore-mock: ${err.stack || err}\n`);
  process.exit(1);
});
