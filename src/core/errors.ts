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
  POLICY_NAME_NOT_ALLOWED: { status: 403, message: 'A requested name is outside what this CA may issue', hint: 'Ask for names under the permitted DNS suffixes, IP ranges or trust domain. They are set by `mutual init --permit-dns/--permit-ip` and carried by the intermediates as name constraints; to widen them later, edit policy in config.yaml and re-sign the intermediates (docs/operations.md, "Widening the permitted names").' },
  POLICY_NO_NAMES: { status: 400, message: 'The request has no names the profile needs', hint: 'Server certificates need DNS or IP names; client certificates need a service identity.' },
  POLICY_BAD_IDENTITY: { status: 400, message: 'The identity is not a valid SPIFFE ID for this trust domain', hint: 'Use spiffe://<trust-domain>/<env>/<service> with lowercase letters, digits, ".", "-" and "_".' },
  POLICY_VALIDITY_TOO_LONG: { status: 400, message: 'The requested lifetime exceeds the profile maximum', hint: 'Ask for a shorter lifetime or raise the profile maximum in the config.' },
  POLICY_VALIDITY_TOO_SHORT: { status: 400, message: 'The requested lifetime is shorter than the 5 minutes mutual issues', hint: 'Ask for 5m or more (e.g. --ttl 15m); a shorter certificate would expire before it could be renewed.' },
  POLICY_UNKNOWN_PROFILE: { status: 400, message: 'Unknown certificate profile', hint: 'Use one of: server, client.' },
  LINT_FAILED: { status: 500, message: 'The certificate failed the pre-issuance lint and was not issued', hint: 'This is a bug or a misconfiguration; the findings name the rule.' },
  // Keys and custody
  KEY_WEAK: { status: 400, message: 'The key is too weak', hint: 'Use ECDSA P-256/P-384, Ed25519, or RSA of 2048 to 4096 bits (whole bytes) with public exponent 65537 (`openssl genpkey -algorithm RSA` makes one).' },
  KEY_PASSPHRASE_MISSING: { status: 500, message: 'No CA passphrase was given', hint: 'Set MUTUAL_CA_PASSPHRASE, pass --passphrase-file FILE, or run in a terminal to be prompted.' },
  KEY_PASSPHRASE_WEAK: { status: 400, message: 'The CA passphrase is too short', hint: 'Use a passphrase of at least 12 characters.' },
  KEY_PASSPHRASE_WRONG: { status: 500, message: 'The CA key could not be decrypted with that passphrase', hint: 'Check MUTUAL_CA_PASSPHRASE or the passphrase file.' },
  KEY_FILE_INSECURE: { status: 500, message: 'A key file or folder is readable by other users', hint: 'Run `chmod 600` on the key and `chmod 700` on its folder.' },
  KEY_FILE_MISSING: { status: 500, message: 'A key file is missing', hint: 'Check --home / MUTUAL_HOME, or run `mutual init`.' },
  KEY_FILE_EXISTS: { status: 409, message: 'A key file already exists; mutual never overwrites a key', hint: 'Move the old key away yourself if you really mean to replace it, or use another folder.' },
  KEY_MISMATCH: { status: 400, message: 'The private key does not match the certificate', hint: 'Pair each certificate with the key it was issued for.' },
  // Keys on a PKCS#11 token (HSM): keys/pkcs11
  PKCS11_URI_INVALID: { status: 400, message: 'The pkcs11: URI is not valid', hint: 'Write it as RFC 7512 does, e.g. pkcs11:token=mutual?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/mutual/hsm-pin; never put the PIN itself (pin-value) in it.' },
  HSM_BINDING_MISSING: { status: 500, message: 'The PKCS#11 binding (npm package pkcs11js) is not installed', hint: 'Install it beside mutual (`npm install pkcs11js`; it builds with a C++ compiler and Node\'s headers), or keep the CA keys in files.' },
  HSM_MODULE_INVALID: { status: 500, message: 'The PKCS#11 module could not be loaded', hint: 'Check module-path in the pkcs11: URI: an absolute path to the vendor\'s library (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so; OpenSC: /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so), not writable by others.' },
  HSM_PIN_MISSING: { status: 500, message: 'No PIN was found for the PKCS#11 token', hint: 'Give pin-source in the URI (file:/path, env:NAME or credential:NAME), or set MUTUAL_PKCS11_PIN; a PIN file must be 0600.' },
  HSM_PIN_WRONG: { status: 500, message: 'The PKCS#11 token refused the PIN', hint: 'Check the PIN source; a token locks after a few wrong PINs, so do not retry blindly (`pkcs11-tool -L` shows its state).' },
  HSM_TOKEN_NOT_FOUND: { status: 503, message: 'No PKCS#11 token matches the URI', hint: 'Check token= (and serial=) in the URI against `pkcs11-tool --module M -L`; is the device plugged in?' },
  HSM_KEY_NOT_FOUND: { status: 500, message: 'The key named by the pkcs11: URI is not on the token', hint: 'Check object= and id= against `pkcs11-tool --module M --login -O`; a key reference file must name a key that exists.' },
  HSM_MECHANISM_UNSUPPORTED: { status: 500, message: 'The token cannot make this key type or signature', hint: 'Use a key type the token supports (`pkcs11-tool --module M -M` lists its mechanisms): P-256, P-384 or RSA.' },
  HSM_KEY_EXTRACTABLE: { status: 500, message: 'The key on the PKCS#11 token can leave it (CKA_EXTRACTABLE, or not CKA_SENSITIVE)', hint: 'A CA key must stay on the token: make a new key with `mutual` (it sets CKA_SENSITIVE and not CKA_EXTRACTABLE), or with pkcs11-tool --keypairgen --sensitive; `pkcs11-tool --login -O` shows the flags.' },
  HSM_UNAVAILABLE: { status: 503, message: 'The PKCS#11 token holding a CA key is not answering', hint: 'Check that the HSM is present and its module works (`pkcs11-tool --module M -L`); mutual reconnects by itself once it answers, and nothing was issued meanwhile.' },
  // CA state
  CA_NOT_INITIALIZED: { status: 500, message: 'No CA was found in the state folder', hint: 'Run `mutual init --trust-domain <domain>` first, or point --home / MUTUAL_HOME at the right folder.' },
  CA_ALREADY_INITIALIZED: { status: 409, message: 'A CA already exists in the state folder', hint: 'Use another --home, or remove the folder if you really mean to start over.' },
  CA_ISSUER_EXPIRED: { status: 500, message: 'The issuing CA certificate has expired or is not yet valid', hint: 'Re-sign the intermediate with `mutual offline sign-intermediate`.' },
  ROTATION_IN_PROGRESS: { status: 409, message: 'A root rotation is already under way', hint: 'Finish it first: install the new intermediates, then `mutual root retire`; to rotate again afterwards, archive the offline folder\'s root.prev.* files and rotation.json.' },
  ROTATION_NOT_STARTED: { status: 409, message: 'No root rotation is under way for this step', hint: 'Run `mutual root rotate --offline-dir D` offline, then `mutual root install --from D`; `mutual rotation status` shows the phase.' },
  ROTATION_WRONG_CA: { status: 400, message: 'The rotation in that folder is not for this CA\'s root', hint: 'Give --from the offline folder of this CA (its old root must be this CA\'s ca/root.pem).' },
  ROTATION_CROSS_INVALID: { status: 400, message: 'A cross-certificate does not join the old and new roots', hint: 'Make the rotation again with `mutual root rotate`; a cross-certificate must carry the other root\'s subject and key and verify under its issuing root.' },
  ROTATION_INTERMEDIATES_PENDING: { status: 409, message: 'The new root does not issue yet: the intermediates under it are not installed', hint: 'Sign new intermediates with the new root (`mutual intermediate csr --new-key`, `mutual offline sign-intermediate`, `mutual intermediate install`) for both roles, then retire.' },
  ROTATION_LEAVES_REMAIN: { status: 409, message: 'Valid leaves still chain only to the old root', hint: 'Let them renew (ARI and agents renew them now) or revoke them; `mutual rotation status` lists them; --force retires anyway and leaves them untrusted.' },
  USAGE_INVALID: { status: 400, message: 'The command line is not valid', hint: 'Run the command with --help for its arguments and options; durations are a whole number and s, m, h or d (15m, 8h, 30d).' },
  FILE_NOT_FOUND: { status: 400, message: 'A file the command needs does not exist', hint: 'Check the path (a relative path starts from the current folder).' },
  FILE_UNREADABLE: { status: 400, message: 'A file the command needs cannot be read', hint: 'Check that the path names a file, not a folder, and that this user may read it (`ls -l`).' },
  OUTPUT_EXISTS: { status: 409, message: 'An output file already exists', hint: 'Use --force to replace it, or choose another --out folder.' },
  CONFIG_INVALID: { status: 500, message: 'The configuration is invalid', hint: 'Fix the field named in the detail.' },
  // Inventory
  CERT_NOT_FOUND: { status: 404, message: 'No such certificate in the inventory', hint: 'Check the serial (`mutual list`), or give the certificate file.' },
  SERIAL_INVALID: { status: 400, message: 'The serial is not a certificate serial number', hint: 'Give the serial in hex as `mutual list` prints it (1 to 64 hex digits, ":" separators allowed), or the certificate file.' },
  CERT_ALREADY_REVOKED: { status: 409, message: 'The certificate is already revoked', hint: 'Nothing to do; `mutual inspect` shows when and why.' },
  CERT_WRONG_ISSUER: { status: 400, message: 'The certificate was not issued by this CA', hint: 'Use the CA that issued it (see its Issuer with `mutual inspect`).' },
  REVOKE_BAD_REASON: { status: 400, message: 'Unknown revocation reason', hint: 'Use an RFC 5280 reason: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, privilegeWithdrawn.' },
  AUDIT_TAMPERED: { status: 500, message: 'The audit log hash chain is broken', hint: 'An entry was changed or removed; restore the database from backup and investigate.' },
  STORE_FAILED: { status: 500, message: 'The inventory could not be written; nothing was issued', hint: 'Check disk space and permissions of the state folder.' },
  STORE_UNAVAILABLE: { status: 503, message: 'The inventory\'s database could not be opened', hint: 'Check that PostgreSQL is running and reachable, and the database settings: --database, MUTUAL_DATABASE_URL or config.yaml\'s database, and PGPASSWORD or ~/.pgpass.' },
  STORE_CORRUPT: { status: 500, message: 'A row of the inventory cannot be read', hint: 'The database was edited or damaged: run `mutual audit verify`, restore it from backup and investigate.' },
  // The CA server: requests, authentication, tokens
  REQUEST_MALFORMED: { status: 400, message: 'The request is malformed', hint: 'Send JSON as documented in docs/api.md.' },
  REQUEST_TOO_LARGE: { status: 413, message: 'The request body is too large', hint: 'CSRs and API requests are a few KB; check what is being sent.' },
  NOT_FOUND: { status: 404, message: 'No such endpoint', hint: 'See docs/api.md for the endpoints.' },
  PATH_NOT_CANONICAL: { status: 400, message: 'The request path is not in canonical form', hint: 'Send the path exactly as docs/api.md writes it: no "." or ".." segments, percent-escapes, empty segments ("//"), backslashes or absolute URLs.' },
  CLIENT_ABORTED: { status: 400, message: 'The client closed the connection before its request was read', hint: 'Nothing to do on the server; the client gave up or lost its connection (check its timeouts).' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'Method not allowed on this endpoint', hint: 'See docs/api.md.' },
  RATE_LIMITED: { status: 429, message: 'Too many requests', hint: 'Slow down and retry after the time in Retry-After.' },
  AUTH_REQUIRED: { status: 401, message: 'This endpoint needs authentication', hint: 'Present an admin client certificate (mTLS), or an enrollment token for /v1/enroll.' },
  AUTH_FORBIDDEN: { status: 403, message: 'The presented identity may not do this', hint: 'Admin routes need a certificate for spiffe://<trust-domain>/admin/<name> from the client CA.' },
  TOKEN_INVALID: { status: 401, message: 'The enrollment token is invalid', hint: 'Get a new token with `mutual token <names>`; tokens cannot be edited.' },
  TOKEN_EXPIRED: { status: 401, message: 'The enrollment token has expired', hint: 'Get a new token with `mutual token <names> --ttl 10m` and enroll within its lifetime.' },
  TOKEN_REPLAYED: { status: 401, message: 'The enrollment token was already used', hint: 'Tokens are single use; get a new one with `mutual token <names>`.' },
  TOKEN_MISSING: { status: 401, message: 'No enrollment token was given, or it is empty', hint: 'Give the token from `mutual token` with --token-file <file> or MUTUAL_TOKEN (--token shows it to anyone running ps); check that the file or variable is not empty.' },
  TOKEN_NAME_MISMATCH: { status: 403, message: 'The request asks for names the token does not allow', hint: 'Ask for exactly the names the token was made for, or make a token for these names.' },
  RENEWAL_TOO_SOON: { status: 429, message: 'This certificate was renewed too often in the last minute', hint: 'Use the certificate the last renewal returned; if it was lost, retry after the seconds in Retry-After (the new renewal supersedes the lost ones).' },
  ENROLL_LIFETIME_FIXED: { status: 400, message: 'The certificate lifetime is set by the token, not by the enrollment request', hint: 'Leave out `days`; an admin chooses the lifetime when making the token (`mutual token NAMES --cert-ttl 8h`).' },
  RENEW_NOT_ALLOWED: { status: 403, message: 'This certificate cannot be renewed', hint: 'Renew before expiry with the current, unrevoked certificate; otherwise enroll again with a new token.' },
  CA_UNAVAILABLE: { status: 503, message: 'The CA server could not be reached', hint: 'Check --ca-url and that `mutual serve` is running; retry later.' },
  CA_UNTRUSTED: { status: 495, message: 'The CA server\'s root does not match the pinned fingerprint', hint: 'Check the CA URL; the token or --root names the root you expect.' },
  CA_ANSWER_INVALID: { status: 502, message: 'The CA server\'s answer could not be used', hint: 'Check that --ca-url (or ca.url in agent.yaml) points at `mutual serve` and that client and server are of the same mutual release; the detail names what was wrong.' },
  // Agent (mutual agent: renewal and deployment on a host)
  AGENT_TOKEN_NEEDED: { status: 401, message: 'The agent needs a new one-time token to get this certificate', hint: 'Make one with `mutual token <names>` and write it to the certificate\'s tokenFile in agent.yaml; the agent enrolls on its next run.' },
  AGENT_REVOKED: { status: 495, message: 'The agent\'s certificate is on the CA\'s revocation list and cannot be renewed', hint: 'Write a new token (`mutual token <names>`) to the certificate\'s tokenFile; the agent enrolls again and replaces the revoked files.' },
  AGENT_WRITE_FAILED: { status: 500, message: 'A managed file could not be written; the files in place were kept', hint: 'Check that the target folder exists or can be created, is writable by the agent, and that owner/group in agent.yaml exist.' },
  AGENT_CHECK_FAILED: { status: 500, message: 'The check command refused the new files; the previous files were restored', hint: 'Run the check command (e.g. `nginx -t`) by hand and fix what it reports; the agent retries with backoff.' },
  AGENT_RELOAD_FAILED: { status: 500, message: 'The service could not be reloaded; the previous files were restored and the service reloaded again', hint: 'Check the reload command or pidFile in agent.yaml and the service\'s own log.' },
  AGENT_VERIFY_FAILED: { status: 500, message: 'The service does not serve the new certificate after the reload; the previous files were restored', hint: 'Check verify.host/port in agent.yaml and that the service reads the files the agent writes.' },
  AGENT_ROLLBACK_FAILED: { status: 500, message: 'A failed deployment could not be rolled back', hint: 'Look at the service now; `mutual agent status` shows the files in place. Fix the cause named in the log, then run `mutual agent rotate <name>`.' },
  AGENT_TEMPLATE_INVALID: { status: 400, message: 'A deployment file in the watched folder has an invalid header or placeholder', hint: 'Start the file with `# deploy-target: /absolute/path` (and optional owner, group, mode, check, reload lines); see docs/agent.md for the placeholders.' },
  AGENT_LOCKED: { status: 409, message: 'Another mutual agent is working on this state folder', hint: 'Wait for it to finish or stop it; the lock of a process that died is taken over automatically.' },
  AGENT_CRL_STALE: { status: 503, message: 'A CRL file is near or past its nextUpdate and could not be refreshed', hint: 'Make the CA reachable (the agent retries with backoff); services that check CRLs (nginx ssl_crl) refuse every client once the CRL expires.' },
  AGENT_CERT_EXPIRING: { status: 503, message: 'A managed certificate is close to expiry and could not be renewed', hint: 'Make the CA reachable; the agent keeps retrying with backoff. `mutual agent status` shows the time left.' },
  // Monitor and doctor
  CERT_EXPIRING: { status: 495, message: 'The certificate expires soon', hint: 'Renew it before it expires: `mutual ca renew cert.pem key.pem --ca-url URL`, or let `mutual agent` renew it at 2/3 of its lifetime.' },
  CERT_WEAK: { status: 495, message: 'The certificate uses a weak key or a weak signature algorithm (SHA-1)', hint: 'Replace it with one from mutual (ECDSA P-256 with SHA-256): `mutual issue server NAME` or `mutual issue client SERVICE`.' },
  CERT_CHAIN_INCOMPLETE: { status: 495, message: 'The server does not send the intermediate certificate', hint: 'Configure the server with fullchain.pem (certificate + intermediate), not cert.pem.' },
  CERT_REVOKED_SERVED: { status: 495, message: 'A revoked certificate is still being served', hint: 'Install the replacement certificate on that server and reload it; `mutual issue server NAME --out DIR` makes one.' },
  CLIENT_CERT_REFUSED: { status: 495, message: 'The server refused the client certificate', hint: '`mutual doctor HOST:PORT --cert cert.pem --key key.pem` names the reason and the fix.' },
  CRL_STALE: { status: 495, message: 'The CRL is past its nextUpdate or close to it', hint: 'Keep `mutual serve` running (it rebuilds CRLs at half their lifetime) or run `mutual crl --issuer server|client`; renew the root CRL with `mutual offline crl`.' },
  MONITOR_SOURCE_UNREADABLE: { status: 500, message: 'A monitored file or folder could not be read', hint: 'Check the path in the monitor config and that the monitor\'s user may read it; a PKCS#12 file needs passwordFile.' },
  MONITOR_ENDPOINT_UNREACHABLE: { status: 503, message: 'The endpoint could not be reached, or the TLS handshake did not finish in time', hint: 'Check that the service runs and listens on that address; a hung service or a firewall shows as a timeout.' },
  MONITOR_ALERT_FAILED: { status: 502, message: 'An alert could not be delivered', hint: 'Check the SMTP server or webhook URL, its credentials and TLS settings in the alerts section; the alert is retried on the next run.' },
  MONITOR_ROOT_RETIRING: { status: 495, message: 'A root the CA is retiring is still in use, or retires soon', hint: 'Renew the certificates that chain to it (mutual agent does at once during the overlap) and serve the new fullchain.pem; check with GET /roots.json.' },
  MONITOR_ROOT_RETIRED_IN_USE: { status: 495, message: 'A root past its retire-at still has certificates chaining to it', hint: 'Renew those certificates now (mutual agent renew, or mutual issue), or postpone the retirement; relying parties that dropped the root refuse them.' },
  MONITOR_BUNDLE_MISSING_ROOT: { status: 495, message: 'A trust bundle lacks the CA\'s current root during a root rollover', hint: 'Add the current root (GET /roots.pem from the CA) or let mutual agent render the bundle with include: [root].' },
  MONITOR_STATE_INVALID: { status: 500, message: 'The monitor state file cannot be read', hint: 'Move it away to start over (findings already alerted are then alerted once more).' },
  // Verification (SDK, gateway, monitor)
  CERT_EXPIRED: { status: 495, message: 'The certificate has expired', hint: 'Renew it with `mutual ca renew` (or let `mutual agent` do it).' },
  CERT_NOT_YET_VALID: { status: 495, message: 'The certificate is not yet valid', hint: 'Check the clocks of both hosts.' },
  CERT_REVOKED: { status: 495, message: 'The certificate has been revoked', hint: 'Get a new certificate; a revoked one cannot be used again.' },
  CERT_UNTRUSTED: { status: 495, message: 'The certificate chain does not lead to a trusted CA', hint: 'Use a certificate from this CA, and send the intermediate (fullchain.pem).' },
  CERT_WRONG_EKU: { status: 495, message: 'The certificate is not allowed for this use (extended key usage)', hint: 'Clients need a client certificate (`mutual issue client`), servers a server certificate.' },
  CERT_NAME_MISMATCH: { status: 495, message: 'The certificate does not carry the expected name', hint: 'Issue a certificate for the name clients connect to.' },
  CERT_MISSING: { status: 496, message: 'No client certificate was presented', hint: 'Present a client certificate from the client CA (e.g. `curl --cert cert.pem --key key.pem`); get one with `mutual issue client`.' },
  CERT_ISSUER_NOT_ALLOWED: { status: 495, message: 'The certificate was not issued by a client CA this service trusts', hint: 'Use a client certificate from the client CA (`mutual issue client`); server certificates and certificates of other CAs are refused.' },
  CERT_BAD_SIGNATURE: { status: 495, message: 'The certificate names a trusted client CA as its issuer but is not signed by that CA\'s key', hint: 'A CA with the same name but another key (a look-alike) issued it, or it was altered; use a client certificate from this CA (`mutual issue client`).' },
  CERT_IS_CA: { status: 495, message: 'A CA certificate was presented as a client certificate', hint: 'Present the client (end-entity) certificate first, from `mutual issue client`; a CA certificate never authenticates a caller.' },
  CERT_CRITICAL_EXTENSION: { status: 495, message: 'The certificate has a critical extension this verifier does not process', hint: 'RFC 5280 requires refusing it; issue the certificate without that extension (mutual\'s CA never writes one).' },
  CERT_NAME_NOT_PERMITTED: { status: 495, message: 'The certificate carries a name outside its CA\'s name constraints', hint: 'The CA may not vouch for that name (another trust domain, DNS suffix or IP range); issue the certificate with names inside the CA\'s permitted subtrees.' },
  CERT_CHAIN_EXPIRED: { status: 495, message: 'A CA certificate of the chain (the client CA or its root) is expired or not yet valid', hint: 'The detail names which certificate. A client that sends an old copy of the client CA must send the current one (fullchain.pem); an expired client CA or root must be renewed and the trust bundles updated.' },
  REVOCATION_UNAVAILABLE: { status: 503, message: 'No fresh revocation data for the certificate\'s issuer, so it was refused (fail-closed)', hint: 'Check that the CA\'s CRL URL or OCSP responder is reachable from this host, or that `mutual agent` keeps the CRL file fresh.' },
  CRL_MALFORMED: { status: 400, message: 'The CRL could not be parsed or cannot be used', hint: 'Fetch a fresh CRL from the CA (GET /crl/client.crl); delta and indirect CRLs are not supported.' },
  CRL_TOO_LARGE: { status: 413, message: 'The CRL has more entries than mutual reads', hint: 'Keep certificate lifetimes short so expired entries drop off the CRL, or raise the entry limit.' },
  CRL_BAD_SIGNATURE: { status: 400, message: 'The CRL is not signed by the CA it names', hint: 'Fetch the CRL of the CA that issued the certificates; check the CRL URL or file in the configuration.' },
  FETCH_FAILED: { status: 502, message: 'A URL could not be fetched (a CRL, an OCSP responder or a webhook)', hint: 'Check the URL (http: or https:), that its server is reachable from this host and answers within the timeout, and that the answer fits the size limit; `reason` names the cause (ETIMEDOUT, EFBIG, EPROTO, EHTTP).' },
  OCSP_RESPONSE_INVALID: { status: 502, message: 'The OCSP responder\'s answer cannot be used', hint: 'Check the OCSP URL in the certificates and that the responder (`mutual serve`) has a current responder certificate and the CA\'s clock is right; meanwhile the verifier relies on the CRL or refuses (fail-closed).' },
  ACCESS_DENIED: { status: 403, message: 'The identity is not allowed here', hint: 'Ask the owner of the service to add the identity to the allow list (gateway.yaml routes[].allow, or `allow` of createServer).' },
  XFCC_UNTRUSTED: { status: 403, message: 'A forwarded client identity arrived on a connection that is not a trusted proxy', hint: 'Call the service through the gateway, or add the gateway\'s identity to trustedProxies.' },
  ROUTE_NOT_FOUND: { status: 404, message: 'No gateway route matches this host and path', hint: 'Check the host name and path prefix against the routes in gateway.yaml.' },
  UPSTREAM_UNAVAILABLE: { status: 502, message: 'The upstream service could not be reached or failed', hint: 'Check that the route\'s backend is running and trusts the gateway\'s client certificate; the gateway log has the cause.' },
  UPSTREAM_TIMEOUT: { status: 504, message: 'The upstream service did not answer in time', hint: 'Check the backend\'s health and load, or raise limits.upstreamTimeoutMs in gateway.yaml.' },
  BODY_TOO_LARGE: { status: 413, message: 'The request body is larger than this service accepts', hint: 'Send a smaller body, or raise limits.maxBodyBytes in gateway.yaml.' },
  PATH_AMBIGUOUS: { status: 400, message: 'The request path has a form a backend could resolve to another route, so the gateway refused it', hint: 'Send the path in plain form: no "." or ".." segments, no empty segments ("//"), no backslashes or ";", and no percent-encoded "/", "\\", "%" or control characters (see docs/gateway.md, "Paths and hosts").' },
  HOST_INVALID: { status: 400, message: 'The request host is malformed, or Host and :authority name different hosts', hint: 'Send one host name (letters, digits, "-", "_", "." and an optional :port) or a bracketed IPv6 address, the same in :authority and Host.' },
  HEADERS_TOO_LARGE: { status: 431, message: 'The request header block is larger than this service accepts', hint: 'Send fewer or smaller headers (cookies are the usual cause), or raise limits.maxHeaderBytes in gateway.yaml.' },
  LISTEN_FAILED: { status: 500, message: 'A listener could not be opened', hint: 'EADDRINUSE: another process holds the port (stop it or change listen/admin in the config); EACCES: ports below 1024 need privileges; EADDRNOTAVAIL: the address is not on this host.' },
  // ACME (RFC 8555): the transport maps each to an urn:ietf:params:acme:error type (server/acme)
  ACME_DISABLED: { status: 404, message: 'ACME is not enabled on this CA', hint: 'Enable it in config.yaml (`acme: { enabled: true }`) and reload `mutual serve`; docs/acme.md.' },
  ACME_MALFORMED: { status: 400, message: 'The ACME request is malformed', hint: 'The detail names the field; check the client\'s version and its RFC 8555 support.' },
  ACME_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'An ACME POST must have Content-Type application/jose+json', hint: 'Send the flattened JWS with Content-Type: application/jose+json (RFC 8555 section 6.2); every ACME client does.' },
  ACME_BAD_NONCE: { status: 400, message: 'The ACME request\'s nonce is unknown, expired or was used before', hint: 'ACME clients retry with the fresh nonce in the Replay-Nonce header; a client that does not is broken.' },
  ACME_BAD_SIGNATURE_ALGORITHM: { status: 400, message: 'The JWS signature algorithm is not accepted', hint: 'Use an account key with ES256, ES384, RS256 (RSA 2048-4096) or EdDSA (Ed25519).' },
  ACME_BAD_SIGNATURE: { status: 403, message: 'The JWS signature does not verify with the account key', hint: 'Sign with the account\'s current key (after a key rollover, the new one).' },
  ACME_BAD_PUBLIC_KEY: { status: 400, message: 'The account key is not acceptable', hint: 'Use an ECDSA P-256/P-384, Ed25519, or RSA 2048-4096 key with exponent 65537.' },
  ACME_ACCOUNT_DOES_NOT_EXIST: { status: 400, message: 'No ACME account has this key', hint: 'Register the account first (newAccount without onlyReturnExisting).' },
  ACME_ACCOUNT_DEACTIVATED: { status: 401, message: 'The ACME account is deactivated', hint: 'Deactivation is final; register a new account with a new key.' },
  ACME_UNAUTHORIZED: { status: 403, message: 'The ACME account may not do this', hint: 'The order, authorization or certificate belongs to another account, or the names are not this account\'s.' },
  ACME_NOT_FOUND: { status: 404, message: 'No such ACME resource', hint: 'Check the URL; orders and authorizations expire and are removed.' },
  ACME_TERMS_NOT_AGREED: { status: 403, message: 'The terms of service were not agreed to', hint: 'Agree to the terms in the directory\'s meta.termsOfService (certbot --agree-tos, lego --accept-tos).' },
  ACME_EXTERNAL_ACCOUNT_REQUIRED: { status: 400, message: 'This CA requires an external account binding', hint: 'Get an EAB key id and HMAC key from the CA\'s operator (`mutual acme eab create`) and pass them to the client (certbot --eab-kid/--eab-hmac-key, lego --eab --kid --hmac).' },
  ACME_EAB_INVALID: { status: 403, message: 'The external account binding does not verify', hint: 'Check the EAB key id and HMAC key; each key binds one account and may have expired.' },
  ACME_KEY_IN_USE: { status: 409, message: 'Another ACME account already has this key', hint: 'Use a new key for the rollover; the response\'s Location names the account that has it.' },
  ACME_REJECTED_IDENTIFIER: { status: 400, message: 'The CA will not issue for an identifier in the order', hint: 'Order only names the account\'s EAB key allows and the server CA\'s name constraints permit; the subproblems name each one.' },
  ACME_UNSUPPORTED_IDENTIFIER: { status: 400, message: 'The identifier type is not supported', hint: 'Order dns or ip identifiers only.' },
  ACME_RATE_LIMITED: { status: 429, message: 'Too many ACME orders from this account', hint: 'Wait for the Retry-After interval, or ask the operator to raise acme.ordersPerHour.' },
  ACME_ORDER_NOT_READY: { status: 403, message: 'The order is not ready to be finalized', hint: 'Complete every authorization first (the order\'s status must be ready).' },
  ACME_BAD_CSR: { status: 400, message: 'The CSR does not match the order', hint: 'The CSR must name exactly the order\'s identifiers (SANs), no more and no fewer.' },
  ACME_BAD_REVOCATION_REASON: { status: 400, message: 'The revocation reason is not allowed', hint: 'Use one of 0, 1, 3, 4, 5, 9 (RFC 5280 reason codes; certificateHold is not supported).' },
  ACME_CONNECTION: { status: 400, message: 'The CA could not connect to validate the challenge', hint: 'Check that the name resolves from the CA and the port (80 for http-01, 443 for tls-alpn-01) is reachable.' },
  ACME_DNS: { status: 400, message: 'The DNS lookup for the challenge failed', hint: 'Check the _acme-challenge TXT record (or its CNAME) on the resolver in acme.dns.servers.' },
  ACME_INCORRECT_RESPONSE: { status: 403, message: 'The challenge response was not the expected one', hint: 'Serve exactly the key authorization (http-01), its digest (dns-01 TXT), or the acmeIdentifier certificate (tls-alpn-01); the detail says what was seen.' },
  ACME_TLS: { status: 400, message: 'The TLS handshake for tls-alpn-01 failed', hint: 'Offer the acme-tls/1 protocol with a certificate for the name carrying the acmeIdentifier extension.' },
  ACME_COMPOUND: { status: 403, message: 'Several identifiers in the request were refused', hint: 'Each subproblem names an identifier and why.' },
  // The ACME client (mutual agent's acme mode, sdk/acme-client.ts)
  ACME_CLIENT_FAILED: { status: 502, message: 'An ACME server refused or failed a request of the agent', hint: 'The detail holds the server\'s problem type and detail (e.g. rejectedIdentifier: ask only for names its policy allows; unauthorized or incorrectResponse: check the challenge settings in agent.yaml); the files in place were kept and the agent retries with backoff.' },
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
