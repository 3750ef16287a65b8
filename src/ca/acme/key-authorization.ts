/**
 * Key authorizations (RFC 8555 section 8.1): what a client proves it can publish for a challenge,
 * and the digest dns-01 publishes instead of it (section 8.4).
 */
import crypto from 'node:crypto';

/** The key authorization of a challenge: `token "." thumbprint` (RFC 8555 section 8.1); the thumbprint is the account key's RFC 7638 thumbprint, base64url. */
export function keyAuthorization(token: string, thumbprint: string): string {
  return `${token}.${thumbprint}`;
}

/** The dns-01 TXT value for a key authorization: base64url (no padding) of its SHA-256 (RFC 8555 section 8.4). */
export function dnsDigest(keyAuthorization: string): string {
  return crypto.hash('sha256', keyAuthorization, 'base64url');
}
