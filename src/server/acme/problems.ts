/**
 * ACME problem documents (RFC 8555 section 6.7, RFC 7807): every refusal of an ACME request is a
 * MutualError, answered as `application/problem+json` with an `urn:ietf:params:acme:error:<type>`
 * mapped from its code, the code's registered HTTP status, and the headers some types need
 * (Retry-After for rate limits, Location for a key already in use, Link to the terms). The
 * request loop calls {@link sendAcmeProblem} instead of its own problem writer for `/acme/` paths.
 */
import type { ServerResponse } from 'node:http';
import { ERRORS, isMutualError, type ErrorCode, type MutualError } from '../../core/errors.ts';
import type { AcmeSubproblem } from '../../ca/index.ts';
import { lingerBeforeClose } from '../http-util.ts';

/** The ACME error types (RFC 8555 section 6.7). */
export type AcmeErrorType =
  | 'accountDoesNotExist' | 'alreadyRevoked' | 'badCSR' | 'badNonce' | 'badPublicKey' | 'badRevocationReason' | 'badSignatureAlgorithm' | 'caa' | 'compound'
  | 'connection' | 'dns' | 'externalAccountRequired' | 'incorrectResponse' | 'invalidContact' | 'malformed' | 'orderNotReady' | 'rateLimited' | 'rejectedIdentifier'
  | 'serverInternal' | 'tls' | 'unauthorized' | 'unsupportedContact' | 'unsupportedIdentifier' | 'userActionRequired';

/** Most subproblems written into one problem document (an order has at most as many identifiers). */
const MAX_SUBPROBLEMS = 100;
/** Longest detail written (a detail names a field or an identifier, never a document). */
const MAX_DETAIL_CHARS = 500;

/** Codes whose ACME type is not `malformed`; any code not listed with a 4xx status is `malformed`. */
const TYPES: Partial<Record<ErrorCode, AcmeErrorType>> = {
  ACME_BAD_NONCE: 'badNonce',
  ACME_BAD_SIGNATURE_ALGORITHM: 'badSignatureAlgorithm',
  ACME_BAD_PUBLIC_KEY: 'badPublicKey',
  ACME_ACCOUNT_DOES_NOT_EXIST: 'accountDoesNotExist',
  ACME_ACCOUNT_DEACTIVATED: 'unauthorized',
  ACME_UNAUTHORIZED: 'unauthorized',
  // RFC 8555 section 7.3.3: a change to the terms is "userActionRequired", with a Link to them.
  ACME_TERMS_NOT_AGREED: 'userActionRequired',
  ACME_EXTERNAL_ACCOUNT_REQUIRED: 'externalAccountRequired',
  ACME_EAB_INVALID: 'unauthorized',
  ACME_REJECTED_IDENTIFIER: 'rejectedIdentifier',
  ACME_UNSUPPORTED_IDENTIFIER: 'unsupportedIdentifier',
  ACME_RATE_LIMITED: 'rateLimited',
  ACME_ORDER_NOT_READY: 'orderNotReady',
  ACME_BAD_CSR: 'badCSR',
  ACME_BAD_REVOCATION_REASON: 'badRevocationReason',
  ACME_CONNECTION: 'connection',
  ACME_DNS: 'dns',
  ACME_INCORRECT_RESPONSE: 'incorrectResponse',
  ACME_TLS: 'tls',
  ACME_COMPOUND: 'compound',
  // The issuance pipeline's refusals, as finalize, newOrder and revokeCert meet them.
  POLICY_NAME_NOT_ALLOWED: 'rejectedIdentifier',
  POLICY_BAD_IDENTITY: 'rejectedIdentifier',
  POLICY_NO_NAMES: 'badCSR',
  CSR_MALFORMED: 'badCSR',
  CSR_BAD_SIGNATURE: 'badCSR',
  CSR_FORBIDDEN_EXTENSION: 'badCSR',
  // badPublicKey is about the JWS key (RFC 8555 section 6.7); an unacceptable key in a CSR is badCSR.
  CSR_UNSUPPORTED_ALGORITHM: 'badCSR',
  KEY_WEAK: 'badCSR',
  CERT_ALREADY_REVOKED: 'alreadyRevoked',
  REVOKE_BAD_REASON: 'badRevocationReason',
  RATE_LIMITED: 'rateLimited',
  RENEWAL_TOO_SOON: 'rateLimited',
};

/** The ACME type of a refusal: mapped from the code; serverInternal for 5xx and anything not a MutualError. */
export function acmeErrorType(e: unknown): AcmeErrorType {
  if (!isMutualError(e) || e.status >= 500) return 'serverInternal';
  return TYPES[e.code] ?? 'malformed';
}

/** A problem document (RFC 8555 section 6.7). */
export interface AcmeProblem {
  type: string;
  detail: string;
  status: number;
  subproblems?: { type: string; detail: string; identifier: AcmeSubproblem['identifier'] }[];
  /** badSignatureAlgorithm: the algorithms accepted (RFC 8555 section 6.2). */
  algorithms?: string[];
}

