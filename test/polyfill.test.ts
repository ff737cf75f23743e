import '../p2p/polyfills.js';
// @libp2p/pnet's cipher guard, for the test and bench processes that still run pnet.
import './support/exchange-pnet-guard.js';

import { test } from 'node:test';
import assert from 'node:assert/strict';

type WithResolvers = <T>() => {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e?: unknown) => void;
};

test('Promise.withResolvers exists after importing the polyfill', async () => {
  const withResolvers = (Promise as unknown as { withResolvers?: WithResolvers }).withResolvers;
  assert.equal(typeof withResolvers, 'function');
  const { promise, resolve } = withResolvers!.call(Promise) as ReturnType<WithResolvers> & {
    promise: Promise<number>;
  };
  resolve(42);
  assert.equal(await promise, 42);
});

test('Promise.withResolvers rejects', async () => {
  const withResolvers = (Promise as unknown as { withResolvers: WithResolvers }).withResolvers;
  const { promise, reject } = withResolvers.call(Promise);
  reject(new Error('boom'));
  await assert.rejects(promise, /boom/);
});

test('xsalsa20 (pnet\'s cipher) is fed in pieces: large inputs encrypt the same as in one stream and never exhaust its memory', async () => {
  const { createRequire } = await import('node:module');
  const XSalsa20 = createRequire(import.meta.url)('xsalsa20') as (nonce: Uint8Array, key: Uint8Array) => { update: (input: Uint8Array) => Uint8Array };
  const nonce = new Uint8Array(24).fill(3);
  const key = new Uint8Array(32).fill(9);
  const data = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => (i * 31) & 0xff);
  // Many ciphers at once, as many connections would have; each encrypts megabytes in one call.
  const ciphers = Array.from({ length: 8 }, () => XSalsa20(nonce, key));
  const outputs = ciphers.map((c) => c.update(data));
  for (const out of outputs) assert.deepEqual(out, outputs[0]);
  // The same stream in small pieces gives the same bytes: the pieces are invisible.
  const reference = XSalsa20(nonce, key);
  const pieces: Uint8Array[] = [];
  for (let offset = 0; offset < data.length; offset += 1000) pieces.push(reference.update(data.subarray(offset, offset + 1000)));
  assert.deepEqual(Buffer.concat(pieces), Buffer.from(outputs[0]!));
  // Decrypting restores the input.
  assert.deepEqual(XSalsa20(nonce, key).update(outputs[0]!), data);
  // Two ciphers taking turns with 1.2 MB inputs: unguarded, the 52nd call throws "Maximum memory size exceeded".
  const a = XSalsa20(nonce, key);
  const b = XSalsa20(nonce, key);
  const large = new Uint8Array(1200 * 1024);
  for (let i = 0; i < 200; i++) (i % 2 === 0 ? a : b).update(large);
});

test('xsalsa20 ciphers keep a live view of their shared memory after it grows (after thousands of connections)', async () => {
  const { createRequire } = await import('node:module');
  const XSalsa20 = createRequire(import.meta.url)('xsalsa20') as (nonce: Uint8Array, key: Uint8Array) => { update: (input: Uint8Array) => Uint8Array };
  const nonce = new Uint8Array(24).fill(5);
  const key = new Uint8Array(32).fill(6);
  const first = XSalsa20(nonce, key);
  const second = XSalsa20(nonce, key);
  // Each cipher takes 64 bytes of the 640 KiB memory for good (pnet never finalizes one). Once
  // the constructor fails (a per-process limit of about 5,000 pnet connections over the process's
  // life, which this guard cannot lift), the next update no longer fits and grows the memory,
  // leaving every other cipher's view stale.
  let created = 0;
  for (;;) {
    try {
      XSalsa20(nonce, key);
      created++;
    } catch (err) {
      assert.ok(err instanceof RangeError, String(err));
      break;
    }
  }
  assert.ok(created > 5000, `${created} ciphers before the memory is full`);
  // Unguarded, every call of a cipher with a stale view grows the memory again: about 6,000 calls exhaust it.
  const data = new Uint8Array(1024).fill(1);
  const outputs: Uint8Array[] = [];
  for (let i = 0; i < 8000; i++) outputs.push((i % 2 === 0 ? first : second).update(data));
  // Both streams still encrypt correctly: the same key and nonce give the same keystream.
  assert.deepEqual(outputs[0], outputs[1]);
  assert.deepEqual(outputs[7998], outputs[7999]);
});
