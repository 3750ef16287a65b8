/**
 * The authority's face to the other parts: issuing, renewing and revoking, CA init and the offline
 * ceremonies, tokens, the audit chain, the storage interface it declares and the services `serve` runs.
 * Exports by name only. `home.ts`, `limits.ts`, `open-ca-store.ts` and `store.ts` are faces of their
 * own (docs/ARCHITECTURE.md, "Faces").
 */
export { CertificateAuthority, type IssueRequest, type IssueResult, type OpenAuthorityOptions, type LeafRole, type IntermediateCa, MAX_RENEWAL_GRACE_SECONDS } from './authority.ts';
export { openAuthority, type OpenAuthorityAtOptions } from './open-authority.ts';
export { initCa, type InitCaOptions, type InitCaResult } from './init-ca.ts';
export { signIntermediate, renewRootCrl } from './offline.ts';
export { intermediateCsr, installIntermediate } from './intermediate.ts';
export { rotateRoot, DEFAULT_RETIRE_AFTER_DAYS, type RotateRootOptions, type RotateRootResult } from './root-rotation.ts';
export { installRoot, installRootCrl, retireRoot } from './root-install.ts';
export { rotationStatus, STATUS_LIST_CAP, type RotationStatus } from './rotation-status.ts';
export { crossCertificate, rootsDocument, trustBundleText, type RotationState } from './trust-bundle.ts';
export { verifyAuditLog } from './audit.ts';
export { mintToken, verifyToken, loadTokenKey, MAX_TOKEN_TTL_SECONDS } from './tokens.ts';
export { CrlSchedule } from './crl-schedule.ts';
export { Enrollment } from './enrollment.ts';
export { RevocationFeed, REVOCATION_POLL_MS } from './revocation-feed.ts';
export { SelfRenewal, type TlsCredentials } from './self-renewal.ts';
export { OcspResponders, type OcspIssuer } from './ocsp-responders.ts';
export { writeIssued } from './write-issued.ts';
export { readConfig, profileLifetimes } from './config.ts';
export { tokenKeyStore, ocspKeyStore } from './key-store-choice.ts';
export type { KeysConfig } from './keys-config.ts';
export { KeyHealth, KEY_HEALTH_INTERVAL_MS, type KeyHealthReport, type KeyState } from './key-health.ts';
export { keyLocations, needsPassphrase, type KeyLocation } from './key-locations.ts';
export { checkLifetime } from './issue-request.ts';
export { AcmeAuthority, type AcmeAuthorityOptions } from './acme/acme-authority.ts';
export { challengeValidators, type AcmeValidators, type ValidationOptions } from './acme/acme-validators.ts';
export type {
  AcmeService, AcmeAccount, AcmeAuthorization, AcmeCertificateChain, AcmeChallenge, AcmeChallengeType, AcmeIdentifier, AcmeMeta, AcmeOrder, AcmeSubproblem, FlattenedJws, RenewalInfo,
} from './acme/acme-api.ts';
export { acmeConfig, type AcmeConfig } from './config.ts';
export { createEabKey, checkEabNames } from './acme/eab-keys.ts';
export type { AcmeEabKey, AcmeStore } from './acme/acme-store.ts';
export { openAcme } from './acme/open-acme.ts';
