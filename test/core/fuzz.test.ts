/**
 * A bounded, deterministic fuzz target for every reader of untrusted DER and PEM in src/core
 * (DESIGN.md: "every reader of untrusted bytes also gets a bounded fuzz target in the tests"): the
 * corpus in test/fuzz-corpus/der (public structures only, made by make-corpus.ts) is mutated with
 * bit flips, interesting bytes, truncations, length-field edits, element deletion, duplication and
 * splicing between objects, nesting and width bombs, and PEM text edits; each input is fed to each
 * reader (CSR, certificate, revocation URLs, CRL, OCSP request and response, SubjectPublicKeyInfo, PEM). Every input must either parse or throw a MutualError with a code the reader documents:
 * never a TypeError or RangeError, never a hang. A CSR that parses must also survive re-encoding:
 * its parts rebuild the input byte for byte, OpenSSL re-encodes its key to the same bytes, and
 * @peculiar/asn1-csr reads the same fields. A certificate that parses must be one OpenSSL reads
 * (node:crypto's X509Certificate), with the same key; a CRL or an OCSP request that parses must be
 * read the same by @peculiar/asn1-x509 / asn1-ocsp. (OCSP responses are not cross-checked: their
 * embedded certificates are carried as bytes here and parsed by whoever uses them.)
 *
 * Each input comes from its own PRNG stream, seeded by (seed, corpus file, iteration), so a failure
 * names what reproduces it. MUTUAL_FUZZ_SEED and MUTUAL_FUZZ_ITERATIONS change the run (the default,
 * 2,700 inputs x 8 readers, takes 1-3 s on a loaded machine); MUTUAL_FUZZ_ONLY=<file>:<iteration>
 * replays one input, and MUTUAL_FUZZ_DUMP=<path> then also writes it to <path>.<mutation> (for
 * `openssl asn1parse -inform DER`).
 * Inputs it found that broke a reader are kept as named cases in test/core/readers.test.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CertificationRequest } from '@peculiar/asn1-csr';
import { CertificateList } from '@peculiar/asn1-x509';
import { OCSPRequest } from '@peculiar/asn1-ocsp';
import { describeSpki, readSpki, SIGNATURE_ALGORITHMS } from '../../src/core/algorithms.ts';
import { parseCertificate, type CertificateInfo } from '../../src/core/certificate.ts';
import { revocationUrls } from '../../src/core/cert-urls.ts';
import { parseCrl, type CrlInfo } from '../../src/core/crl-reader.ts';
import { parseCsr, type ParsedCsr } from '../../src/core/csr.ts';
import { bitString, derNull, oid, seq } from '../../src/core/der.ts';
import { isMutualError, type ErrorCode } from '../../src/core/errors.ts';
import { parseOcspRequest, parseOcspResponse, type OcspRequest } from '../../src/core/ocsp.ts';
import { parsePemBlocks, readPemOrDer } from '../../src/core/pem.ts';
import { OID } from '../../src/core/oids.ts';
import { prng } from '../helpers/prng.ts';

const CORPUS_DIR = path.join(import.meta.dirname, '..', 'fuzz-corpus', 'der');
const SEED = Number(process.env.MUTUAL_FUZZ_SEED ?? 0x6d757475);
/** Mutated inputs per corpus file; each is fed to every reader. */
const ITERATIONS = Number(process.env.MUTUAL_FUZZ_ITERATIONS ?? 100);
/** One reader call taking longer than this is reported as a hang (generous: the machine is shared). */
const SLOW_CALL_MS = 1000;

// ------------------------------------------------------------------------------------------------
// Deterministic randomness (prng from test/helpers)

/** A 32-bit hash of a string (FNV-1a), to give each corpus file its own stream. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

// ------------------------------------------------------------------------------------------------
// The corpus, and where its elements' headers are

interface Seed {
  name: string;
  /** The DER (a PEM file's first block). */
  der: Buffer;
  /** The PEM text, for PEM files. */
  pem?: string;
  /** Header offsets of every element, walked through constructed ones and into OCTET/BIT STRINGs that hold DER. */
  elements: { start: number; contentStart: number; end: number; tag: number }[];
}

