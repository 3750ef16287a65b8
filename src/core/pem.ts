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

const PEM_RE = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n\t ]*?)-----END \1-----/g;

/** Every PEM block in `text`, in order, at most `maxBlocks`. */
export function parsePemBlocks(text: string, maxBlocks = 16): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(PEM_RE)) {
    if (out.length >= maxBlocks) throw new MutualError('DER_TOO_COMPLEX', { detail: `more than ${maxBlocks} PEM blocks` });
    const body = m[2].replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) throw new MutualError('PEM_MALFORMED', { detail: `bad base64 in ${m[1]} block` });
    out.push({ label: m[1], der: Buffer.from(body, 'base64') });
  }
  return out;
}

/**
 * Reads one object from PEM or DER bytes. `labels` are the accepted PEM labels; DER is accepted as
 * is. Inputs over {@link MAX_OBJECT_BYTES} (x2 for base64) are refused before any parsing.
 */
export function readPemOrDer(input: Uint8Array | string, labels: readonly string[], maxBytes = MAX_OBJECT_BYTES): Buffer {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (bytes.length > maxBytes * 2) throw new MutualError('INPUT_TOO_LARGE', { detail: `${bytes.length} bytes; the limit is ${maxBytes}` });
  if (bytes.length > 0 && bytes[0] === 0x30) {
    if (bytes.length > maxBytes) throw new MutualError('INPUT_TOO_LARGE', { detail: `${bytes.length} bytes; the limit is ${maxBytes}` });
    return bytes;
  }
  const text = bytes.toString('utf8');
  if (!text.includes('-----BEGIN ')) throw new MutualError('PEM_MALFORMED', { detail: 'no -----BEGIN----- line and not DER' });
  const blocks = parsePemBlocks(text);
  if (blocks.length === 0) throw new MutualError('PEM_MALFORMED', { detail: 'a -----BEGIN----- line without a matching -----END----- line' });
  const found = blocks.find((b) => labels.includes(b.label));
  if (!found) throw new MutualError('PEM_WRONG_TYPE', { detail: `found ${blocks.map((b) => b.label).join(', ')}; expected ${labels.join(' or ')}` });
  if (found.der.length > maxBytes) throw new MutualError('INPUT_TOO_LARGE', { detail: `${found.der.length} bytes; the limit is ${maxBytes}` });
  return found.der;
}
