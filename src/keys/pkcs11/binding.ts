/**
 * The PKCS#11 binding (npm package pkcs11js, an optional dependency: it needs a C++ compiler) and
 * the Cryptoki constants mutual uses (PKCS#11 v2.40 pkcs11t.h). The binding is loaded on first use,
 * never at import, so `mutual --help` and every file-key command run without it.
 */
import { createRequire } from 'node:module';
import { MutualError } from '../../core/errors.ts';

/** What mutual calls of pkcs11js's PKCS11 class (its own .d.ts is not needed to build mutual). */
export interface Cryptoki {
  load(path: string): void;
  close(): void;
  C_Initialize(o?: { flags?: number }): void;
  C_Finalize(): void;
  C_GetInfo(): { manufacturerID: string; libraryDescription: string; libraryVersion: { major: number; minor: number } };
  C_GetSlotList(tokenPresent?: boolean): Buffer[];
  C_GetSlotInfo(slot: Buffer): { slotDescription: string; manufacturerID: string };
  C_GetTokenInfo(slot: Buffer): { label: string; manufacturerID: string; model: string; serialNumber: string; flags: number };
  C_OpenSession(slot: Buffer, flags: number): Buffer;
  C_CloseSession(session: Buffer): void;
  C_Login(session: Buffer, userType: number, pin?: string): void;
  C_FindObjectsInit(session: Buffer, template: Attribute[]): void;
  C_FindObjects(session: Buffer, max: number): Buffer[];
  C_FindObjectsFinal(session: Buffer): void;
  C_GetAttributeValue(session: Buffer, object: Buffer, template: Attribute[]): { type: number; value: Buffer }[];
  C_SetAttributeValue(session: Buffer, object: Buffer, template: Attribute[]): void;
  C_SignInit(session: Buffer, mechanism: Mechanism, key: Buffer): void;
  C_Sign(session: Buffer, data: Buffer, out: Buffer, cb: (e: Error | null, sig: Buffer) => void): void;
  C_GenerateKeyPair(session: Buffer, mechanism: Mechanism, publicTemplate: Attribute[], privateTemplate: Attribute[]): { publicKey: Buffer; privateKey: Buffer };
}
export interface Attribute {
  type: number;
  value?: number | boolean | string | Buffer;
}
export interface Mechanism {
  mechanism: number;
  parameter?: Buffer | { type: number; hashAlg: number; mgf: number; saltLen: number };
}

/** The module object pkcs11js exports. */
export interface Binding {
  PKCS11: new () => Cryptoki;
  CK_PARAMS_RSA_PSS: number;
}

/** How the binding is loaded; tests inject a failing one. */
export type BindingLoader = () => Binding;

const requireHere = createRequire(import.meta.url);
/** Loads pkcs11js from node_modules. */
export const loadPkcs11js: BindingLoader = () => requireHere('pkcs11js') as Binding;

/**
 * Loads the binding through `loader`.
 * @throws MutualError `HSM_BINDING_MISSING` when it cannot be loaded (not installed, or built for
 *   another Node).
 */
export function loadBinding(loader: BindingLoader = loadPkcs11js): Binding {
  let b: Binding;
  try {
    b = loader();
  } catch (cause) {
    throw new MutualError('HSM_BINDING_MISSING', { detail: `pkcs11js could not be loaded: ${(cause as Error)?.message ?? String(cause)}` }, { cause });
  }
  if (typeof b?.PKCS11 !== 'function') throw new MutualError('HSM_BINDING_MISSING', { detail: 'the package loaded as pkcs11js has no PKCS11 class' });
  return b;
}