/** Walks DER without the project's reader (it is what is under test), tolerating what is not DER. */
function walk(buf: Buffer, from: number, to: number, out: Seed['elements'], depth = 0): void {
  let o = from;
  while (o + 2 <= to && depth < 32) {
    const tag = buf[o];
    let len = buf[o + 1];
    let p = o + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0 || n > 4 || p + n > to) return;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + buf[p++];
    }
    const end = p + len;
    if (end > to) return;
    out.push({ start: o, contentStart: p, end, tag });
    if (tag & 0x20) walk(buf, p, end, out, depth + 1);
    else if (tag === 0x04 && buf[p] === 0x30) walk(buf, p, end, out, depth + 1);
    else if (tag === 0x03 && buf[p] === 0 && buf[p + 1] === 0x30) walk(buf, p + 1, end, out, depth + 1);
    o = end;
  }
}

function loadCorpus(): Seed[] {
  return fs.readdirSync(CORPUS_DIR).sort().map((name) => {
    const raw = fs.readFileSync(path.join(CORPUS_DIR, name));
    const pem = name.endsWith('.pem') ? raw.toString('latin1') : undefined;
    const der = pem ? parsePemBlocks(pem)[0].der : raw;
    const elements: Seed['elements'] = [];
    walk(der, 0, der.length, elements);
    return { name, der, pem, elements };
  });
}

// ------------------------------------------------------------------------------------------------
// Mutations

const INTERESTING = [0x00, 0x01, 0x02, 0x05, 0x30, 0x7f, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x8f, 0xa0, 0xff];

/** Encodes a DER length, also in the non-minimal and indefinite forms DER forbids. */
function lengthBytes(n: number, form: 'minimal' | 'long' | 'indefinite' | 'huge'): number[] {
  if (form === 'indefinite') return [0x80];
  if (form === 'huge') return [0x84, 0xff, 0xff, 0xff, 0xf0];
  if (form === 'long') return [0x82, (n >> 8) & 0xff, n & 0xff];
  if (n < 0x80) return [n];
  if (n < 0x100) return [0x81, n];
  if (n < 0x10000) return [0x82, n >> 8, n & 0xff];
  return [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
}

type Mutator = (r: () => number, s: Seed, all: Seed[]) => Buffer;
const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: () => number, n: number) => Math.floor(r() * n);

