import { MutualError } from './errors.ts';

/** Largest PEM or DER input mutual reads as one object (certificates and CSRs are a few KB). */
export const MAX_OBJECT_BYTES = 64 * 1024;

/** Wraps DER in a PEM block with 64-column lines (RFC 7468). */
export function toPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** One PEM block found in a text. */
export interface PemBlock {
  label: string;
  der: Buffer;
}

const LABEL_RE = /^[A-Z0-9 ]+$/;

/** Character classes for PEM bodies: 1 base64 symbol, 2 '=', 3 whitespace (\t \n \r space), 0 anything else. */
const PEM_CHAR = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') PEM_CHAR[c.charCodeAt(0)] = 1;
PEM_CHAR[61] = 2;
for (const c of [9, 10, 13, 32]) PEM_CHAR[c] = 3;

/**
 * Checks a PEM body between `start` and `end`: 'skip' when it holds a character no PEM body has
 * (the text is then not a PEM block here), 'bad' when its base64 is malformed (padding inside,
 * length not a multiple of 4), 'ok' otherwise.
 */
function checkBody(text: string, start: number, end: number): 'ok' | 'bad' | 'skip' {
  let symbols = 0;
  let padding = 0;
  let malformed = false;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    const k = c < 128 ? PEM_CHAR[c] : 0;
    if (k === 1) {
      if (padding > 0) malformed = true;
      symbols++;
    } else if (k === 2) {
      padding++;
      symbols++;
    } else if (k === 0) return 'skip';
  }
  return malformed || padding > 2 || symbols % 4 !== 0 ? 'bad' : 'ok';
}

/** Every PEM block in `text`, in order, at most `maxBlocks`. */
export function parsePemBlocks(text: string, maxBlocks = 16): PemBlock[] {
  const out: PemBlock[] = [];
  let from = 0;
  for (;;) {
    const begin = text.indexOf('-----BEGIN ', from);
    if (begin < 0) return out;
    from = begin + 1;
    const labelEnd = text.indexOf('-----', begin + 11);
    if (labelEnd < 0) return out;
    const label = text.slice(begin + 11, labelEnd);
    if (!LABEL_RE.test(label)) continue;
    let bodyStart = labelEnd + 5;
    if (text.charCodeAt(bodyStart) === 13) bodyStart++;
    if (text.charCodeAt(bodyStart) !== 10) continue;
    bodyStart++;
    const endLine = `-----END ${label}-----`;
    const end = text.indexOf(endLine, bodyStart);
    if (end < 0) continue;
    const body = checkBody(text, bodyStart, end);
    if (body === 'skip') continue;
    if (out.length >= maxBlocks) throw new MutualError('DER_TOO_COMPLEX', { detail: `more than ${maxBlocks} PEM blocks` });
    if (body === 'bad') throw new MutualError('PEM_MALFORMED', { detail: `bad base64 in ${label} block` });
    // The body holds only base64 symbols and whitespace, which Node's decoder skips.
    out.push({ label, der: Buffer.from(text.slice(bodyStart, end), 'base64') });
    from = end + endLine.length;
  }
}

/**
 * Reads one object from PEM or DER bytes. `labels` are the accepted PEM labels; DER is accepted as
 * is. Inputs over {@link MAX_OBJECT_BYTES} (x2 for base64) are refused before any parsing.
 */
