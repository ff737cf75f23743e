// Hand-verified rule tests for the hashgraph consensus engine (p2p/hashgraph), driven through
// the replay API. Every expected value below was worked out by hand from the rules (Baird,
// SWIRLDS-TR-2016-01, with the conventions in p2p/hashgraph/README.md); the comments carry
// the derivation. Nothing expected here is computed by the engine.
//
// Notation used in the comments (all graphs have n = 4 members A=0, B=1, C=2, D=3, so a
// supermajority is 3k > 8, i.e. k >= 3):
//   - "X = (S, O)": event X with self-parent S and other-parent O. Xk is creator X's k-th event.
//   - "x ⇒ w {..}": x strongly sees witness w; the braces list the events that x sees and that
//     see w (x and w included), and what matters is how many distinct creators they cover (>= 3).
//     "x ⇏ w" means they cover fewer than 3 creators.
//   - Many graphs are "token chains": each new event's other-parent is the event created just
//     before it, so the ancestry of a chain event is every earlier chain event (plus genesis).
//     In such a chain, x strongly sees an earlier y iff the chain from y to x (inclusive)
//     holds events by >= 3 creators.
//
// Fixtures: test/fixtures/hashgraph/*.json (read from the source tree; tsc does not copy them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseReplayInput, replay, type ReplayOutput, type ReplayEventResult } from '../p2p/hashgraph/replay.js';

// dist/test/hashgraph-rules.test.js -> <repo>/test/fixtures/hashgraph/
const fixtureDir = new URL('../../test/fixtures/hashgraph/', import.meta.url);

interface RawEvent {
  id: string;
  creator: number;
  selfParent: string | null;
  otherParent: string | null;
  timestamp: number | string;
  coinBit?: 0 | 1;
  signature?: string;
}
interface RawInput {
  members: number;
  coinRoundFrequency?: number;
  events: RawEvent[];
}

function fixtureText(name: string): string {
  return readFileSync(new URL(name, fixtureDir), 'utf8');
}

function fixture(name: string): RawInput {
  return JSON.parse(fixtureText(name)) as RawInput;
}

function run(input: RawInput | string): ReplayOutput {
  return replay(parseReplayInput(typeof input === 'string' ? input : JSON.stringify(input)));
}

function byId(out: ReplayOutput): Map<string, ReplayEventResult> {
  return new Map(out.events.map((e) => [e.id, e]));
}

/** { id: [round, witness] } for every event of the output. */
function roundsOf(out: ReplayOutput): Record<string, [number, boolean]> {
  return Object.fromEntries(out.events.map((e) => [e.id, [e.round, e.witness]]));
}

/** { id: famous } for the witnesses of the output. */
function fameOf(out: ReplayOutput): Record<string, boolean | null> {
  return Object.fromEntries(out.events.filter((e) => e.witness).map((e) => [e.id, e.famous]));
}

function field<K extends keyof ReplayEventResult>(out: ReplayOutput, key: K): Record<string, ReplayEventResult[K]> {
  return Object.fromEntries(out.events.map((e) => [e.id, e[key]]));
}

/** A copy of the input with some events' fields changed. */
function patched(input: RawInput, changes: Record<string, Partial<RawEvent>>, top: Partial<RawInput> = {}): RawInput {
  return { ...input, ...top, events: input.events.map((e) => ({ ...e, ...(changes[e.id] ?? {}) })) };
}

