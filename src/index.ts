/**
 * `mutual`: the certificate authority as a library (the CLI is a thin layer over these).
 * Exports by name only; the mTLS side for services is `mutual/sdk`.
 */
export { CertificateAuthority, openAuthority, initCa, signIntermediate, renewRootCrl, intermediateCsr, installIntermediate, verifyAuditLog, mintToken, verifyToken } from './ca/index.ts';
export type { IssueRequest, IssueResult, OpenAuthorityOptions, OpenAuthorityAtOptions, LeafRole, IntermediateCa, InitCaOptions, InitCaResult } from './ca/index.ts';
export type {
  CaStore, IssuanceStore, RevocationStore, RevocationLog, AuditStore, TokenStore, InventoryQueries, JobLock, CertificateRecord, StoredCertificate, ListFilter,
} from './ca/store.ts';
export { openSqliteStore, openPostgresStore } from './store/index.ts';
export { startCaServer, type CaServerOptions, type CaServer } from './server/index.ts';
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