const MUTATORS: { name: string; m: Mutator }[] = [
  { name: 'bit-flips', m: (r, s) => {
    const b = Buffer.from(s.der);
    for (let k = 1 + int(r, 4); k > 0; k--) b[int(r, b.length)] ^= 1 << int(r, 8);
    return b;
  } },
  { name: 'interesting-byte', m: (r, s) => {
    const b = Buffer.from(s.der);
    b[int(r, b.length)] = pick(r, INTERESTING);
    return b;
  } },
  { name: 'header-byte', m: (r, s) => {
    // Tags and lengths are where readers go wrong: hit a header byte.
    const b = Buffer.from(s.der);
    const e = pick(r, s.elements);
    b[e.start + int(r, Math.max(1, e.contentStart - e.start))] = r() < 0.5 ? pick(r, INTERESTING) : b[e.start] ^ (1 << int(r, 8));
    return b;
  } },
  { name: 'truncate', m: (r, s) => s.der.subarray(0, int(r, s.der.length)) },
  { name: 'truncate-element', m: (r, s) => {
    const e = pick(r, s.elements);
    return s.der.subarray(0, e.contentStart + int(r, Math.max(1, e.end - e.contentStart)));
  } },
  { name: 'length-edit', m: (r, s) => {
    // Rewrite one element's length: off by a little, non-minimal, indefinite or huge; contents unchanged.
    const e = pick(r, s.elements);
    const len = e.end - e.contentStart;
    const form = pick(r, ['minimal', 'minimal', 'long', 'indefinite', 'huge'] as const);
    const n = form === 'minimal' ? Math.max(0, len + pick(r, [-2, -1, 1, 2, 128, -len])) : len;
    return Buffer.concat([s.der.subarray(0, e.start + 1), Buffer.from(lengthBytes(n, form)), s.der.subarray(e.contentStart)]);
  } },
  { name: 'delete-element', m: (r, s) => {
    const e = pick(r, s.elements);
    return Buffer.concat([s.der.subarray(0, e.start), s.der.subarray(e.end)]);
  } },
  { name: 'duplicate-element', m: (r, s) => {
    const e = pick(r, s.elements);
    return Buffer.concat([s.der.subarray(0, e.end), s.der.subarray(e.start, e.end), s.der.subarray(e.end)]);
  } },
  { name: 'splice-from-another-object', m: (r, s, all) => {
    // An element of another corpus object in place of one of this one (a Name in a CSR, a CertID in a CRL...).
    const other = pick(r, all);
    const e = pick(r, s.elements);
    const f = pick(r, other.elements);
    return Buffer.concat([s.der.subarray(0, e.start), other.der.subarray(f.start, f.end), s.der.subarray(e.end)]);
  } },
  { name: 'retag', m: (r, s) => {
    const b = Buffer.from(s.der);
    b[pick(r, s.elements).start] = pick(r, [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0a, 0x0c, 0x13, 0x16, 0x17, 0x18, 0x30, 0x31, 0x80, 0x82, 0x86, 0x87, 0xa0, 0xa1, 0xa2, 0xa3, 0x1f]);
    return b;
  } },
  { name: 'nesting-bomb', m: (r, s) => {
    // Thousands of SEQUENCEs, one inside the next, in place of one element (well-formed DER).
    const e = pick(r, s.elements);
    const depth = 200 + int(r, 3000);
    // Headers from the inside out, written once (seq() in a loop would copy the whole bomb per level).
    const headers: number[][] = [];
    let size = 2;
    for (let d = 0; d < depth; d++) {
      const h = [0x30, ...lengthBytes(size, 'minimal')];
      headers.push(h);
      size += h.length;
    }
    const bomb = Buffer.from([...headers.reverse().flat(), 0x05, 0x00]);
    return Buffer.concat([s.der.subarray(0, e.start), bomb, s.der.subarray(e.end)]);
  } },
  { name: 'width-bomb', m: (r, s) => {
    // One element replaced by a SEQUENCE or SET of thousands of tiny children.
    const e = pick(r, s.elements);
    const child = pick(r, [[0x05, 0x00], [0x02, 0x01, 0x01], [0x30, 0x00], [0x06, 0x01, 0x2a]]);
    const n = 500 + int(r, 8000);
    const body = Buffer.alloc(n * child.length);
    for (let i = 0; i < n; i++) body.set(child, i * child.length);
    const head = Buffer.from([r() < 0.5 ? 0x30 : 0x31, ...lengthBytes(body.length, 'minimal')]);
    return Buffer.concat([s.der.subarray(0, e.start), head, body, s.der.subarray(e.end)]);
  } },
  { name: 'stacked', m: (r, s, all) => {
    // Two mutations one after the other.
    const a = pick(r, MUTATORS.slice(0, 10)).m(r, s, all);
    const elements: Seed['elements'] = [];
    walk(a, 0, a.length, elements);
    return elements.length ? pick(r, MUTATORS.slice(0, 10)).m(r, { ...s, der: a, elements }, all) : a;
  } },
];

/** PEM text edits: the scanner's input is text, with its own ways to be wrong. */
function mutatePem(r: () => number, text: string, der: Buffer, all: Seed[]): string {
  const lines = text.split('\n');
  switch (int(r, 9)) {
    case 0: { // a character changed
      const i = int(r, text.length);
      return text.slice(0, i) + pick(r, ['=', '-', ' ', '\r', '\n', '\0', 'A', '/', '\u00e9', '*']) + text.slice(i + 1);
    }
    case 1: // a line dropped
      lines.splice(int(r, lines.length), 1);
      return lines.join('\n');
    case 2: // a line repeated
      { const i = int(r, lines.length); lines.splice(i, 0, lines[i]); }
      return lines.join('\n');
    case 3: // the label changed
      return text.replace(/(BEGIN|END) ([A-Z0-9 ]+)-----/, (_m, w: string) => `${w} ${pick(r, ['CERTIFICATE', 'X509 CRL', 'CERTIFICATE REQUEST', 'PRIVATE KEY', 'X', 'certificate', ''])}-----`);
    case 4: // truncated text
      return text.slice(0, int(r, text.length));
    case 5: // a mutated DER wrapped again, in the same label
      return `-----BEGIN ${/BEGIN ([A-Z0-9 ]+)-----/.exec(text)?.[1] ?? 'CERTIFICATE'}-----\n${MUTATORS[int(r, 10)].m(r, { name: '', der, elements: elementsOf(der) }, all).toString('base64')}\n-----END CERTIFICATE-----\n`;
    case 6: // many blocks
      return text.repeat(2 + int(r, 30));
    case 7: // a BEGIN line without its END, then the rest
      return '-----BEGIN CERTIFICATE-----\n' + text;
    default: // padding in the middle of the base64
      return text.replace(/\n([A-Za-z0-9+/]{8})/, '\n$1==');
  }
}

