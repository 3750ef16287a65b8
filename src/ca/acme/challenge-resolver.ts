/**
 * The DNS lookups of challenge validation, through the configured resolvers (node:dns Resolver,
 * c-ares; never /etc/hosts), with CNAME chains followed by the validator itself: a resolver that
 * is authoritative only answers a CNAME whose target lies in another zone without chasing it.
 * Every failure is an ACME_DNS naming the record, the chain and the resolver.
 */
import { Resolver } from 'node:dns/promises';
import net from 'node:net';
import { MutualError } from '../../core/errors.ts';
import { MAX_CNAME_CHAIN, type ValidationOptions } from './validation-options.ts';

/** The record types validation looks up. */
export type ChallengeRecordType = 'A' | 'AAAA' | 'TXT';

/** What a lookup found. */
export interface ResolvedRecords {
  /** Addresses, or TXT records each with its strings joined (RFC 8555 section 8.4 compares whole records). */
  values: string[];
  /** The names queried: the one asked for, then each CNAME target followed. */
  chain: string[];
}

/** Where validation connects for a name: addresses in the order to try, and how they were found (for details). */
export interface ConnectTargets {
  addresses: string[];
  /** "example.com resolved to 2001:db8::1, 192.0.2.1 by resolver 10.0.0.53", "hostOverride" or "the IP identifier". */
  how: string;
}

/** Lookups for one validation; cancelled when its deadline passes. */
export interface ChallengeResolver {
  /** The resolvers asked, for details ("127.0.0.1:5353"). */
  readonly servers: string;
  /** Records of `type` at `name`, following CNAMEs; no records is an empty list (NODATA), a missing name ACME_DNS. */
  lookup(name: string, type: ChallengeRecordType): Promise<ResolvedRecords>;
  /** Addresses to connect to for a DNS name or IP address: {@link ValidationOptions.hostOverride}, the IP itself, or A and AAAA lookups. */
  connectTargets(name: string): Promise<ConnectTargets>;
}

const normalize = (name: string): string => name.toLowerCase().replace(/\.$/, '');

/** Why a query failed, in a few words (c-ares codes, node:dns docs). */
function failure(code: string | undefined, timeoutMs: number): string {
  switch (code) {
    case 'ENOTFOUND': return 'NXDOMAIN (the name does not exist)';
    case 'ESERVFAIL': return 'SERVFAIL';
    case 'EREFUSED': return 'REFUSED';
    case 'ETIMEOUT': return 'no answer (timeout)';
    case 'ECANCELLED': return `no answer within the validation's ${timeoutMs} ms`;
    case 'ECONNREFUSED': return 'connection refused by the resolver';
    default: return `lookup failed (${code ?? 'unknown error'})`;
  }
}

/** A resolver for one validation, whose queries stop when `signal` aborts. */
export function createChallengeResolver(o: ValidationOptions, signal: AbortSignal): ChallengeResolver {
  // c-ares retries on its own: a quarter of the deadline per try, so a lost UDP answer is asked again in time.
  const resolver = new Resolver({ timeout: Math.max(50, Math.floor(o.timeoutMs / 4)), tries: 2 });
  if (o.dnsServers?.length) resolver.setServers(o.dnsServers);
  const servers = resolver.getServers().join(', ') || 'the system resolver';
  const cancel = () => resolver.cancel();
  signal.addEventListener('abort', cancel, { once: true });

  const query = async (name: string, type: ChallengeRecordType | 'CNAME', chain: string[]): Promise<string[]> => {
    if (signal.aborted) throw dnsError(type, name, chain, failure('ECANCELLED', o.timeoutMs));
    try {
      switch (type) {
        case 'A': return await resolver.resolve4(name);
        case 'AAAA': return await resolver.resolve6(name);
        case 'CNAME': return await resolver.resolveCname(name);
        case 'TXT': return (await resolver.resolveTxt(name)).map((strings) => strings.join(''));
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENODATA') return [];
      throw dnsError(type, name, chain, failure(signal.aborted ? 'ECANCELLED' : code, o.timeoutMs), e);
    }
  };
  const dnsError = (type: string, name: string, chain: string[], why: string, cause?: unknown) => new MutualError('ACME_DNS', {
    detail: `${type} ${name}${chain.length > 1 ? ` (CNAME chain ${chain.join(' -> ')})` : ''}: ${why}; resolver ${servers}`,
  }, { cause });

  const lookup = async (name: string, type: ChallengeRecordType): Promise<ResolvedRecords> => {
    const chain = [normalize(name)];
    for (;;) {
      const current = chain[chain.length - 1];
      const values = await query(current, type, chain);
      if (values.length > 0) return { values, chain };
      const [target] = await query(current, 'CNAME', chain);
      if (target === undefined) return { values: [], chain };
      const next = normalize(target);
      if (chain.includes(next)) throw dnsError(type, name, [...chain, next], 'CNAME loop');
      if (chain.length - 1 >= MAX_CNAME_CHAIN) throw dnsError(type, name, [...chain, next], `CNAME chain longer than ${MAX_CNAME_CHAIN}`);
      chain.push(next);
    }
  };

  const connectTargets = async (name: string): Promise<ConnectTargets> => {
    if (o.hostOverride) return { addresses: [o.hostOverride], how: 'hostOverride' };
    if (net.isIP(name)) return { addresses: [name], how: 'the IP identifier' };
    const settled = await Promise.allSettled([lookup(name, 'AAAA'), lookup(name, 'A')]);
    const [v6, v4] = settled.map((s) => (s.status === 'fulfilled' ? s.value.values : []));
    if (v6.length === 0 && v4.length === 0) {
      // Both failed, or one found nothing: the A lookup's failure is the one to name (IPv4 is the common case).
      const failed = [settled[1], settled[0]].find((s) => s.status === 'rejected');
      if (failed) throw failed.reason;
      throw dnsError('A/AAAA', name, [normalize(name)], 'no A or AAAA records');
    }
    // Like Boulder: the first IPv6 address, then the first IPv4 one if IPv6 does not connect.
    const addresses = [v6[0], v4[0]].filter((a): a is string => a !== undefined);
    return { addresses, how: `${name} resolved to ${[...v6, ...v4].join(', ')} by resolver ${servers}` };
  };

  return { servers, lookup, connectTargets };
}
