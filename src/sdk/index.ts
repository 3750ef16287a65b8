/**
 * `mutual/sdk`: mTLS inside a Node service, with the same verification as the gateway.
 * Exports by name only; see docs/sdk.md. It is also the SDK's face to the other parts of mutual
 * (the gateway, agent and monitor import only this file).
 */
export { PeerVerifier, verifiedChain, readCertificates, CRL_REFRESH_MS, MAX_CACHED_CERTIFICATES } from './verifier.ts';
export type { VerifierOptions, RevocationOptions, RevocationMode, PeerIdentity, PeerChain, IssuerRevocationStatus } from './verifier.ts';
export { IdentitySource, statStamp, loadIdentity, enrollIdentity, identityMaterial, RENEW_FRACTION, IDENTITY_POLL_MS } from './identity-source.ts';
export type { IdentityMaterial, LoadIdentityOptions, EnrollIdentityOptions } from './identity-source.ts';
export { createServer, peerIdentity, setPeerIdentity, sendError, checkAllowed } from './server.ts';
export type { CreateServerOptions, MtlsServer, MtlsHandler, MtlsRequest, MtlsResponse } from './server.ts';
export { createDispatcher, createFetch, MtlsDispatcher, MtlsHttpsAgent, serverIdentityChecker } from './client.ts';
export type { MtlsClientOptions, DispatcherOptions, MtlsFetch } from './client.ts';
export { identityFromXfcc, parseXfcc, formatXfcc, xfccFor, formatClientCert, formatClientCertChain, XFCC_HEADER, CLIENT_CERT_HEADER, CLIENT_CERT_CHAIN_HEADER } from './xfcc.ts';
export type { XfccElement, ForwardedIdentity, XfccTrustOptions } from './xfcc.ts';
export { allow, fastifyAllow, callerIdentity } from './middleware.ts';
export type { AllowOptions, FastifyLikeRequest, FastifyLikeReply } from './middleware.ts';
export { createFetchBytes } from './fetch-bytes.ts';
export type { FetchBytes, FetchBytesRequest } from './fetch-bytes.ts';
export { enroll, renew, adminCall, fetchCaCertificates, fetchCrl, fetchRoots, fetchPinnedRoot, fingerprintOf, readTokenClaims } from './ca-client.ts';
export type { IssuedCertificate, AcceptedRoots, ListedRoot } from './ca-client.ts';
export { AcmeClient, acmeAccountKey, ariCertificateId } from './acme-client.ts';
export type { AcmeClientOptions, AcmeOrderOptions, AcmeCertificate, AcmeChallenge, AcmeChallengeSolver, AcmeChallengeType, RenewalInfo } from './acme-client.ts';
export { MutualError, isMutualError } from '../core/errors.ts';
export type { ErrorCode } from '../core/errors.ts';
