/**
 * A small real DNS server for tests (RFC 1035 over UDP, node:dgram): answers A, AAAA, TXT and
 * CNAME queries from a table the test changes between queries, NXDOMAIN for names it does not
 * hold, NODATA (no error, no answer) for a type a name lacks. A name with a CNAME answers other
 * types with the CNAME alone, as an authoritative server does when the target lies in another
 * zone: the client follows the chain itself. It can be told to stay silent (timeouts) or to
 * answer SERVFAIL. Point a resolver at it with `${address}:${port}`.
 */
import dgram from 'node:dgram';
import net from 'node:net';

/** Record types the server holds. */
export type DnsRecordType = 'A' | 'AAAA' | 'TXT' | 'CNAME';

/** What the server does with every query: answer from the table, drop it, or answer SERVFAIL. */
export type DnsServerMode = 'answer' | 'silent' | 'servfail';

/** A running test DNS server. */
export interface DnsServer {
  port: number;
  address: string;
  /** Sets the records of one type for a name (replacing those it had); each TXT value is one record. */
  set(name: string, type: DnsRecordType, values: string[]): void;
  /** Removes every record of a name (it answers NXDOMAIN after). */
  delete(name: string): void;
  /** How the server answers from now on (default 'answer'). */
  setMode(mode: DnsServerMode): void;
  /** The queries received so far (name as asked, lowercase; type). */
  queries: { name: string; type: string }[];
  close(): Promise<void>;
}

const TYPE_CODES: Record<DnsRecordType, number> = { A: 1, CNAME: 5, TXT: 16, AAAA: 28 };
const TYPE_NAMES = new Map<number, string>(Object.entries(TYPE_CODES).map(([k, v]) => [v, k]));
const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, FORMERR: 1 } as const;
/** Time to live of every answer: short, the table changes between queries. */
const TTL_SECONDS = 1;

const normalize = (name: string): string => name.toLowerCase().replace(/\.$/, '');

/** Encodes a domain name as uncompressed labels (RFC 1035 3.1). */
function encodeName(name: string): Buffer {
  const labels = normalize(name).split('.').filter((l) => l !== '');
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
}

/** The RDATA of one record. */
function rdata(type: DnsRecordType, value: string): Buffer {
  switch (type) {
    case 'A':
    case 'AAAA': {
      if (net.isIP(value) !== (type === 'A' ? 4 : 6)) throw new TypeError(`${value} is not an ${type === 'A' ? 'IPv4' : 'IPv6'} address`);
      return type === 'A' ? Buffer.from(value.split('.').map(Number)) : ipv6Bytes(value);
    }
    case 'CNAME':
      return encodeName(value);
    case 'TXT': {
      // One TXT record of one or more <character-string>s of at most 255 bytes (RFC 1035 3.3.14).
      const bytes = Buffer.from(value, 'utf8');
      const parts: Buffer[] = [];
      for (let i = 0; i === 0 || i < bytes.length; i += 255) {
        const chunk = bytes.subarray(i, i + 255);
        parts.push(Buffer.from([chunk.length]), chunk);
      }
      return Buffer.concat(parts);
    }
  }
}

function ipv6Bytes(text: string): Buffer {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Reads the question of a query: the name as it was sent (bytes, to echo), as text, its type, and where it ends. */
function readQuestion(msg: Buffer): { nameBytes: Buffer; name: string; type: number; end: number } | undefined {
  let o = 12;
  const labels: string[] = [];
  for (;;) {
    if (o >= msg.length) return undefined;
    const n = msg[o];
    if (n === 0) break;
    // Queries carry no compression in their one question.
    if (n > 63 || o + 1 + n > msg.length) return undefined;
    labels.push(msg.toString('latin1', o + 1, o + 1 + n));
    o += 1 + n;
  }
  o += 1;
  if (o + 4 > msg.length) return undefined;
  return { nameBytes: msg.subarray(12, o), name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(o), end: o + 4 };
}

/** Starts the server on 127.0.0.1, a free UDP port. */
export async function startDnsServer(): Promise<DnsServer> {
  const table = new Map<string, Map<DnsRecordType, string[]>>();
  const queries: { name: string; type: string }[] = [];
  let mode: DnsServerMode = 'answer';
  const socket = dgram.createSocket('udp4');

  const answer = (query: Buffer): Buffer | undefined => {
    if (query.length < 12 || (query[2] & 0x80) !== 0) return undefined;
    const q = readQuestion(query);
    const header = Buffer.alloc(12);
    query.copy(header, 0, 0, 2);
    // QR, opcode 0, AA; RD copied from the query; RA.
    const flags = (rcode: number) => 0x8400 | (query.readUInt16BE(2) & 0x0100) | 0x0080 | rcode;
    if (!q || query.readUInt16BE(4) !== 1) {
      header.writeUInt16BE(flags(RCODE.FORMERR), 2);
      return header;
    }
    queries.push({ name: q.name, type: TYPE_NAMES.get(q.type) ?? String(q.type) });
    const question = query.subarray(12, q.end);
    const reply = (rcode: number, answers: Buffer[]) => {
      header.writeUInt16BE(flags(rcode), 2);
      header.writeUInt16BE(1, 4);
      header.writeUInt16BE(answers.length, 6);
      return Buffer.concat([header, question, ...answers]);
    };
    if (mode === 'servfail') return reply(RCODE.SERVFAIL, []);
    const records = table.get(q.name);
    if (!records) return reply(RCODE.NXDOMAIN, []);
    const type = TYPE_NAMES.get(q.type) as DnsRecordType | undefined;
    const found = type ? records.get(type) : undefined;
    const [answerType, values] = found ? [type!, found] : records.has('CNAME') ? ['CNAME' as const, records.get('CNAME')!] : [undefined, []];
    const rrs = values.map((v) => {
      const data = rdata(answerType!, v);
      const rr = Buffer.alloc(12);
      // NAME: a pointer to the question's name (offset 12), TYPE, CLASS IN, TTL, RDLENGTH.
      rr.writeUInt16BE(0xc00c, 0);
      rr.writeUInt16BE(TYPE_CODES[answerType!], 2);
      rr.writeUInt16BE(1, 4);
      rr.writeUInt32BE(TTL_SECONDS, 6);
      rr.writeUInt16BE(data.length, 10);
      return Buffer.concat([rr, data]);
    });
    return reply(RCODE.NOERROR, rrs);
  };

  socket.on('message', (msg, from) => {
    if (mode === 'silent') return;
    const out = answer(msg);
    if (out) socket.send(out, from.port, from.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  const { port, address } = socket.address();
  return {
    port,
    address,
    queries,
    set(name, type, values) {
      for (const v of values) rdata(type, v);
      const key = normalize(name);
      const records = table.get(key) ?? new Map<DnsRecordType, string[]>();
      records.set(type, [...values]);
      table.set(key, records);
    },
    delete(name) {
      table.delete(normalize(name));
    },
    setMode(m) {
      mode = m;
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