export function readPemOrDer(input: Uint8Array | string, labels: readonly string[], maxBytes = MAX_OBJECT_BYTES): Buffer {
  let text: string;
  if (typeof input === 'string') {
    if (input.length > maxBytes * 2) throw new MutualError('INPUT_TOO_LARGE', { detail: `${input.length} characters; the limit is ${maxBytes * 2}` });
    text = input;
  } else {
    const bytes = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    if (bytes.length > maxBytes * 2) throw new MutualError('INPUT_TOO_LARGE', { detail: `${bytes.length} bytes; the limit is ${maxBytes}` });
    if (bytes.length > 0 && bytes[0] === 0x30) {
      if (bytes.length > maxBytes) throw new MutualError('INPUT_TOO_LARGE', { detail: `${bytes.length} bytes; the limit is ${maxBytes}` });
      return bytes;
    }
    // PEM is ASCII; latin1 maps every byte to one character, so nothing non-ASCII can pass as base64.
    text = bytes.toString('latin1');
  }
  if (!text.includes('-----BEGIN ')) throw new MutualError('PEM_MALFORMED', { detail: 'no -----BEGIN----- line and not DER' });
  const blocks = parsePemBlocks(text);
  if (blocks.length === 0) throw new MutualError('PEM_MALFORMED', { detail: 'a -----BEGIN----- line without a matching -----END----- line' });
  const found = blocks.find((b) => labels.includes(b.label));
  if (!found) throw new MutualError('PEM_WRONG_TYPE', { detail: `found ${blocks.map((b) => b.label).join(', ')}; expected ${labels.join(' or ')}` });
  if (found.der.length > maxBytes) throw new MutualError('INPUT_TOO_LARGE', { detail: `${found.der.length} bytes; the limit is ${maxBytes}` });
  return found.der;
}

/**
 * Largest certificate file or bundle {@link readCertificateDers} reads (default). A bundle of
 * {@link MAX_BUNDLE_CERTS} certificates of a few KB each, with comments, fits with room to spare.
 */
export const MAX_BUNDLE_BYTES = 1024 * 1024;
/** Most PEM blocks (certificates, and keys or CSRs beside them) {@link readCertificateDers} reads (default). */
export const MAX_BUNDLE_CERTS = 64;
/** PEM labels of a certificate (RFC 7468 section 5). */
export const CERTIFICATE_LABELS = ['CERTIFICATE'] as const;

/** Options of {@link readCertificateDers}. */
export interface ReadCertificateDersOptions {
  /** Largest input, in bytes (default {@link MAX_BUNDLE_BYTES}). */
  maxBytes?: number;
  /** Most PEM blocks of any label (default {@link MAX_BUNDLE_CERTS}). */
  maxBlocks?: number;
  /** PEM labels read as certificates (default `['CERTIFICATE']`); other blocks are skipped. */
  labels?: readonly string[];
}

/**
 * The one reader of "PEM or DER certificates": bytes (a file, a bundle, an HTTP body) in, the DER
 * of each certificate out, in order. Bytes that start with a SEQUENCE tag (0x30) are one DER
 * certificate, returned as is; anything else is read as PEM text, keeping the blocks whose label
 * is in `labels` and skipping others (a key or CSR beside the certificates is common). Strings are
 * always PEM. Returns [] only when there are PEM blocks but none with a certificate label. The
 * DERs are not parsed here: callers parse (or hand to OpenSSL) what they need.
 *
 * Throws INPUT_TOO_LARGE over `maxBytes`, DER_TOO_COMPLEX over `maxBlocks`, PEM_MALFORMED for
 * empty input, input with no PEM block that is not DER, or a block with broken base64.
 */
export function readCertificateDers(input: Uint8Array | string, o: ReadCertificateDersOptions = {}): Buffer[] {
  const maxBytes = o.maxBytes ?? MAX_BUNDLE_BYTES;
  let text: string;
  if (typeof input === 'string') {
    if (input.length > maxBytes) throw new MutualError('INPUT_TOO_LARGE', { detail: `${input.length} characters; the limit is ${maxBytes}` });
    text = input;
  } else {
    const bytes = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    if (bytes.length > maxBytes) throw new MutualError('INPUT_TOO_LARGE', { detail: `${bytes.length} bytes; the limit is ${maxBytes}` });
    if (bytes.length > 0 && bytes[0] === 0x30) return [bytes];
    // PEM is ASCII; latin1 maps every byte to one character, so nothing non-ASCII can pass as base64.
    text = bytes.toString('latin1');
  }
  const blocks = parsePemBlocks(text, o.maxBlocks ?? MAX_BUNDLE_CERTS);
  if (blocks.length === 0) {
    throw new MutualError('PEM_MALFORMED', { detail: text.trim() === '' ? 'empty input: expected PEM certificates or DER' : 'no complete -----BEGIN/END----- block and not DER' });
  }
  const labels = o.labels ?? CERTIFICATE_LABELS;
  return blocks.filter((b) => labels.includes(b.label)).map((b) => b.der);
}
