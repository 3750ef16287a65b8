/**
 * The CRL distribution point URLs of a certificate (RFC 5280 4.2.1.13), read with the bounded DER
 * reader, so the doctor can fetch the CRL that covers a client certificate.
 */
import { Tag, children, contentBytes, expect, oidToString, readElement } from '../core/der.ts';
import { OID } from '../core/oids.ts';

/** Most distribution points and names read. */
export const MAX_DISTRIBUTION_POINTS = 8;

/** The http(s) fullName URIs of the certificate's CRL distribution points; [] when none or unreadable. */
export function crlDistributionUrls(der: Uint8Array): string[] {
  try {
    const cert = expect(der, 0, Tag.SEQUENCE, der.length, 'Certificate');
    const [tbs] = children(der, cert, 3);
    const extsWrapper = children(der, tbs, 16).find((e) => e.tag === 0xa3);
    if (!extsWrapper) return [];
    const list = readElement(der, extsWrapper.contentStart, extsWrapper.end);
    for (const ext of children(der, list, 64)) {
      const parts = children(der, ext, 3);
      if (oidToString(contentBytes(der, parts[0])) !== OID.crlDistributionPoints) continue;
      const value = parts[parts.length - 1];
      const dps = readElement(der, value.contentStart, value.end);
      const urls: string[] = [];
      for (const dp of children(der, dps, MAX_DISTRIBUTION_POINTS)) {
        const name = children(der, dp, 3).find((e) => e.tag === 0xa0);
        if (!name) continue;
        const full = children(der, name, 2).find((e) => e.tag === 0xa0);
        if (!full) continue;
        for (const gn of children(der, full, MAX_DISTRIBUTION_POINTS)) {
          const uri = gn.tag === 0x86 ? Buffer.from(contentBytes(der, gn)).toString('latin1') : '';
          if (/^https?:\/\//.test(uri)) urls.push(uri);
        }
      }
      return urls;
    }
  } catch {
    // A certificate we cannot read has no usable distribution point.
  }
  return [];
}
