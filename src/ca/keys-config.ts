/**
 * config.yaml's `keys:` section: where the online CA makes the keys it makes itself (docs/cli.md,
 * "config.yaml"). The intermediates' and the root's keys are named by their key files (a key
 * reference for a token key, see keys/key-store.ts), so this section says where *new* keys go:
 * the delegated OCSP responders' keys, made with every responder certificate, and the enrollment
 * token key. The token's PIN never appears here: the URI names where it comes from (`pin-source`).
 *
 * The schema checks the URI's shape only: reading config.yaml (`mutual list`, the monitor) must not
 * load the key module. The authority parses it fully when it opens (load-intermediates.ts), and
 * `mutual init` before it writes anything (PKCS11_URI_INVALID).
 */
import { z } from 'zod';

/** Longest `keys.store` URI (RFC 7512 URIs of real tokens are a few hundred characters). */
const MAX_STORE_URI = 2048;

/** The `keys:` section, defaults applied. */
export const keysSection = z.object({
  /** A `pkcs11:` URI naming the token (module-path, pin-source; no object or id). Absent: encrypted files. */
  store: z.string().max(MAX_STORE_URI)
    .regex(/^pkcs11:/, 'must be a pkcs11: URI naming a token (leave keys.store out for encrypted key files)')
    // config.yaml holds no secrets (DESIGN.md, Secrets).
    .refine((v) => !/[?&;]pin-value=/i.test(v), 'must not hold the PIN (pin-value): name where it comes from with pin-source')
    .optional(),
  /**
   * The OCSP responders' keys: `memory` (default: made in this process, gone with it) or `store`
   * (made on the token as session objects, gone when the server's session closes).
   */
  ocspResponderKeys: z.enum(['memory', 'store']).default('memory'),
  /** The enrollment token signing key: `file` (default: keys/token.key.pem, encrypted) or `store` (on the token). */
  enrollmentTokenKey: z.enum(['file', 'store']).default('file'),
}).strict().superRefine((k, ctx) => {
  // `store` with no token to put the key on would silently fall back to memory or a file.
  if (k.store !== undefined) return;
  if (k.ocspResponderKeys === 'store') ctx.addIssue({ code: 'custom', path: ['ocspResponderKeys'], message: 'is store, but keys.store names no token' });
  if (k.enrollmentTokenKey === 'store') ctx.addIssue({ code: 'custom', path: ['enrollmentTokenKey'], message: 'is store, but keys.store names no token' });
});

/** The `keys:` section of config.yaml, defaults applied. */
export type KeysConfig = z.infer<typeof keysSection>;
