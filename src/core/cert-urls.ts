/**
 * The revocation URLs a certificate carries: CRL distribution points (RFC 5280 4.2.1.13) and the
 * OCSP responder of its Authority Information Access (RFC 5280 4.2.2.1). Read with the bounded
 * DER reader; only `http(s)` URIs in fullName form are returned (mutual writes no other form).
 */
import { Tag, children, contentBytes, expect, oid, readElement, type DerElement } from './der.ts';
import { MutualError, isMutualError } from './errors.ts';
import { OID } from './oids.ts';
import { MAX_OBJECT_BYTES } from './pem.ts';

/** Most distribution points or access descriptions read from one certificate. */
export const MAX_REVOCATION_URLS = 8;
/** Longest URL kept. */
export const MAX_URL_LENGTH = 2048;

/** The revocation URLs of a certificate. */
export interface RevocationUrls {
  crl: string[];
  ocsp: string[];
}

const key = (dotted: string): string => oid(dotted).subarray(2).toString('latin1');
const CRLDP = key(OID.crlDistributionPoints);
const AIA = key(OID.authorityInfoAccess);
const OCSP_METHOD = key(OID.ocsp);

/** Reads the CRL and OCSP URLs of a DER certificate. Throws CERT_MALFORMED. */
export function revocationUrls(der: Uint8Array): RevocationUrls {
  if (der.length > MAX_OBJECT_BYTES) throw new MutualError('INPUT_TOO_LARGE', { detail: `certificate of ${der.length} bytes` });
  const buf = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const out: RevocationUrls = { crl: [], ocsp: [] };
  try {
    const cert = expect(buf, 0, Tag.SEQUENCE, buf.length, 'Certificate');
    const tbs = expect(buf, cert.contentStart, Tag.SEQUENCE, cert.end, 'TBSCertificate');
    const wrapper = children(buf, tbs, 11).find((e) => e.tag === 0xa3);
    if (!wrapper) return out;
    const [list] = children(buf, wrapper, 1);
    if (!list) throw new MutualError('CERT_MALFORMED', { detail: 'empty extensions' });
    for (const ext of children(buf, list, 256)) {
      const parts = children(buf, ext, 3);
      if (parts.length < 2) throw new MutualError('CERT_MALFORMED', { detail: 'bad extension' });
      const id = buf.toString('latin1', parts[0].contentStart, parts[0].end);
      const value = parts[parts.length - 1];
      if ((id !== CRLDP && id !== AIA) || value.tag !== Tag.OCTET_STRING) continue;
      const inner = readElement(buf, value.contentStart, value.end);
      if (id === CRLDP) {
        for (const dp of children(buf, inner, MAX_REVOCATION_URLS)) {
          const name = children(buf, dp, 3).find((e) => e.tag === 0xa0);
          const full = name && children(buf, name, 1)[0];
          if (full?.tag === 0xa0) for (const gn of children(buf, full, MAX_REVOCATION_URLS)) pushUri(buf, gn, out.crl);
        }
      } else {
        for (const ad of children(buf, inner, MAX_REVOCATION_URLS)) {
          const [method, location] = children(buf, ad, 2);
          if (method?.tag === Tag.OID && buf.toString('latin1', method.contentStart, method.end) === OCSP_METHOD && location) pushUri(buf, location, out.ocsp);
        }
      }
    }
    return out;
  } catch (e) {
    if (isMutualError(e, 'DER_MALFORMED') || isMutualError(e, 'DER_TOO_COMPLEX')) throw new MutualError('CERT_MALFORMED', { detail: e.fields.detail }, { cause: e });
    throw e;
  }
}

function pushUri(buf: Buffer, gn: DerElement, to: string[]): void {
  if (gn.tag !== 0x86) return;
  const uri = Buffer.from(contentBytes(buf, gn)).toString('latin1');
  if (uri.length <= MAX_URL_LENGTH && /^https?:\/\//.test(uri)) to.push(uri);
}
