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
