/**
 * The URLs and the JSON of the ACME resources, exactly as RFC 8555 section 7.1 writes them: URLs
 * absolute (from the server's base URL), dates RFC 3339, optional fields left out rather than null.
 * The lifecycle's objects (ca/acme/acme-api.ts) hold ids; the URLs are the transport's.
 */
import type { AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeMeta, AcmeOrder, AcmeSubproblem, RenewalInfo } from '../../ca/index.ts';
import { acmeTypeAndStatus, acmeTypeOfCode, acmeUrn } from './problems.ts';

/** The URLs of the ACME resources under a base URL (`https://ca.example:8443`). */
export interface AcmeUrls {
  directory: string;
  newNonce: string;
  newAccount: string;
  newOrder: string;
  revokeCert: string;
  keyChange: string;
  renewalInfo: string;
  /** A kid is this followed by an account id. */
  accountPrefix: string;
  account(id: string): string;
  orders(accountId: string): string;
  order(id: string): string;
  finalize(orderId: string): string;
  authorization(id: string): string;
  /** A challenge's URL names its authorization too: a POST-as-GET on it reads that authorization. */
  challenge(authzId: string, id: string): string;
  certificate(id: string): string;
}

/** The ACME URLs under `base` (a trailing `/` is dropped). */
export function acmeUrls(base: string): AcmeUrls {
  const a = `${base.replace(/\/+$/, '')}/acme`;
  return {
    directory: `${a}/directory`,
    newNonce: `${a}/new-nonce`,
    newAccount: `${a}/new-account`,
    newOrder: `${a}/new-order`,
    revokeCert: `${a}/revoke-cert`,
    keyChange: `${a}/key-change`,
    renewalInfo: `${a}/renewal-info`,
    accountPrefix: `${a}/acct/`,
    account: (id) => `${a}/acct/${id}`,
    orders: (id) => `${a}/acct/${id}/orders`,
    order: (id) => `${a}/order/${id}`,
    finalize: (id) => `${a}/order/${id}/finalize`,
    authorization: (id) => `${a}/authz/${id}`,
    challenge: (authzId, id) => `${a}/chall/${authzId}/${id}`,
    certificate: (id) => `${a}/cert/${id}`,
  };
}

/** The directory (RFC 8555 section 7.1.1), with RFC 9773's renewalInfo. */
export function directoryView(u: AcmeUrls, meta: AcmeMeta) {
  return {
    newNonce: u.newNonce, newAccount: u.newAccount, newOrder: u.newOrder, revokeCert: u.revokeCert, keyChange: u.keyChange, renewalInfo: u.renewalInfo,
    meta: {
      ...(meta.termsOfService ? { termsOfService: meta.termsOfService } : {}),
      ...(meta.website ? { website: meta.website } : {}),
      caaIdentities: meta.caaIdentities,
      externalAccountRequired: meta.externalAccountRequired,
    },
  };
}

/** An account object (RFC 8555 section 7.1.2). */
export function accountView(u: AcmeUrls, a: AcmeAccount) {
  return { status: a.status, contact: a.contact, termsOfServiceAgreed: a.termsOfServiceAgreed, orders: u.orders(a.id) };
}

/**
 * An error inside an order or a challenge (a problem document, RFC 8555 sections 7.1.3 and 8), with
 * the status its code is registered with, as clients print it (lego shows 0 without one).
 */
export function errorView(e: { code: string; detail: string; subproblems?: AcmeSubproblem[] }) {
  const { type, status } = acmeTypeAndStatus(e.code);
  return {
    type: acmeUrn(type),
    detail: e.detail,
    status,
    ...(e.subproblems?.length ? { subproblems: e.subproblems.map((s) => ({ type: acmeUrn(acmeTypeOfCode(s.code)), detail: s.detail, identifier: s.identifier })) } : {}),
  };
}

/** An order object (RFC 8555 section 7.1.3; `replaces`: RFC 9773). */
export function orderView(u: AcmeUrls, o: AcmeOrder) {
  return {
    status: o.status,
    expires: o.expires.toISOString(),
    identifiers: o.identifiers.map((i) => ({ type: i.type, value: i.value })),
    ...(o.notBefore ? { notBefore: o.notBefore.toISOString() } : {}),
    ...(o.notAfter ? { notAfter: o.notAfter.toISOString() } : {}),
    ...(o.error ? { error: errorView(o.error) } : {}),
    authorizations: o.authorizationIds.map((id) => u.authorization(id)),
    finalize: u.finalize(o.id),
    ...(o.certificateId ? { certificate: u.certificate(o.certificateId) } : {}),
    ...(o.replaces ? { replaces: o.replaces } : {}),
  };
}

/** A challenge object (RFC 8555 section 7.1.5, 8). */
export function challengeView(u: AcmeUrls, authzId: string, c: AcmeChallenge) {
  return {
    type: c.type,
    url: u.challenge(authzId, c.id),
    status: c.status,
    token: c.token,
    ...(c.validated ? { validated: c.validated.toISOString() } : {}),
    ...(c.error ? { error: errorView(c.error) } : {}),
  };
}

/** An authorization object (RFC 8555 section 7.1.4); `wildcard` only when true. */
export function authorizationView(u: AcmeUrls, a: AcmeAuthorization) {
  return {
    identifier: { type: a.identifier.type, value: a.identifier.value },
    status: a.status,
    expires: a.expires.toISOString(),
    challenges: a.challenges.map((c) => challengeView(u, a.id, c)),
    ...(a.wildcard ? { wildcard: true } : {}),
  };
}

/** Renewal information (RFC 9773 section 4.2). */
export function renewalInfoView(r: RenewalInfo) {
  return {
    suggestedWindow: { start: r.suggestedWindow.start.toISOString(), end: r.suggestedWindow.end.toISOString() },
    ...(r.explanationURL ? { explanationURL: r.explanationURL } : {}),
  };
}