/** Return values (CKR_*) mutual acts on, by number. */
export const CKR = {
  FUNCTION_FAILED: 0x06,
  GENERAL_ERROR: 0x05,
  DEVICE_ERROR: 0x30,
  DEVICE_MEMORY: 0x31,
  DEVICE_REMOVED: 0x32,
  KEY_HANDLE_INVALID: 0x60,
  MECHANISM_INVALID: 0x70,
  OBJECT_HANDLE_INVALID: 0x82,
  PIN_INCORRECT: 0xa0,
  PIN_INVALID: 0xa1,
  PIN_LEN_RANGE: 0xa2,
  PIN_EXPIRED: 0xa3,
  PIN_LOCKED: 0xa4,
  SESSION_CLOSED: 0xb0,
  SESSION_HANDLE_INVALID: 0xb3,
  TOKEN_NOT_PRESENT: 0xe0,
  TOKEN_NOT_RECOGNIZED: 0xe1,
  USER_ALREADY_LOGGED_IN: 0x100,
  USER_NOT_LOGGED_IN: 0x101,
  CRYPTOKI_NOT_INITIALIZED: 0x190,
  CRYPTOKI_ALREADY_INITIALIZED: 0x191,
} as const;

const CKR_NAMES = new Map<number, string>(Object.entries(CKR).map(([k, v]) => [v, `CKR_${k}`]));

/** The CKR_* return value of a binding error, or undefined for an error that is not the token's. */
export function ckrOf(e: unknown): number | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === 'number') return code;
  // pkcs11js names the CKR at the start of its message for some errors without setting `code`.
  const m = /^(CKR_[A-Z_]+)/.exec(String((e as Error | null)?.message ?? ''));
  if (m) for (const [n, name] of CKR_NAMES) if (name === m[1]) return n;
  return undefined;
}

/** A CKR for a person: its name, or its hex value. */
export function ckrName(e: unknown): string {
  const code = ckrOf(e);
  if (code === undefined) return String((e as Error | null)?.message ?? e).slice(0, 120);
  return CKR_NAMES.get(code) ?? `CKR 0x${code.toString(16)}`;
}

/**
 * Return values meaning the device, the token or our view of it is gone: the module is marked
 * down and re-initialized (issue 18). Measured with SoftHSM2: a token folder renamed away gives
 * OBJECT_HANDLE_INVALID from C_Sign and GENERAL_ERROR from C_GetSlotList and C_Initialize.
 */
export const DEVICE_ERRORS: ReadonlySet<number> = new Set([
  CKR.DEVICE_ERROR, CKR.DEVICE_REMOVED, CKR.DEVICE_MEMORY, CKR.TOKEN_NOT_PRESENT, CKR.TOKEN_NOT_RECOGNIZED,
  CKR.SESSION_HANDLE_INVALID, CKR.SESSION_CLOSED, CKR.OBJECT_HANDLE_INVALID, CKR.KEY_HANDLE_INVALID,
  CKR.GENERAL_ERROR, CKR.FUNCTION_FAILED, CKR.CRYPTOKI_NOT_INITIALIZED, CKR.USER_NOT_LOGGED_IN,
]);

export const CKF_OS_LOCKING_OK = 0x2;
export const CKF_RW_SESSION = 0x2;
export const CKF_SERIAL_SESSION = 0x4;
export const CKU_USER = 1;

export const CKO_PUBLIC_KEY = 2;
export const CKO_PRIVATE_KEY = 3;
export const CKK_RSA = 0;
export const CKK_EC = 3;
export const CKK_EC_EDWARDS = 0x40;

export const CKA = {
  CLASS: 0x0,
  TOKEN: 0x1,
  PRIVATE: 0x2,
  LABEL: 0x3,
  KEY_TYPE: 0x100,
  ID: 0x102,
  SENSITIVE: 0x103,
  SIGN: 0x108,
  VERIFY: 0x10a,
  MODULUS: 0x120,
  MODULUS_BITS: 0x121,
  PUBLIC_EXPONENT: 0x122,
  EXTRACTABLE: 0x162,
  NEVER_EXTRACTABLE: 0x164,
  EC_PARAMS: 0x180,
  EC_POINT: 0x181,
} as const;

export const CKM = {
  RSA_PKCS_KEY_PAIR_GEN: 0x0,
  RSA_PKCS: 0x1,
  RSA_PKCS_PSS: 0xd,
  SHA256: 0x250,
  EC_KEY_PAIR_GEN: 0x1040,
  ECDSA: 0x1041,
  EC_EDWARDS_KEY_PAIR_GEN: 0x1055,
  EDDSA: 0x1057,
} as const;
export const CKG_MGF1_SHA256 = 0x2;