// ---------------------------------------------------------------------------------------------
// 1. Rounds and witnesses (rounds.json, 18 events, a 4-member token chain B→C→D→A→… with two
//    side events, B4 and D5).
// ---------------------------------------------------------------------------------------------
test('rounds and witnesses of a small graph', () => {
  // A1 B1 C1 D1: no parents → round 1, witnesses.
  // B2 = (B1, A1): its ancestry has creators A, B only → strongly sees nothing → r1, not a witness.
  // C2 = (C1, B2): ⇒ A1 {A1,B2,C2}; B1 {B1,B2,C2} covers only B,C → 1 of 4 → r1.
  // D2 = (D1, C2): ⇒ A1 {A1,B2,C2,D2}, ⇒ B1 {B1,B2,C2,D2}; C1 {C1,C2,D2} = C,D ⇏ → 2 → r1.
  // A2 = (A1, D2): ⇒ A1, ⇒ B1, ⇒ C1 {C1,C2,D2,A2}; D1 {D1,D2,A2} = D,A ⇏ → 3 → round 2, witness.
  // B3 = (B2, A2): max parent round 2; the only round-2 witness is A2 → r2; witness (B2 is r1).
  // C3 = (C2, B3): round-2 witnesses A2, B3: ⇒ A2 {A2,B3,C3}; B3 ⇏ → r2, witness.
  // B4 = (B3, C3): ⇒ A2 {A2,B3,C3,B4}; B3 {B3,C3,B4} = B,C ⇏; C3 ⇏ → 1 → r2; not a witness
  //                (its self-parent B3 is r2) although both parents are round 2.
  // D3 = (D2, C3) (B4 not an ancestor): ⇒ A2 {A2,B3,C3,D3}, ⇒ B3 {B3,C3,D3}; C3 ⇏ → 2 → r2, witness.
  // A3 = (A2, D3): ⇒ A2, ⇒ B3 {B3,C3,D3,A3}, ⇒ C3 {C3,D3,A3}; D3 ⇏ → 3 → round 3, witness.
  // B5 = (B4, A3): parents r2, r3 → r3 (only round-3 witness is A3); witness (B4 is r2).
  // C4 = (C3, B5): ⇒ A3 {A3,B5,C4}; B5 ⇏ → r3, witness.
  // D4 = (D3, C4): ⇒ A3, ⇒ B5 {B5,C4,D4}; C4 ⇏ → 2 → r3, witness.
  // D5 = (D4, B1): ⇒ A3, ⇒ B5; C4 {C4,D4,D5} = C,D ⇏; D4 ⇏ → 2 → r3; not a witness (D4 is r3);
  //                the old other-parent B1 changes nothing.
  // A4 = (A3, D5): ⇒ A3, ⇒ B5 {B5,C4,D4,A4}, ⇒ C4 {C4,D4,A4}; D4 {D4,D5,A4} = D,A ⇏ → 3 → round 4.
  const out = run(fixtureText('rounds.json'));
  assert.deepEqual(roundsOf(out), {
    A1: [1, true], B1: [1, true], C1: [1, true], D1: [1, true],
    B2: [1, false], C2: [1, false], D2: [1, false],
    A2: [2, true], B3: [2, true], C3: [2, true], B4: [2, false], D3: [2, true],
    A3: [3, true], B5: [3, true], C4: [3, true], D4: [3, true], D5: [3, false],
    A4: [4, true],
  });
});

