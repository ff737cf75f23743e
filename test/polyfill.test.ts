import '../p2p/polyfills.js';

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