function elementsOf(der: Buffer): Seed['elements'] {
  const out: Seed['elements'] = [];
  walk(der, 0, der.length, out);
  return out.length ? out : [{ start: 0, contentStart: Math.min(2, der.length), end: der.length, tag: der[0] ?? 0 }];
}

// ------------------------------------------------------------------------------------------------
// The readers, with the codes each may throw

/** A second parser's reading; its refusal of what mutual accepted is an assertion failure, not a crash. */
function secondOpinion<T>(who: string, read: () => T): T {
  try {
    return read();
  } catch (e) {
    return assert.fail(`${who} refuses what mutual accepted: ${(e as Error)?.message ?? String(e)}`);
  }
}

/** The one DER encoding of each accepted signature algorithm (what strict reading leaves possible). */
const CANONICAL_ALGORITHMS = new Map<string, Buffer>([
  ...Object.values(SIGNATURE_ALGORITHMS).map((a): [string, Buffer] => [a.oid, a.der]),
  [OID.ecdsaWithSHA512, seq(oid(OID.ecdsaWithSHA512))],
  [OID.sha384WithRSAEncryption, seq(oid(OID.sha384WithRSAEncryption), derNull())],
  [OID.sha512WithRSAEncryption, seq(oid(OID.sha512WithRSAEncryption), derNull())],
]);

/** CSR re-encoding sanity, for CSRs the parser accepts. */
function checkCsrReencodes(input: Buffer, csr: ParsedCsr): void {
  // The parts rebuild the input byte for byte, when the algorithm has one canonical encoding.
  const alg = CANONICAL_ALGORITHMS.get(csr.signatureOid);
  if (alg) assert.deepEqual(seq(csr.signedBytes, alg, bitString(csr.signature)), input, 'CSR parts do not rebuild the input');
  else assert.ok(input.includes(csr.signedBytes), 'signedBytes are not the input\'s');
  // The key is well-formed as mutual reads it, and where OpenSSL can read it, OpenSSL writes it back the same.
  readSpki(csr.spki);
  let key: crypto.KeyObject | undefined;
  try {
    key = crypto.createPublicKey({ key: csr.spki, format: 'der', type: 'spki' });
  } catch {
    // Not a key OpenSSL reads (e.g. a point off the curve): verifyCsr refuses it with a code.
  }
  if (key) assert.deepEqual(key.export({ type: 'spki', format: 'der' }), csr.spki, 'OpenSSL re-encodes the key differently');
  // A second parser reads the same CSR.
  const ref = secondOpinion('@peculiar/asn1-csr', () => AsnConvert.parse(input, CertificationRequest));
  assert.deepEqual(Buffer.from(AsnConvert.serialize(ref.certificationRequestInfo)), csr.signedBytes);
  assert.deepEqual(Buffer.from(AsnConvert.serialize(ref.certificationRequestInfo.subjectPKInfo)), csr.spki);
  assert.equal(ref.signatureAlgorithm.algorithm, csr.signatureOid);
  assert.deepEqual(Buffer.from(ref.signature), csr.signature);
}

/** A certificate the reader accepts, OpenSSL reads too; where OpenSSL reads its key, it is the same key. */
function checkCertificateReadable(input: Buffer, info: CertificateInfo): void {
  const x = secondOpinion('OpenSSL (X509Certificate)', () => new crypto.X509Certificate(input));
  let key: Buffer | undefined;
  try {
    key = x.publicKey.export({ type: 'spki', format: 'der' });
  } catch {
    // A key OpenSSL cannot decode (a point off the curve): verification refuses it, not this reader.
  }
  if (key) assert.deepEqual(key, info.spki, 'OpenSSL reads another key');
}

