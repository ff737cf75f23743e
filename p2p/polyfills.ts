// Runtime polyfills and guards. Every entry point imports this module first.
//
// Promise.withResolvers (ES2024) is used by libp2p 3 but is missing from Node 20.
// It is installed only when the runtime lacks it.

export interface PromiseWithResolversShim<T> {
  promise: Promise<T>;
  resolve: (value: T | PromiseLike<T>) => void;
  reject: (reason?: unknown) => void;
}

type PromiseCtorWithResolvers = PromiseConstructor & {
  withResolvers?: <T>() => PromiseWithResolversShim<T>;
};

const P = Promise as PromiseCtorWithResolvers;

if (typeof P.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function withResolvers<T>(this: PromiseConstructor): PromiseWithResolversShim<T> {
      let resolve!: (value: T | PromiseLike<T>) => void;
      let reject!: (reason?: unknown) => void;
      const Ctor = typeof this === 'function' ? this : Promise;
      const promise = new Ctor<T>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      return { promise, resolve, reject };
    },
  });
}

// (The guard for @libp2p/pnet's xsalsa20 cipher that lived here went with pnet: the swarm's own
// protector, p2p/swarm/private-network.ts, uses libsodium. Test and benchmark processes that still
// run @libp2p/pnet import test/support/exchange-pnet-guard.ts.)

export {};
