/**
 * Names as people type them (`api.internal`, `10.0.0.7`, `spiffe://acme.internal/svc/x`), split
 * into subjectAltName kinds.
 */
import type { SubjectAltNames } from '../core/names.ts';

/** An IPv4 or IPv6 address literal (the policy checks it properly; this only sorts). */
export const ipRe = /^(\d+\.\d+\.\d+\.\d+|[0-9a-f:]+)$/i;

/** Splits a list of names into DNS, IP and URI. */
export function splitNames(names: string[]): SubjectAltNames {
  return {
    dns: names.filter((n) => !n.includes('://') && !ipRe.test(n)),
    ip: names.filter((n) => ipRe.test(n) && !n.includes('://')),
    uri: names.filter((n) => n.includes('://')),
  };
}