/** A CRL the reader accepts, @peculiar/asn1-x509 reads too: the same signed bytes and entry count. */
function checkCrlAgrees(input: Buffer, crl: CrlInfo): void {
  const ref = secondOpinion('@peculiar/asn1-x509', () => AsnConvert.parse(input, CertificateList));
  assert.equal(ref.tbsCertList.revokedCertificates?.length ?? 0, crl.revokedAt.length);
  assert.deepEqual(Buffer.from(AsnConvert.serialize(ref.tbsCertList)), crl.tbs);
}

/** An OCSP request the reader accepts, @peculiar/asn1-ocsp reads too, and writes back the same. */
function checkOcspRequestAgrees(input: Buffer, req: OcspRequest): void {
  const ref = secondOpinion('@peculiar/asn1-ocsp', () => AsnConvert.parse(input, OCSPRequest));
  assert.equal(ref.tbsRequest.requestList.length, req.requests.length);
  assert.deepEqual(Buffer.from(AsnConvert.serialize(ref)), input);
}

interface Reader {
  name: string;
  codes: readonly ErrorCode[];
  read: (input: Buffer) => void;
}

const READERS: Reader[] = [
  { name: 'parseCsr', codes: ['CSR_MALFORMED', 'INPUT_TOO_LARGE', 'CSR_FORBIDDEN_EXTENSION'], read: (b) => checkCsrReencodes(b, parseCsr(b)) },
  { name: 'parseCertificate', codes: ['CERT_MALFORMED', 'INPUT_TOO_LARGE'], read: (b) => checkCertificateReadable(b, parseCertificate(b)) },
  { name: 'revocationUrls', codes: ['CERT_MALFORMED', 'INPUT_TOO_LARGE'], read: (b) => void revocationUrls(b) },
  { name: 'parseCrl', codes: ['CRL_MALFORMED', 'CRL_TOO_LARGE', 'INPUT_TOO_LARGE'], read: (b) => checkCrlAgrees(b, parseCrl(b)) },
  { name: 'parseOcspRequest', codes: ['DER_MALFORMED', 'DER_TOO_COMPLEX', 'INPUT_TOO_LARGE'], read: (b) => checkOcspRequestAgrees(b, parseOcspRequest(b)) },
  { name: 'parseOcspResponse', codes: ['DER_MALFORMED', 'DER_TOO_COMPLEX', 'INPUT_TOO_LARGE'], read: (b) => void parseOcspResponse(b) },
  { name: 'describeSpki', codes: ['DER_MALFORMED', 'DER_TOO_COMPLEX', 'KEY_WEAK'], read: (b) => void describeSpki(b) },
  { name: 'readPemOrDer', codes: ['PEM_MALFORMED', 'PEM_WRONG_TYPE', 'DER_TOO_COMPLEX', 'INPUT_TOO_LARGE'],
    read: (b) => void readPemOrDer(b, ['CERTIFICATE', 'CERTIFICATE REQUEST', 'X509 CRL']) },
];

/** Feeds one input to one reader; returns what happened, or throws an assertion naming the input. */
function feed(reader: Reader, input: Buffer, where: string): 'ok' | ErrorCode {
  const t0 = performance.now();
  let outcome: 'ok' | ErrorCode = 'ok';
  try {
    reader.read(input);
  } catch (e) {
    if (!isMutualError(e)) {
      const why = e instanceof assert.AssertionError ? 'accepted but failed re-encoding sanity' : `threw ${(e as Error)?.constructor?.name ?? typeof e}`;
      assert.fail(`${reader.name} ${why} on ${where} (input ${input.subarray(0, 64).toString('hex')}${input.length > 64 ? '...' : ''}, ${input.length} bytes): ${(e as Error)?.stack ?? String(e)}`);
    }
    if (!reader.codes.includes(e.code)) assert.fail(`${reader.name} threw ${e.code}, not one of ${reader.codes.join(', ')}, on ${where}: ${e.message}`);
    outcome = e.code;
  }
  const ms = performance.now() - t0;
  if (ms > SLOW_CALL_MS) assert.fail(`${reader.name} took ${Math.round(ms)} ms on ${where}`);
  return outcome;
}

// ------------------------------------------------------------------------------------------------

