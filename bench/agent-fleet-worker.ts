/**
 * A load-generating thread of bench/agent-fleet.ts: renews its slice of the fleet, `concurrency`
 * at a time, each on a new TLS connection with the agent's own certificate, and posts the
 * latencies (ms) and failures back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { call } from '../src/sdk/ca-client.ts';

interface Job {
  url: string;
  root: string;
  mode: 'new-key' | 'same-key';
  concurrency: number;
  agents: { cert: string; key: string; csr: string }[];
}

const job = workerData as Job;
const latencies: number[] = [];
let failed = 0;
let next = 0;
await Promise.all(Array.from({ length: job.concurrency }, async () => {
  for (let i = next++; i < job.agents.length; i = next++) {
    const a = job.agents[i];
    const s = performance.now();
    try {
      const r = await call(`${job.url}/v1/renew`, { body: job.mode === 'new-key' ? { csr: a.csr } : {}, tls: { ca: job.root, cert: a.cert, key: a.key } });
      if (r.status !== 201) throw new Error(`HTTP ${r.status} ${r.body.toString().slice(0, 200)}`);
    } catch (e) {
      if (failed++ < 3) process.stderr.write(`renewal failed: ${(e as Error).message}\n`);
    }
    latencies.push(performance.now() - s);
  }
}));
parentPort!.postMessage({ latencies, failed });