/** The urn of an ACME error type. */
export const acmeUrn = (type: AcmeErrorType): string => `urn:ietf:params:acme:error:${type}`;

/** The ACME type of a bare code (for subproblems and the errors inside orders and challenges). */
export function acmeTypeOfCode(code: string): AcmeErrorType {
  return acmeTypeAndStatus(code).type;
}

/** The ACME type and the HTTP status of a bare code (500 for a code mutual does not know). */
export function acmeTypeAndStatus(code: string): { type: AcmeErrorType; status: number } {
  const known = Object.hasOwn(ERRORS, code) ? ERRORS[code as ErrorCode] : undefined;
  if (!known || known.status >= 500) return { type: 'serverInternal', status: known?.status ?? 500 };
  return { type: TYPES[code as ErrorCode] ?? 'malformed', status: known.status };
}

/**
 * The problem document of an error: the type, the status the code is registered with, and a
 * detail; for a 5xx or a non-MutualError, serverInternal with a generic detail and the request id
 * (the cause goes to the log, not to the client).
 */
export function acmeProblem(e: unknown, requestId: string): AcmeProblem {
  const type = acmeErrorType(e);
  if (type === 'serverInternal' || !isMutualError(e)) {
    const status = isMutualError(e) ? e.status : 500;
    return { type: acmeUrn('serverInternal'), detail: `The server failed; retry later (request ${requestId})`, status };
  }
  const p: AcmeProblem = { type: acmeUrn(type), detail: detailOf(e), status: e.status };
  const subs = e.fields.subproblems;
  if (Array.isArray(subs) && subs.length > 0) {
    p.subproblems = (subs as AcmeSubproblem[]).slice(0, MAX_SUBPROBLEMS).map((s) => ({ type: acmeUrn(acmeTypeOfCode(s.code)), detail: String(s.detail).slice(0, MAX_DETAIL_CHARS), identifier: { type: s.identifier.type, value: s.identifier.value } }));
  }
  if (Array.isArray(e.fields.algorithms)) p.algorithms = e.fields.algorithms as string[];
  return p;
}

/** What a problem answer needs besides the error: where the account and terms are, for its headers. */
export interface AcmeProblemContext {
  /** The account URL of an account id (Location of ACME_KEY_IN_USE, RFC 8555 section 7.3.5). */
  accountUrl?: (id: string) => string;
  /** The terms of service (Link rel="terms-of-service" with userActionRequired, section 7.3.3). */
  termsOfService?: string;
}

/**
 * Answers a refused ACME request with its problem document. Headers already set on `res` (the
 * Replay-Nonce and Link rel="index" every ACME answer carries) are kept.
 */
export function sendAcmeProblem(res: ServerResponse, e: unknown, requestId: string, ctx: AcmeProblemContext = {}): { status: number; code: ErrorCode | 'INTERNAL' } {
  const p = acmeProblem(e, requestId);
  const code = isMutualError(e) ? e.code : 'INTERNAL';
  if (res.headersSent) {
    res.destroy();
    return { status: p.status, code };
  }
  const text = JSON.stringify(p);
  res.setHeader('content-type', 'application/problem+json');
  res.setHeader('content-length', Buffer.byteLength(text));
  res.setHeader('cache-control', 'no-store');
  res.setHeader('x-request-id', requestId);
  if (isMutualError(e)) addHeaders(res, e, ctx);
  res.writeHead(p.status);
  res.end(text);
  return { status: p.status, code };
}

function addHeaders(res: ServerResponse, e: MutualError, ctx: AcmeProblemContext): void {
  const retry = Number(e.fields.retryAfter);
  if (Number.isFinite(retry) && retry > 0) res.setHeader('retry-after', String(Math.ceil(retry)));
  else if (e.code === 'RATE_LIMITED') res.setHeader('retry-after', '1');
  if (e.code === 'ACME_KEY_IN_USE' && typeof e.fields.accountId === 'string' && ctx.accountUrl) res.setHeader('location', ctx.accountUrl(e.fields.accountId));
  if (e.code === 'ACME_TERMS_NOT_AGREED' && ctx.termsOfService) appendLink(res, `<${ctx.termsOfService}>;rel="terms-of-service"`);
  if (e.code === 'METHOD_NOT_ALLOWED' && typeof e.fields.allow === 'string') res.setHeader('allow', e.fields.allow);
  if (e.code === 'INPUT_TOO_LARGE' || e.code === 'REQUEST_TOO_LARGE') {
    // The rest of an oversized body is drained, not read: close after the answer, the way the API does.
    res.setHeader('connection', 'close');
    lingerBeforeClose(res.req);
  }
}

/** Adds a Link header value to those already set (every ACME answer has rel="index"). */
export function appendLink(res: ServerResponse, value: string): void {
  const had = res.getHeader('link');
  const list = had === undefined ? [] : Array.isArray(had) ? had : [String(had)];
  res.setHeader('link', [...list, value]);
}

/** The message (with its detail) and what to do about it (the hint). */
const detailOf = (e: MutualError): string => `${e.message}. ${e.hint}`.slice(0, MAX_DETAIL_CHARS);
