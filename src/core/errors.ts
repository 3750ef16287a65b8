/**
 * mutual's one error family. Every rejection of untrusted input, and every failure a user can act
 * on, is a {@link MutualError} with a stable `code` from {@link ERRORS}. Codes are documented in
 * docs/errors.md; a retired code is never reused. Tests assert on codes, never on message text.
 */

interface ErrorSpec {
  /** HTTP status when this error answers a request. */
  status: number;
  /** What failed, in one sentence. */
  message: string;
  /** What to do about it. */
  hint: string;
}

/** The registry: code -> HTTP status, message, hint. */
export const ERRORS = {
  // Encoding and parsing of untrusted input
  DER_MALFORMED: { status: 400, message: 'The input is not well-formed DER', hint: 'Check that the file is a complete, unmodified certificate, CSR or CRL.' },
  DER_TOO_COMPLEX: { status: 400, message: 'The input has more elements than mutual accepts', hint: 'Requests and certificates with that many names or extensions are refused; split the request.' },
  INPUT_TOO_LARGE: { status: 413, message: 'The input is larger than mutual accepts', hint: 'CSRs and certificates are a few KB; check that the right file was given.' },
  PEM_MALFORMED: { status: 400, message: 'The input is not valid PEM', hint: 'Expected a -----BEGIN ...----- block with base64 content; check the file.' },
  PEM_WRONG_TYPE: { status: 400, message: 'The PEM block is of the wrong type', hint: 'Give the file the command asks for (certificate, CSR, CRL or key).' },
  CERT_MALFORMED: { status: 400, message: 'The certificate could not be parsed', hint: 'Check that the file is a complete X.509 certificate.' },
  // CSRs
  CSR_MALFORMED: { status: 400, message: 'The certificate signing request could not be parsed', hint: 'Make the CSR again, e.g. `openssl req -new -key key.pem -out req.csr`.' },
  CSR_BAD_SIGNATURE: { status: 400, message: 'The CSR signature does not verify (no proof of possession of the key)', hint: 'Sign the CSR with the private key whose public key it contains.' },
  CSR_UNSUPPORTED_ALGORITHM: { status: 400, message: 'The CSR uses an unsupported key or signature algorithm', hint: 'Use ECDSA P-256/P-384, Ed25519 or RSA 2048-4096 with SHA-256 or better.' },
  CSR_FORBIDDEN_EXTENSION: { status: 400, message: 'The CSR asks for an extension the CA sets itself', hint: 'Remove basicConstraints/keyUsage/extendedKeyUsage requests; the profile decides them.' },
  // Policy and lint
  POLICY_NAME_NOT_ALLOWED: { status: 403, message: 'A requested name is outside what this CA may issue', hint: 'Ask for names under the permitted DNS suffixes, IP ranges or trust domain, or widen them with --permit-dns/--permit-ip.' },
  POLICY_NO_NAMES: { status: 400, message: 'The request has no names the profile needs', hint: 'Server certificates need DNS or IP names; client certificates need a service identity.' },
  POLICY_BAD_IDENTITY: { status: 400, message: 'The identity is not a valid SPIFFE ID for this trust domain', hint: 'Use spiffe://<trust-domain>/<env>/<service> with lowercase letters, digits, ".", "-" and "_".' },
  POLICY_VALIDITY_TOO_LONG: { status: 400, message: 'The requested lifetime exceeds the profile maximum', hint: 'Ask for a shorter lifetime or raise the profile maximum in the config.' },
  POLICY_UNKNOWN_PROFILE: { status: 400, message: 'Unknown certificate profile', hint: 'Use one of: server, client.' },
  LINT_FAILED: { status: 500, message: 'The certificate failed the pre-issuance lint and was not issued', hint: 'This is a bug or a misconfiguration; the findings name the rule.' },
  // Keys and custody
  KEY_WEAK: { status: 400, message: 'The key is too weak', hint: 'Use ECDSA P-256/P-384, Ed25519, or RSA of at least 2048 bits.' },
  KEY_PASSPHRASE_MISSING: { status: 500, message: 'No CA passphrase was given', hint: 'Set MUTUAL_CA_PASSPHRASE, pass --passphrase-file FILE, or run in a terminal to be prompted.' },
  KEY_PASSPHRASE_WEAK: { status: 400, message: 'The CA passphrase is too short', hint: 'Use a passphrase of at least 12 characters.' },
  KEY_PASSPHRASE_WRONG: { status: 500, message: 'The CA key could not be decrypted with that passphrase', hint: 'Check MUTUAL_CA_PASSPHRASE or the passphrase file.' },
  KEY_FILE_INSECURE: { status: 500, message: 'A key file or folder is readable by other users', hint: 'Run `chmod 600` on the key and `chmod 700` on its folder.' },
  KEY_FILE_MISSING: { status: 500, message: 'A key file is missing', hint: 'Check --home / MUTUAL_HOME, or run `mutual init`.' },
  KEY_FILE_EXISTS: { status: 409, message: 'A key file already exists; mutual never overwrites a key', hint: 'Move the old key away yourself if you really mean to replace it, or use another folder.' },
  KEY_MISMATCH: { status: 400, message: 'The private key does not match the certificate', hint: 'Pair each certificate with the key it was issued for.' },
  // CA state
  CA_NOT_INITIALIZED: { status: 500, message: 'No CA was found in the state folder', hint: 'Run `mutual init --trust-domain <domain>` first, or point --home / MUTUAL_HOME at the right folder.' },
  CA_ALREADY_INITIALIZED: { status: 409, message: 'A CA already exists in the state folder', hint: 'Use another --home, or remove the folder if you really mean to start over.' },
  CA_ISSUER_EXPIRED: { status: 500, message: 'The issuing CA certificate has expired or is not yet valid', hint: 'Re-sign the intermediate with `mutual offline sign-intermediate`.' },
  OUTPUT_EXISTS: { status: 409, message: 'An output file already exists', hint: 'Use --force to replace it, or choose another --out folder.' },
  CONFIG_INVALID: { status: 500, message: 'The configuration is invalid', hint: 'Fix the field named in the detail.' },
  // Inventory
  CERT_NOT_FOUND: { status: 404, message: 'No such certificate in the inventory', hint: 'Check the serial (`mutual list`), or give the certificate file.' },
  CERT_ALREADY_REVOKED: { status: 409, message: 'The certificate is already revoked', hint: 'Nothing to do; `mutual inspect` shows when and why.' },
  CERT_WRONG_ISSUER: { status: 400, message: 'The certificate was not issued by this CA', hint: 'Use the CA that issued it (see its Issuer with `mutual inspect`).' },
  REVOKE_BAD_REASON: { status: 400, message: 'Unknown revocation reason', hint: 'Use an RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, privilegeWithdrawn.' },
  AUDIT_TAMPERED: { status: 500, message: 'The audit log hash chain is broken', hint: 'An entry was changed or removed; restore the database from backup and investigate.' },
  STORE_FAILED: { status: 500, message: 'The inventory could not be written; nothing was issued', hint: 'Check disk space and permissions of the state folder.' },
  // The CA server: requests, authentication, tokens
  REQUEST_MALFORMED: { status: 400, message: 'The request is malformed', hint: 'Send JSON as documented in docs/api.md.' },
  REQUEST_TOO_LARGE: { status: 413, message: 'The request body is too large', hint: 'CSRs and API requests are a few KB; check what is being sent.' },
  NOT_FOUND: { status: 404, message: 'No such endpoint', hint: 'See docs/api.md for the endpoints.' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'Method not allowed on this endpoint', hint: 'See docs/api.md.' },
  RATE_LIMITED: { status: 429, message: 'Too many requests', hint: 'Slow down and retry after the time in Retry-After.' },
  AUTH_REQUIRED: { status: 401, message: 'This endpoint needs authentication', hint: 'Present an admin client certificate (mTLS), or an enrollment token for /v1/enroll.' },
  AUTH_FORBIDDEN: { status: 403, message: 'The presented identity may not do this', hint: 'Admin routes need a certificate for spiffe://<trust-domain>/admin/<name> from the client CA.' },
  TOKEN_INVALID: { status: 401, message: 'The enrollment token is invalid', hint: 'Get a new token with `mutual token <names>`; tokens cannot be edited.' },
  TOKEN_EXPIRED: { status: 401, message: 'The enrollment token has expired', hint: 'Get a new token with `mutual token <names> --ttl 10m` and enroll within its lifetime.' },
  TOKEN_REPLAYED: { status: 401, message: 'The enrollment token was already used', hint: 'Tokens are single use; get a new one with `mutual token <names>`.' },
  TOKEN_NAME_MISMATCH: { status: 403, message: 'The request asks for names the token does not allow', hint: 'Ask for exactly the names the token was made for, or make a token for these names.' },
  RENEW_NOT_ALLOWED: { status: 403, message: 'This certificate cannot be renewed', hint: 'Renew before expiry with the current, unrevoked certificate; otherwise enroll again with a new token.' },
  CA_UNAVAILABLE: { status: 503, message: 'The CA server could not be reached', hint: 'Check --ca-url and that `mutual serve` is running; retry later.' },
  CA_UNTRUSTED: { status: 495, message: 'The CA server\'s root does not match the pinned fingerprint', hint: 'Check the CA URL; the token or --root names the root you expect.' },
  // Verification (SDK, gateway, monitor)
  CERT_EXPIRED: { status: 495, message: 'The certificate has expired', hint: 'Renew it with `mutual ca renew` (or let `mutual agent` do it).' },
  CERT_NOT_YET_VALID: { status: 495, message: 'The certificate is not yet valid', hint: 'Check the clocks of both hosts.' },
  CERT_REVOKED: { status: 495, message: 'The certificate has been revoked', hint: 'Get a new certificate; a revoked one cannot be used again.' },
  CERT_UNTRUSTED: { status: 495, message: 'The certificate chain does not lead to a trusted CA', hint: 'Use a certificate from this CA, and send the intermediate (fullchain.pem).' },
  CERT_WRONG_EKU: { status: 495, message: 'The certificate is not allowed for this use (extended key usage)', hint: 'Clients need a client certificate (`mutual issue client`), servers a server certificate.' },
  CERT_NAME_MISMATCH: { status: 495, message: 'The certificate does not carry the expected name', hint: 'Issue a certificate for the name clients connect to.' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** Structured fields a MutualError may carry. */
export interface MutualErrorFields {
  /** More precise cause, safe to show (never secrets). */
  detail?: string;
  serial?: string;
  [key: string]: unknown;
}

/** A failure with a stable code, an HTTP status, a message and a hint on what to do. */
export class MutualError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly hint: string;
  readonly fields: MutualErrorFields;

  constructor(code: ErrorCode, fields: MutualErrorFields = {}, options?: { cause?: unknown }) {
    const spec = ERRORS[code];
    super(fields.detail ? `${spec.message}: ${fields.detail}` : spec.message, options);
    this.name = 'MutualError';
    this.code = code;
    this.status = spec.status;
    this.hint = spec.hint;
    this.fields = fields;
  }

  /** A JSON view for API responses and `--json` output. */
  toJSON(): { code: ErrorCode; message: string; hint: string; detail?: string } {
    return { code: this.code, message: this.message, hint: this.hint, ...(this.fields.detail ? { detail: this.fields.detail } : {}) };
  }
}

/** True when `e` is a MutualError, optionally with the given code. */
export function isMutualError(e: unknown, code?: ErrorCode): e is MutualError {
  return e instanceof MutualError && (code === undefined || e.code === code);
}
