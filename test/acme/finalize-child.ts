/**
 * Child process of acme-kill.test.ts: opens the CA in argv[2] (SQLite), and finalizes orders in a
 * loop, several at once, with real http-01 validation against its own responder, printing
 * `<order id> <certificate id>` for every order it got back valid, until it is killed.
 */
import { AcmeAuthority } from '../../src/ca/acme/acme-authority.ts';
import { acmeConfig } from '../../src/ca/config.ts';
import { openAuthority } from '../../src/ca/open-authority.ts';
import { TEST_PASSPHRASE } from '../helpers/test-ca.ts';
import { accountKey, ACCOUNT_URL, csrFor, startResponder } from './harness.ts';

const ca = await openAuthority({ home: process.argv[2], passphrase: TEST_PASSPHRASE });
const responder = await startResponder();
const acme = new AcmeAuthority({ ca, config: { ...acmeConfig({}), enabled: true, challenges: ['http-01'], httpPort: responder.port, ordersPerHour: 1_000_000 }, hostOverride: '127.0.0.1' });
const k = await accountKey();
const { account } = await acme.newAccount({ jwk: k.jwk, thumbprint: k.thumbprint, contact: [], termsOfServiceAgreed: true, accountUrl: ACCOUNT_URL });

async function worker(w: number): Promise<never> {
  for (let i = 0; ; i++) {
    const name = `k${w}-${i}.acme.internal`;
    const order = await acme.newOrder(account.id, { identifiers: [{ type: 'dns', value: name }] });
    const authz = await acme.authorization(account.id, order.authorizationIds[0]);
    const c = authz.challenges[0];
    responder.answers.set(c.token, `${c.token}.${k.thumbprint}`);
    await acme.respondChallenge(account.id, c.id);
    await acme.settle();
    const done = await acme.finalize(account.id, order.id, csrFor([name]));
    process.stdout.write(`${done.id} ${done.certificateId}\n`);
  }
}

process.stdout.write('ready\n');
await Promise.all([0, 1, 2, 3].map(worker));