describe('core/fuzz: DER and PEM readers', () => {
  const corpus = loadCorpus();
  const only = process.env.MUTUAL_FUZZ_ONLY?.split(':');

  test('ok/fuzz/corpus-is-public-material-only', () => {
    assert.ok(corpus.length >= 10, 'the corpus is in test/fuzz-corpus/der');
    for (const s of corpus) {
      assert.ok(!/PRIVATE KEY|ENCRYPTED/.test(s.der.toString('latin1') + (s.pem ?? '')), `${s.name} holds a private key`);
      assert.ok(s.elements.length > 0, `${s.name} is not DER`);
    }
  });

  test('ok/fuzz/every-unmutated-seed-parses-with-its-own-reader', () => {
    const own: [RegExp, string][] = [[/^spki-/, 'describeSpki'], [/^csr-/, 'parseCsr'], [/^(cert|bundle)-/, 'parseCertificate'], [/^crl-/, 'parseCrl'], [/^ocsp-request/, 'parseOcspRequest'], [/^ocsp-response/, 'parseOcspResponse']];
    for (const s of corpus) {
      const readerName = own.find(([re]) => re.test(s.name))?.[1];
      assert.ok(readerName, `no reader for ${s.name}`);
      assert.equal(feed(READERS.find((r) => r.name === readerName)!, s.der, `${s.name} as is`), 'ok', s.name);
    }
  });

  test('ok/fuzz/mutated-inputs-parse-or-throw-a-coded-error', { timeout: 120_000 }, () => {
    const t0 = performance.now();
    const tally = new Map<string, number>();
    // Distinct failures (by reader and first line), each with the input that reproduces it.
    const failures = new Map<string, string>();
    let inputs = 0;
    let mutateMs = 0;
    for (const s of corpus) {
      if (only && only[0] !== s.name) continue;
      for (let i = 0; i < ITERATIONS; i++) {
        if (only && Number(only[1]) !== i) continue;
        const r = prng(SEED ^ hash32(s.name) ^ Math.imul(i + 1, 0x9e3779b1));
        const where = `MUTUAL_FUZZ_SEED=${SEED} MUTUAL_FUZZ_ONLY=${s.name}:${i}`;
        const m = pick(r, MUTATORS);
        const tm = performance.now();
        const der = m.m(r, s, corpus);
        mutateMs += performance.now() - tm;
        const variants: [string, Buffer][] = [[m.name, der]];
        // PEM files also get text edits; every fourth DER input also goes in as PEM.
        if (s.pem) variants.push(['pem-edit', Buffer.from(mutatePem(r, s.pem, s.der, corpus), 'latin1')]);
        else if (i % 4 === 0) variants.push(['pem-wrapped', Buffer.from(`-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`)]);
        for (const [how, input] of variants) {
          inputs++;
          if (only && process.env.MUTUAL_FUZZ_DUMP) fs.writeFileSync(`${process.env.MUTUAL_FUZZ_DUMP}.${how}`, input);
          for (const reader of READERS) {
            try {
              const outcome = feed(reader, input, `${where} (${how})`);
              tally.set(`${reader.name} ${outcome}`, (tally.get(`${reader.name} ${outcome}`) ?? 0) + 1);
            } catch (e) {
              const msg = (e as Error).message;
              const key = `${reader.name}: ${/\): (.*)/.exec(msg.split('\n')[0])?.[1] ?? msg.split('\n')[0]} ${/at \w+ \(file:[^)]*\/src\/core\/([^)]*)\)/.exec(msg)?.[1] ?? ''}`;
              if (!failures.has(key)) failures.set(key, msg.split('\n').slice(0, 6).join('\n'));
            }
          }
        }
      }
    }
    const ms = Math.round(performance.now() - t0);
    // What the run covered, for whoever looks at a failure: outcomes per reader.
    const summary = [...tally].sort().map(([k, v]) => `${k}: ${v}`).join('; ');
    console.log(`# fuzz: ${inputs} inputs x ${READERS.length} readers in ${ms} ms (${Math.round(mutateMs)} ms making them; seed ${SEED}); ${summary}`);
    assert.equal(failures.size, 0, `${failures.size} distinct failures:\n\n${[...failures.values()].slice(0, 20).join('\n\n')}`);
    if (!only) {
      // The mutations reach past the first bytes: every reader accepted something and refused something.
      for (const reader of READERS) {
        assert.ok([...tally].some(([k]) => k === `${reader.name} ok`), `${reader.name} accepted no input`);
        assert.ok([...tally].some(([k]) => k.startsWith(reader.name) && !k.endsWith(' ok')), `${reader.name} refused no input`);
      }
    }
  });
});
