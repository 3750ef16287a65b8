/**
 * `mutual`: the certificate authority as a library (the CLI is a thin layer over these).
 * Exports by name only; the mTLS side for services is `mutual/sdk`.
 */
export { CertificateAuthority } from './ca/authority.ts';
export type { IssueRequest, IssueResult, OpenAuthorityOptions, LeafRole, IntermediateCa } from './ca/authority.ts';
export { initCa } from './ca/init-ca.ts';
export type { InitCaOptions, InitCaResult } from './ca/init-ca.ts';
export { signIntermediate, renewRootCrl } from './ca/offline.ts';
export { intermediateCsr, installIntermediate } from './ca/intermediate.ts';
export { verifyAuditLog } from './ca/audit.ts';
export { mintToken, verifyToken } from './ca/tokens.ts';
export type {
  CaStore, IssuanceStore, RevocationStore, RevocationLog, AuditStore, TokenStore, InventoryQueries, JobLock, CertificateRecord, StoredCertificate, ListFilter,
} from './ca/store.ts';
export { openSqliteStore } from './store/sqlite-store.ts';
export { openPostgresStore } from './store/postgres-store.ts';
export { startCaServer } from './server/ca-server.ts';
export type { CaServerOptions, CaServer } from './server/ca-server.ts';
export { parseCertificate } from './core/certificate.ts';
export type { CertificateInfo } from './core/certificate.ts';
export { parseCsr, verifyCsr, buildCsr } from './core/csr.ts';
export type { ParsedCsr } from './core/csr.ts';
export { buildPkcs12 } from './core/pkcs12.ts';
export { parseSpiffeId, matchIdentity, serviceIdentity } from './core/identity.ts';
export { keyObjectSigner } from './core/signer.ts';
export type { Signer } from './core/signer.ts';
export { MutualError, isMutualError, ERRORS } from './core/errors.ts';
export type { ErrorCode } from './core/errors.ts';
