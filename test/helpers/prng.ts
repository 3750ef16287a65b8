/**
 * A small seeded PRNG for the fuzz targets: the same inputs on every run for one seed, so a
 * failure reproduces from the seed it prints.
 */

/** mulberry32: 32-bit state, enough to pick mutations reproducibly. Returns numbers in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