test('rounds with n = 3: a supermajority is all 3 members (3k > 2n, not 3k >= 2n)', () => {
  // With n = 3, 3k > 6 needs k = 3 (k = 2 gives 6 > 6, false).
  // A1 B1 C1: round 1 witnesses.
  // B2 = (B1, A1): A1 {A1,B2} = A,B → 2 creators ⇏ → r1.
  // C2 = (C1, B2): ⇒ A1 {A1,B2,C2}; B1 {B1,B2,C2} = B,C ⇏ → 1 → r1.
  // A2 = (A1, C2): ⇒ A1, ⇒ B1 {B1,B2,C2,A2}; C1 {C1,C2,A2} = C,A ⇏ → 2 of 3 witnesses, and
  //   3·2 > 6 is false → r1 (with ">=" it would already be round 2, as would C2).
  // B3 = (B2, A2): ⇒ A1, B1, C1 {C1,C2,A2,B3} → 3 → round 2, witness.
  const out = run({
    members: 3,
    events: [
      { id: 'A1', creator: 0, selfParent: null, otherParent: null, timestamp: 1 },
      { id: 'B1', creator: 1, selfParent: null, otherParent: null, timestamp: 1 },
      { id: 'C1', creator: 2, selfParent: null, otherParent: null, timestamp: 1 },
      { id: 'B2', creator: 1, selfParent: 'B1', otherParent: 'A1', timestamp: 2 },
      { id: 'C2', creator: 2, selfParent: 'C1', otherParent: 'B2', timestamp: 3 },
      { id: 'A2', creator: 0, selfParent: 'A1', otherParent: 'C2', timestamp: 4 },
      { id: 'B3', creator: 1, selfParent: 'B2', otherParent: 'A2', timestamp: 5 },
    ],
  });
  assert.deepEqual(roundsOf(out), {
    A1: [1, true], B1: [1, true], C1: [1, true],
    B2: [1, false], C2: [1, false], A2: [1, false],
    B3: [2, true],
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Fame without a coin round (late-d.json, 24 events, default c = 10).
//    A, B, C pass a token B→C→A (B2 = (B1, A1), C2 = (C1, B2), A2 = (A1, C2), B3, C3, A3);
//    D stays silent until D2 = (D1, A3); from then the token goes B→C→A→D→B… (B4 = (B3, D2), …).
//    So D1 is an ancestor of no round-2 witness except D's own.
// ---------------------------------------------------------------------------------------------
const LATE_D_FAME = {
  A1: true, B1: true, C1: true, D1: false,
  B3: true, C3: true, A3: true, D2: true,
  B4: true, C4: true, A4: true, D3: true,
  B5: true, C5: true, A5: true, D4: true,
  B6: null, C6: null, A6: null, D5: null,
  B7: null,
};

test('fame: a member seen late gets a witness decided not famous; the rest are famous', () => {
  // Rounds. B2, C2, A2 stay r1 (C2 ⇒ only A1; A2 ⇒ A1, B1 but C1 {C1,C2,A2} = C,A ⇏; D1 is not an
  // ancestor). B3 = (B2, A2) ⇒ A1, B1, C1 {C1,C2,A2,B3} → round 2. C3 = (C2, B3) and A3 = (A2, C3)
  // are r2 witnesses (C3: B3 {B3,C3} ⇏; A3: ⇒ B3 {B3,C3,A3} only — 1 of the round-2 witnesses).
  // D2 = (D1, A3): ⇒ B3, C3; A3 {A3,D2} ⇏ → 2 → r2, witness.
  // From B3 on the events form one token chain B3 C3 A3 D2 B4 C4 A4 D3 B5 … in which consecutive
  // events have distinct creators, so x strongly sees y iff y is >= 2 places before x. A round's
  // 4 witnesses are 4 consecutive chain events and the next round starts 4 places later:
  // r2 = B3 C3 A3 D2, r3 = B4 C4 A4 D3, r4 = B5 C5 A5 D4, r5 = B6 C6 A6 D5, r6 = B7.
  //
  // Fame of round 1. Round-2 votes (d = 1, "sees"): B3, C3, A3 have A1, B1, C1 but not D1 as
  // ancestors; D2 has all four. B4, the first round-3 witness, strongly sees B3, C3, A3 (not D2,
  // 1 place before it): for A1/B1/C1 that is 3 yes → 3·3 > 8 → famous; for D1 3 no → NOT famous.
  // Fame of round r >= 2: every round r+1 witness has all round-r witnesses as ancestors (chain)
  // → all vote yes; the first round r+2 witness strongly sees 3 of them → decided famous.
  // Round 2 is decided by B5 (r4), round 3 by B6 (r5), round 4 by B7 (r6); rounds 5 and 6 have
  // no voters two rounds up yet → undecided (null).
  const out = run(fixtureText('late-d.json'));
  assert.deepEqual(fameOf(out), LATE_D_FAME);

  // Round received. Round 1 is decided first (at B4); its unique famous witnesses are A1, B1, C1,
  // and no event is an ancestor of all three → nothing is received in round 1.
  // Round 2 (decided at B5; round 4 exists): unique famous = B3, C3, A3, D2. Along the chain each
  // one's ancestry contains the previous one's, so the events that all four have as ancestor are
  // those of anc(B3) = {A1, B1, C1, B2, C2, A2, B3}. (D1 is not: it is not an ancestor of B3.)
  // Round 3 (decided at B6): unique famous B4, C4, A4, D3 → anc(B4) minus the above
  //   = {C3, A3, D1, D2, B4}.
  // Round 4 (decided at B7): B5, C5, A5, D4 → anc(B5) minus the above = {C4, A4, D3, B5}.
  // Round 5 is not decided → everything else has no round received.
  assert.deepEqual(field(out, 'roundReceived'), {
    A1: 2, B1: 2, C1: 2, D1: 3, B2: 2, C2: 2, A2: 2, B3: 2,
    C3: 3, A3: 3, D2: 3, B4: 3,
    C4: 4, A4: 4, D3: 4, B5: 4,
    C5: null, A5: null, D4: null, B6: null, C6: null, A6: null, D5: null, B7: null,
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Coin rounds (coin.json, 24 events, c = 3, explicit coinBit on every event).
// ---------------------------------------------------------------------------------------------
//   Graph (order of creation):
//     A1 B1 C1 D1; B2 = (B1, A1); C2 = (C1, B2); A2 = (A1, C2); B3 = (B2, A2); C3 = (C2, B3);
//     A3 = (A2, D1); A4 = (A3, C3); D2 = (D1, A4); B4 = (B3, A4); C4 = (C3, B4); B5 = (B4, C4);
//     B6 = (B5, D2); A5 = (A4, B6); D3 = (D2, A5); B7 = (B6, D3); C5 = (C4, B7); A6 = (A5, C5);
//     D4 = (D3, A6); B8 = (B7, D4); C6 = (C5, B8).
//   coinBit = 0 on the round-4 witnesses B7, C5, A6, D4; 1 on every other event.
//
//   Rounds (witnesses marked *):
//     r1: A1* B1* C1* D1*, B2 C2 A2 (as in test 2), A3 = (A2, D1) (⇒ A1, B1 only; C1 {C1,C2,A2,A3}
//         = C,A ⇏; D1 {D1,A3} ⇏).
//     r2: B3* (⇒ A1, B1, C1), C3* (B3 {B3,C3} ⇏), A4* = (A3, C3) (⇒ B3 {B3,C3,A4}; C3 ⇏),
//         D2* = (D1, A4) (⇒ B3, C3; A4 ⇏), B4 = (B3, A4) (⇒ B3 {B3,C3,A4,B4}, C3 {C3,A4,B4}; A4 ⇏;
//         D2 not an ancestor → 2 → r2, not a witness).
//     r3: C4* = (C3, B4) ⇒ B3, C3, A4 {A4,B4,C4} → 3 → r3. B5* = (B4, C4) (C4 {C4,B5} ⇏). B6 = (B5, D2)
//         (C4 {C4,B5,B6} = C,B ⇏). A5* = (A4, B6) (⇒ C4 {C4,B5,B6,A5}; B5 ⇏). D3* = (D2, A5)
//         (⇒ C4, B5 {B5,B6,A5,D3}; A5 ⇏).
//     r4: B7* = (B6, D3) ⇒ C4, B5, A5 {A5,D3,B7}; D3 ⇏ → 3. C5*, A6*, D4* (like C3, A4, D2).
//     r5: B8* = (B7, D4) ⇒ B7, C5, A6 {A6,D4,B8}; D4 ⇏ → 3. C6*.
//
//   Who strongly sees which witnesses of the round below (the voters they listen to):
//     C4, B5 → {B3, C3, A4} (D2 is not their ancestor); A5, D3 → {B3, C3, A4, D2}
//       (D2 via {D2, B6, A5});
//     B7 → {C4, B5, A5}; C5, A6, D4 → all four r3 witnesses (D3 via {D3, B7, C5});
//     B8 → {B7, C5, A6}; C6 → all four r4 witnesses (D4 via {D4, B8, C6}).
//
//   Fame of D1 (the split):
//     d=1 (r2): B3 no, C3 no (D1 not an ancestor); A4 yes (via A3); D2 yes.
//     d=2 (r3): C4, B5 see {no, no, yes} → vote no (t = 2, 6 > 8 false → undecided);
//               A5, D3 see {no, no, yes, yes} → tie → yes (t = 2). Votes: 2 no, 2 yes.
//     d=3 (r4): B7 sees {C4 no, B5 no, A5 yes}: t = 2; C5, A6, D4 see 2 no 2 yes: t = 2.
//               c = 10: normal round, B7 votes no, C5/A6/D4 vote yes, nobody decides.
//               c = 3:  3 mod 3 = 0, a coin round and no supermajority → each votes its coin.
//     d=4 (r5, 4 mod c > 0 for both c): B8 listens to B7, C5, A6; C6 to all four.
//               c = 10: B8 {no, yes, yes} → yes, t = 2 → undecided; C6 {no, yes, yes, yes} → t = 3
//                       → D1 famous (decided by C6).
//               c = 3, coins B7=C5=A6=D4=0: B8 {0, 0, 0} → t = 3 → D1 NOT famous (decided by B8).
//               c = 3, coins all 1: B8 {1, 1, 1} → D1 famous.
//               c = 3, coins B7=D4=1, C5=A6=0: B8 {1, 0, 0} → no, t = 2; C6 {1, 0, 0, 1} → tie,
//                       t = 2 → D1 undecided.
//   Fame of D2 (a second split, one round later):
//     d=1 (r3): C4, B5 no (not an ancestor), A5, D3 yes.
//     d=2 (r4): B7 {C4 no, B5 no, A5 yes} → no; C5, A6, D4 → tie → yes. Nobody has t >= 3.
//     d=3 (r5): B8 {B7 no, C5 yes, A6 yes} → t = 2; C6 {no, yes, yes, yes} → t = 3.
//               c = 10: normal round → C6 decides D2 famous.
//               c = 3:  coin round → C6 only votes yes, it does not decide → D2 stays undecided.
//   The other witnesses are unanimous: A1, B1, C1 are ancestors of every r2 witness → C4 sees 3
//   yes → famous (d = 2, a normal round for c = 3 as well). B3, C3, A4 → decided famous by B7;
//   C4, B5, A5, D3 → by B8 (every voter a round up has them as ancestors). Rounds 4 and 5 have
//   no voters two rounds up → undecided.
const COIN_FAME_COMMON = {
  A1: true, B1: true, C1: true,
  B3: true, C3: true, A4: true,
  C4: true, B5: true, A5: true, D3: true,
  B7: null, C5: null, A6: null, D4: null,
  B8: null, C6: null,
};

test('coin round (c = 3): a split vote on D1 is settled by the coins of the round-4 witnesses', () => {
  const coin0 = fixture('coin.json');
  const out0 = run(coin0);
  assert.deepEqual(fameOf(out0), { ...COIN_FAME_COMMON, D1: false, D2: null });

  const coin1 = patched(coin0, { B7: { coinBit: 1 }, C5: { coinBit: 1 }, A6: { coinBit: 1 }, D4: { coinBit: 1 } });
  assert.deepEqual(fameOf(run(coin1)), { ...COIN_FAME_COMMON, D1: true, D2: null });

  const mixed = patched(coin0, { B7: { coinBit: 1 }, D4: { coinBit: 1 } });
  assert.deepEqual(fameOf(run(mixed)), { ...COIN_FAME_COMMON, D1: null, D2: null });

  // Rounds do not depend on c or on the coins.
  const rounds = roundsOf(out0);
  assert.deepEqual(roundsOf(run(coin1)), rounds);
  assert.deepEqual(roundsOf(run(patched(coin0, {}, { coinRoundFrequency: 10 }))), rounds);

  // With c = 3, round 1 is decided (at B8) but round 2 is not (D2) → only round 1 is processed, and
  // round 1's unique famous witnesses (genesis events) have no common ancestor → nothing ordered.
  assert.deepEqual(out0.order, []);
  assert.ok(out0.events.every((e) => e.roundReceived === null && e.consensusTimestamp === null));
});

test('coin round (c = 3) does not decide where c = 10 does; c = 10 ignores the coins', () => {
  const c10 = patched(fixture('coin.json'), {}, { coinRoundFrequency: 10 });
  const out = run(c10);
  // D1 decided famous by C6 at d = 4; D2 decided famous by C6 at d = 3 (with c = 3 that round is a
  // coin round and D2 stays undecided, see above).
  assert.deepEqual(fameOf(out), { ...COIN_FAME_COMMON, D1: true, D2: true });
  // Coins never enter a d < 10 vote: the same with all coins flipped to 1.
  assert.deepEqual(fameOf(run(patched(c10, { B7: { coinBit: 1 }, C5: { coinBit: 1 }, A6: { coinBit: 1 }, D4: { coinBit: 1 } }))), fameOf(out));
  // Leaving coinRoundFrequency out means c = 10.
  const { coinRoundFrequency: _c, ...noC } = c10;
  assert.deepEqual(run(noC), out);

  // Stop after B8 (before C6): with c = 10 D1 is still undecided (B8 had t = 2) ...
  const throughB8 = { ...c10, events: c10.events.slice(0, -1) };
  assert.equal(byId(run(throughB8)).get('D1')!.famous, null);
  // ... while with c = 3 and zero coins B8 already decided it not famous.
  assert.equal(byId(run({ ...throughB8, coinRoundFrequency: 3 })).get('D1')!.famous, false);

  // Round received with c = 10 (everything through C6): round 1 → unique famous A1 B1 C1 D1,
  // nothing common. Round 2 (B3 C3 A4 D2 all famous): anc(B3) ⊂ anc(C3) ⊂ anc(A4) ⊂ anc(D2), so
  // the events received are anc(B3) = {A1, B1, C1, B2, C2, A2, B3}. Round 3 (C4 B5 A5 D3):
  // anc(C4) ⊂ anc(B5) ⊂ anc(A5) ⊂ anc(D3) → anc(C4) minus round 2's = {D1, C3, A3, A4, B4, C4}
  // (D2 is not an ancestor of C4). Round 4 undecided.
  const received = field(out, 'roundReceived');
  const expected: Record<string, number | null> = Object.fromEntries(c10.events.map((e) => [e.id, null]));
  for (const id of ['A1', 'B1', 'C1', 'B2', 'C2', 'A2', 'B3']) expected[id] = 2;
  for (const id of ['D1', 'C3', 'A3', 'A4', 'B4', 'C4']) expected[id] = 3;
  assert.deepEqual(received, expected);
});

// ---------------------------------------------------------------------------------------------
// 4. Median consensus timestamp with 4 unique famous witnesses (late-d.json).
//    Timestamps: A1 1000, B1 1010, C1 1020, D1 1030, then in creation order B2 1100, C2 1200,
//    A2 1300, B3 1400, C3 1500, A3 1600, D2 1700, B4 1800, C4 1900, A4 2000, D3 2100,
//    B5 2200, C5 2300, A5 2400, D4 2500, … (+100 each).
// ---------------------------------------------------------------------------------------------
test('consensus timestamp is the upper middle of an even number of times', () => {
  // Round 2's unique famous witnesses: B3, C3, A3, D2 (4 → the median is the 3rd smallest).
  // For each x: the earliest event in each witness's self-chain that has x as an ancestor.
  //   A1: B-chain B2 (1100), C-chain C2 (1200), A-chain A1 itself (1000), D-chain D2 (1700)
  //       → 1000 1100 [1200] 1700 → 1200 (the lower middle would be 1100, the mean 1250).
  //   B1: B1 1010, C2 1200, A2 1300, D2 1700 → 1300.      B2: B2 1100, C2, A2, D2 → 1300.
  //   C1: B3 1400, C1 1020, A2 1300, D2 1700 → 1400.      C2: B3, C2, A2, D2 → 1400.
  //   A2: B3 1400, C3 1500, A2 1300, D2 1700 → 1500.      B3: B3, C3, A3 1600, D2 → 1600.
  // Round 3's (B4 1800, C4 1900, A4 2000, D3 2100):
  //   C3: B4, C3 1500, A3 1600, D2 1700 → 1500 1600 [1700] 1800 → 1700.
  //   A3: B4, C4 (C3 precedes A3), A3, D2 → 1600 1700 [1800] 1900 → 1800.
  //   D1: B4 1800, C4 1900, A4 2000 (A3 lacks D1), D1 1030 → 1030 1800 [1900] 2000 → 1900.
  //   D2: B4, C4, A4, D2 1700 → 1900.                     B4: B4, C4, A4, D3 → 2000.
  // Round 4's (B5 2200, C5 2300, A5 2400, D4 2500):
  //   C4: B5, C4, A4, D3 → 1900 2000 [2100] 2200 → 2100.   A4: B5, C5, A4, D3 → 2200.
  //   D3: B5, C5, A5, D3 → 2300.                           B5: B5, C5, A5, D4 → 2400.
  const out = run(fixtureText('late-d.json'));
  const ts = field(out, 'consensusTimestamp');
  assert.deepEqual(ts, {
    A1: '1200', B1: '1300', C1: '1400', D1: '1900', B2: '1300', C2: '1400', A2: '1500', B3: '1600',
    C3: '1700', A3: '1800', D2: '1900', B4: '2000',
    C4: '2100', A4: '2200', D3: '2300', B5: '2400',
    C5: null, A5: null, D4: null, B6: null, C6: null, A6: null, D5: null, B7: null,
  });
  // Order: by round received, then consensus timestamp, then generation. Generations: genesis 1,
  // then along the chain B2 2, C2 3, A2 4, B3 5, C3 6, A3 7, D2 8, B4 9, … So the 1300 tie is
  // B1 (gen 1) before B2 (gen 2), 1400: C1 (1) before C2 (3), 1900: D1 (1) before D2 (8).
  assert.deepEqual(out.order, [
    'A1', 'B1', 'B2', 'C1', 'C2', 'A2', 'B3',
    'C3', 'A3', 'D1', 'D2', 'B4',
    'C4', 'A4', 'D3', 'B5',
  ]);
});

// ---------------------------------------------------------------------------------------------
// 5. Tie-breaks (tiebreak.json: the first 16 events of late-d.json, through B5, with other
//    timestamps and explicit 2-byte signatures).
//    Timestamps: A1 B1 C1 D1 1000, B2 1100, C2 1200, A2 1200, B3 1300, C3 1400, A3 1500,
//    D2 1600, B4 1700, C4 1800, A4 1900, D3 2000, B5 2100.
//    Signatures: B3 0100, C3 0200, A3 0400, D2 0800, A1 0301, B1 0a02, B2 0f03, C1 0004,
//    C2 0f05 (others default to SHA-256 of the id; they do not matter here).
// ---------------------------------------------------------------------------------------------
test('ties: equal timestamps ordered by generation, then by whitened signature', () => {
  // Same graph as test 2 up to B5 → rounds 1 and 2 decided (at B4 and B5), round 2's unique
  // famous witnesses are B3, C3, A3, D2 and it receives {A1, B1, C1, B2, C2, A2, B3}; round 3 is
  // not decided (it needs round 5).
  // Consensus timestamps (upper middle of 4, as in test 4):
  //   A1: A1 1000, B2 1100, C2 1200, D2 1600 → 1200.   B1: B1 1000, C2 1200, A2 1200, D2 → 1200.
  //   B2: B2 1100, C2 1200, A2 1200, D2 → 1200.        C1: C1 1000, B3 1300, A2 1200, D2 → 1300.
  //   C2: B3 1300, C2 1200, A2 1200, D2 → 1300.        A2: B3 1300, C3 1400, A2 1200, D2 → 1400.
  //   B3: B3 1300, C3 1400, A3 1500, D2 1600 → 1500.
  // Whitener = 0100 ^ 0200 ^ 0400 ^ 0800 = 0f00. Whitened: A1 0301→0c01, B1 0a02→0502,
  // B2 0f03→0003, C1 0004→0f04, C2 0f05→0005.
  //   1200: A1 (gen 1), B1 (gen 1), B2 (gen 2). Generation first: B2 last although its whitened
  //         signature is the smallest. A1 vs B1: whitened 0502 < 0c01 → B1 first (raw signatures
  //         and ids would both put A1 first).
  //   1300: C1 (gen 1) before C2 (gen 3) although C2's whitened 0005 < C1's 0f04.
  const out = run(fixtureText('tiebreak.json'));
  const ts = field(out, 'consensusTimestamp');
  assert.deepEqual(
    { A1: ts.A1, B1: ts.B1, B2: ts.B2, C1: ts.C1, C2: ts.C2, A2: ts.A2, B3: ts.B3, D1: ts.D1 },
    { A1: '1200', B1: '1200', B2: '1200', C1: '1300', C2: '1300', A2: '1400', B3: '1500', D1: null },
  );
  assert.deepEqual(out.order, ['B1', 'A1', 'B2', 'C1', 'C2', 'A2', 'B3']);

  // Give A1 the signature 0a01 instead: whitened 0a01 ^ 0f00 = 0501 < B1's 0502 → A1 first.
  // (Nothing else changes: only the signature decides between A1 and B1.)
  const swapped = patched(fixture('tiebreak.json'), { A1: { signature: '0a01' } });
  assert.deepEqual(run(swapped).order, ['A1', 'B1', 'B2', 'C1', 'C2', 'A2', 'B3']);
});

// ---------------------------------------------------------------------------------------------
// 6. A fork (fork.json): D makes Dx and D2, both with self-parent D1.
//    A1 B1 C1 D1; B2 = (B1, A1); Dx = (D1, B2); C2 = (C1, Dx); D2 = (D1, C2) ← fork with Dx;
//    A2 = (A1, D2); B3 = (B2, A2); C3 = (C2, B3); A3 = (A2, C3); B4 = (B3, A3); C4 = (C3, B4).
//    Control: the same graph with D2 = (Dx, C2), i.e. D's events form a chain.
// ---------------------------------------------------------------------------------------------
test('fork: an event whose ancestry holds a fork by D sees no event of D', () => {
  // Dx = (D1, B2): ⇒ A1 {A1,B2,Dx}; B1 {B1,B2,Dx} = B,D ⇏ → r1.
  // C2 = (C1, Dx): no fork in its ancestry yet. ⇒ A1, ⇒ B1 {B1,B2,Dx,C2}; C1, D1 ⇏ → r1.
  // D2 = (D1, C2): its ancestry holds Dx and D2 (neither a self-ancestor of the other), so D2
  //   sees no D event, itself included: ⇒ A1 {A1,B2,C2} (A,B,C); B1 {B1,B2,C2} = B,C ⇏ → r1.
  // A2 = (A1, D2): sees no D event. ⇒ A1 {A1,B2,C2,A2}, ⇒ B1 {B1,B2,C2,A2}; C1 {C1,C2,A2} = C,A ⇏
  //   (D2 would have been C1's third creator, but A2 does not see it); D1 not seen → 2 → ROUND 1.
  //   In the control, C1 {C1,C2,D2,A2} = C,D,A and D1 {D1,Dx,C2,D2,A2} → A2 is a round-2 witness.
  // B3 = (B2, A2): ⇒ A1, B1, C1 {C1,C2,A2,B3} → round 2 with A, B, C alone.
  // C3 = (C2, B3): r2, witness. A3 = (A2, C3): ⇒ B3 {B3,C3,A3}; C3 ⇏ → r2, witness.
  // B4 = (B3, A3): ⇒ B3, ⇒ C3 {C3,A3,B4}; A3 ⇏ → r2, not a witness.
  // C4 = (C3, B4): ⇒ B3, C3, A3 {A3,B4,C4} → round 3, witness.
  // Fame: B3, C3, A3 all have the fork in their ancestry → none sees D1 → all vote no on D1, yes
  // on A1, B1, C1. C4 strongly sees B3, C3, A3 → 3 no → D1 NOT famous (though D1 is an ancestor
  // of all of them); A1, B1, C1 famous. Round 2 needs round 4 → undecided.
  const forked = fixture('fork.json');
  const out = run(forked);
  assert.deepEqual(roundsOf(out), {
    A1: [1, true], B1: [1, true], C1: [1, true], D1: [1, true],
    B2: [1, false], Dx: [1, false], C2: [1, false], D2: [1, false], A2: [1, false],
    B3: [2, true], C3: [2, true], A3: [2, true], B4: [2, false],
    C4: [3, true],
  });
  assert.deepEqual(fameOf(out), {
    A1: true, B1: true, C1: true, D1: false,
    B3: null, C3: null, A3: null,
    C4: null,
  });
  // Round 1 is decided; its unique famous witnesses A1, B1, C1 have no common ancestor.
  assert.deepEqual(out.order, []);

  // Control (no fork): D2 = (Dx, C2).
  //   D2: ⇒ A1 {A1,B2,Dx,C2,D2}, ⇒ B1 {B1,B2,Dx,C2,D2}; C1 {C1,C2,D2} = C,D ⇏; D1 {D1,Dx,C2,D2} =
  //       D,C ⇏ → r1.
  //   A2 = (A1, D2): ⇒ A1, B1, C1 {C1,C2,D2,A2}, D1 {D1,Dx,C2,D2,A2} → 4 → round 2, witness.
  //   B3 = (B2, A2): the only round-2 witness is A2 → r2, witness.
  const control = run(patched(forked, { D2: { selfParent: 'Dx' } }));
  const c = byId(control);
  assert.deepEqual([c.get('D2')!.round, c.get('D2')!.witness], [1, false]);
  assert.deepEqual([c.get('A2')!.round, c.get('A2')!.witness], [2, true]);
  assert.deepEqual([c.get('B3')!.round, c.get('B3')!.witness], [2, true]);
});

// ---------------------------------------------------------------------------------------------
// 7. Bad input.
// ---------------------------------------------------------------------------------------------
function ev(id: string, creator: number, selfParent: string | null, otherParent: string | null, timestamp: number): RawEvent {
  return { id, creator, selfParent, otherParent, timestamp };
}
const replayText = (text: string) => () => replay(parseReplayInput(text));
const replayInput = (input: RawInput) => replayText(JSON.stringify(input));

test('bad input: not JSON', () => {
  assert.throws(replayText('{"members": 4, "events": ['), { name: 'ReplayInputError', message: /not JSON/ });
  assert.throws(replayText(''), { name: 'ReplayInputError', message: /not JSON/ });
});

test('bad input: a parent defined after its child, or a cycle', () => {
  // a1's other-parent b1 comes later in the list.
  assert.throws(replayInput({ members: 2, events: [ev('a1', 0, null, 'b1', 1), ev('b1', 1, null, null, 1)] }),
    { name: 'ReplayInputError', message: /event "a1": parent "b1" does not come before it/ });
  // A 2-cycle: x2 → y2 → x2.
  assert.throws(replayInput({
    members: 2,
    events: [ev('x1', 0, null, null, 1), ev('x2', 0, 'x1', 'y2', 2), ev('y2', 1, null, 'x2', 2)],
  }), { name: 'ReplayInputError', message: /event "x2": parent "y2" does not come before it/ });
  // An event that is its own parent.
  assert.throws(replayInput({ members: 2, events: [ev('z1', 0, null, 'z1', 1)] }),
    { name: 'ReplayInputError', message: /event "z1": parent "z1"/ });
});

test('bad input: unknown parent', () => {
  assert.throws(replayInput({ members: 2, events: [ev('a1', 0, null, null, 1), ev('b1', 1, null, 'nope', 2)] }),
    { name: 'ReplayInputError', message: /event "b1": unknown parent "nope"/ });
  assert.throws(replayInput({ members: 2, events: [ev('a1', 0, null, null, 1), ev('a2', 0, 'ghost', 'a1', 2)] }),
    { name: 'ReplayInputError', message: /event "a2": unknown parent "ghost"/ });
});

test('bad input: creator out of range', () => {
  assert.throws(replayInput({ members: 4, events: [ev('a1', 0, null, null, 1), ev('e1', 4, null, 'a1', 2)] }),
    { name: 'ReplayInputError', message: /event "e1".*creator 4.*out of range/ });
  assert.throws(replayInput({ members: 4, events: [ev('m1', -1, null, null, 1)] }),
    { name: 'ReplayInputError', message: /event "m1".*creator -1.*out of range/ });
  // parseReplayInput alone already rejects it (before any consensus runs).
  assert.throws(() => parseReplayInput(JSON.stringify({ members: 4, events: [ev('e1', 4, null, null, 1)] })),
    { name: 'ReplayInputError', message: /event "e1"/ });
});

// ---------------------------------------------------------------------------------------------
// Determinism and order sanity.
// ---------------------------------------------------------------------------------------------
test('determinism: the same input gives the same output; order is a topological permutation', () => {
  for (const name of ['rounds.json', 'late-d.json', 'coin.json', 'tiebreak.json', 'fork.json']) {
    const text = fixtureText(name);
    const first = run(text);
    const second = run(text);
    assert.deepEqual(second, first, name);

    const input = fixture(name);
    const position = new Map(first.order.map((id, i) => [id, i]));
    assert.equal(position.size, first.order.length, `${name}: an id appears twice in order`);
    const results = byId(first);
    for (const e of input.events) {
      const pos = position.get(e.id);
      const r = results.get(e.id)!;
      // Exactly the events with a round received are ordered, in non-decreasing round received.
      assert.equal(pos !== undefined, r.roundReceived !== null, `${name}: ${e.id}`);
      if (pos === undefined) continue;
      for (const p of [e.selfParent, e.otherParent]) {
        if (p === null) continue;
        const pp = position.get(p);
        assert.ok(pp !== undefined && pp < pos, `${name}: parent ${p} of ${e.id} not ordered before it`);
      }
    }
    const rr = first.order.map((id) => results.get(id)!.roundReceived!);
    assert.deepEqual(rr, [...rr].sort((a, b) => a - b), name);
  }
});

test('arrival order does not matter: D1 inserted late gives the same consensus', () => {
  // In late-d.json D1 is first needed by D2 (the 11th event); moving it from 4th place to just
  // before D2 is another topological order of the same graph. Rounds, fame, round received,
  // timestamps and order are functions of the graph, so the results must be identical.
  const input = fixture('late-d.json');
  const d1 = input.events.find((e) => e.id === 'D1')!;
  const rest = input.events.filter((e) => e.id !== 'D1');
  const at = rest.findIndex((e) => e.id === 'D2');
  const moved = { ...input, events: [...rest.slice(0, at), d1, ...rest.slice(at)] };
  const a = run(input);
  const b = run(moved);
  assert.deepEqual(b.order, a.order);
  assert.deepEqual(byId(b), byId(a));
  assert.deepEqual(fameOf(b), LATE_D_FAME);
});
