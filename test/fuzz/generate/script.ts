// Hostile rpc conversations built message by message: a plausible start
// (Bootstrap, calls to real TestService methods) interleaved with what
// rpc.capnp forbids or leaves to the receiver's judgement — question ids
// reused, unused or huge; Finish twice; Release beyond what was exported;
// Resolve and Disembargo of things that are not promises; bogus interface
// and method ids; cap table indexes out of range; aliased and deep content;
// Provide, Accept, Join, obsolete and unknown message types; Unimplemented
// echoes of messages we never received.
import { INTERESTING_U32, type Rng } from "../prng.js";
import type { ContentSpec, DescriptorSpec, TargetSpec } from "../raw.js";
import type { DisembargoContext, MessageSpec, ReturnBody } from "../rpc-spec.js";
import { hostileContent, idValue, IFACE, M, methodParams, randomContent, randomDescriptor, randomDescriptors } from "./content.js";

interface ScriptState {
  nextQ: number;
  asked: number[];
  bootQ: number | null;
  /** Export ids of the server we may hold (its bootstrap is usually 0). */
  exportGuesses: number[];
  /** Next export id we claim to host. */
  nextOurs: number;
}

function question(rng: Rng, st: ScriptState): number {
  const q = rng.weighted<() => number>([
    [12, () => st.nextQ++],
    [2, () => (st.asked.length > 0 ? rng.pick(st.asked) : st.nextQ++)],
    [1, () => rng.pick(INTERESTING_U32)],
  ])();
  st.asked.push(q);
  return q;
}

function target(rng: Rng, st: ScriptState): TargetSpec {
  return rng.weighted<TargetSpec>([
    [6, { importedCap: rng.pick(st.exportGuesses.slice(0, 2)) }],
    [2, { promisedAnswer: st.bootQ ?? 0, transform: [] }],
    [1, { importedCap: idValue(rng, st.exportGuesses) }],
    [
      1,
      {
        promisedAnswer: st.asked.length > 0 ? rng.pick(st.asked) : idValue(rng),
        transform: Array.from({ length: rng.smallish(4) }, () => rng.pick([-1, 0, 0, 1, 2, 0xffff])),
      },
    ],
  ]);
}

function ourCap(st: ScriptState): DescriptorSpec {
  return { kind: "senderHosted", id: st.nextOurs++ };
}

function call(rng: Rng, st: ScriptState, to: TargetSpec = target(rng, st)): MessageSpec {
  const interfaceId = rng.weighted<bigint>([
    [16, IFACE.testService],
    [2, IFACE.counter],
    [1, IFACE.callback],
    [1, IFACE.byteSink],
    [1, BigInt(rng.u32()) << 32n | BigInt(rng.u32())],
  ]);
  const methodId = rng.chance(0.85) ? rng.int(18) : rng.pick([18, 19, 255, 0x7fff, 0xffff]);
  const hostile = rng.chance(0.2);
  const content: ContentSpec = hostile ? hostileContent(rng) : methodParams(rng, methodId);
  const wantsCap = [M.callBack, M.echoCap, M.callMany, M.sumCounters].includes(methodId as never);
  const caps: DescriptorSpec[] = wantsCap && rng.chance(0.8) ? [rng.chance(0.7) ? ourCap(st) : randomDescriptor(rng, st.exportGuesses)] : randomDescriptors(rng);
  if (methodId === M.sumCounters && rng.chance(0.5)) for (let i = 0; i < 3; i++) caps.push(ourCap(st));
  const sendResultsTo = rng.weighted<number>([
    [18, 0],
    [1, 1],
    [1, rng.pick([2, 3, 0xffff])],
  ]);
  return { type: "call", question: question(rng, st), target: to, interfaceId, methodId, content, caps, sendResultsTo };
}

function returnBody(rng: Rng, st: ScriptState): ReturnBody {
  return rng.weighted<ReturnBody>([
    [4, { kind: "results", content: randomContent(rng), caps: randomDescriptors(rng) }],
    [2, { kind: "exception", reason: "hostile", type: rng.int(5) }],
    [1, { kind: "canceled" }],
    [1, { kind: "resultsSentElsewhere" }],
    [1, { kind: "takeFromOtherQuestion", question: st.asked.length > 0 ? rng.pick(st.asked) : rng.int(4) }],
    [1, { kind: "acceptFromThirdParty", content: randomContent(rng) }],
    [1, { kind: "unknown", tag: rng.range(6, 0xffff) }],
  ]);
}

function disembargoContext(rng: Rng): DisembargoContext {
  return rng.weighted<DisembargoContext>([
    [3, { kind: "senderLoopback", id: idValue(rng) }],
    [3, { kind: "receiverLoopback", id: idValue(rng) }],
    [2, { kind: "accept" }],
    [2, { kind: "provide", id: idValue(rng) }],
    [1, { kind: "unknown", tag: rng.range(4, 0xffff) }],
  ]);
}

type Block = (rng: Rng, st: ScriptState) => MessageSpec[];

const BLOCKS: readonly (readonly [number, Block])[] = [
  [
    3,
    (rng, st) => {
      const q = question(rng, st);
      st.bootQ ??= q;
      return [{ type: "bootstrap", question: q }];
    },
  ],
  [10, (rng, st) => [call(rng, st)]],
  // Pipelining on an earlier answer, with honest and bogus transforms.
  [
    3,
    (rng, st) => {
      const first = call(rng, st, { importedCap: st.exportGuesses[0]! });
      const q = (first as { question: number }).question;
      const transform = rng.chance(0.6) ? [0] : Array.from({ length: rng.range(1, 6) }, () => rng.pick([-1, 0, 1, 5, 0xffff]));
      return [first, call(rng, st, { promisedAnswer: q, transform })];
    },
  ],
  [
    4,
    (rng, st) => {
      const q = st.asked.length > 0 && rng.chance(0.8) ? rng.pick(st.asked) : idValue(rng);
      const finish: MessageSpec = { type: "finish", question: q, releaseResultCaps: rng.chance(0.7) };
      return rng.chance(0.4) ? [finish, finish] : [finish];
    },
  ],
  [
    3,
    (rng, st) => [
      {
        type: "release",
        id: idValue(rng, st.exportGuesses),
        count: rng.pick([1, 1, 2, 0, 3, 1000, 0x7fffffff, 0xffffffff]),
      },
    ],
  ],
  [
    2,
    (rng, st) => [
      rng.chance(0.8)
        ? { type: "resolve", promise: rng.chance(0.5) ? rng.int(Math.max(1, st.nextOurs)) : idValue(rng), cap: randomDescriptor(rng, st.exportGuesses) }
        : { type: "resolve", promise: idValue(rng), cap: null, exception: "hostile" },
    ],
  ],
  [2, (rng, st) => [{ type: "disembargo", target: target(rng, st), context: disembargoContext(rng) }]],
  [2, (rng, st) => [{ type: "return", answer: rng.chance(0.7) ? rng.int(4) : idValue(rng), releaseParamCaps: rng.chance(0.5), body: returnBody(rng, st) }]],
  // Level 3 and 4: not implemented here, so echoed back as Unimplemented.
  [
    2,
    (rng, st) => [
      rng.weighted<MessageSpec>([
        [1, { type: "provide", question: question(rng, st), target: target(rng, st), recipient: randomContent(rng) }],
        [1, { type: "accept", question: question(rng, st), provision: randomContent(rng), embargo: rng.chance(0.5) }],
        [1, { type: "join", question: question(rng, st), target: target(rng, st), keyPart: randomContent(rng) }],
      ]),
    ],
  ],
  [
    1,
    (rng) => [
      rng.chance(0.3)
        ? { type: "obsolete", tag: rng.pick([7, 9] as const), content: randomContent(rng) }
        : { type: "unknown", tag: rng.pick([14, 15, 16, 20, 0x7fff, 0xffff]), content: randomContent(rng) },
    ],
  ],
  [
    2,
    (rng, st) => {
      const inner = rng.weighted<() => MessageSpec>([
        [2, () => call(rng, st)],
        [1, () => ({ type: "bootstrap", question: idValue(rng) })],
        [2, () => ({ type: "resolve", promise: idValue(rng), cap: randomDescriptor(rng, st.exportGuesses) })],
        [1, () => ({ type: "disembargo", target: target(rng, st), context: disembargoContext(rng) })],
        [1, () => ({ type: "return", answer: idValue(rng), releaseParamCaps: true, body: returnBody(rng, st) })],
        [1, () => ({ type: "unknown", tag: 0xffff, content: randomContent(rng) })],
      ])();
      return [{ type: "unimplemented", inner }];
    },
  ],
  // A promise we "export", resolved to something (or nothing sensible), then used.
  [
    3,
    (rng, st) => {
      const promise = st.nextOurs++;
      const echo: MessageSpec = {
        type: "call",
        question: question(rng, st),
        target: { importedCap: st.exportGuesses[0]! },
        interfaceId: IFACE.testService,
        methodId: M.echoCap,
        content: { kind: "struct", data: [], ptrs: [{ kind: "capPtr", index: 0 }] },
        caps: [{ kind: "senderPromise", id: promise }],
        sendResultsTo: 0,
      };
      const q = (echo as { question: number }).question;
      const resolution: DescriptorSpec = rng.weighted<DescriptorSpec>([
        [2, { kind: "receiverHosted", id: st.exportGuesses[0]! }],
        [2, ourCap(st)],
        [1, { kind: "senderPromise", id: promise }],
        [1, { kind: "receiverAnswer", question: q, transform: [0] }],
        [1, randomDescriptor(rng, st.exportGuesses)],
      ]);
      const out: MessageSpec[] = [echo];
      const onResult: TargetSpec = { promisedAnswer: q, transform: [0] };
      const add = (): MessageSpec => ({
        type: "call",
        question: question(rng, st),
        target: onResult,
        interfaceId: IFACE.counter,
        methodId: 0,
        content: { kind: "struct", data: [1n], ptrs: [] },
        caps: [],
        sendResultsTo: 0,
      });
      if (rng.chance(0.5)) out.push(add());
      out.push({ type: "resolve", promise, cap: resolution });
      if (rng.chance(0.5)) out.push(add());
      if (rng.chance(0.5)) out.push({ type: "disembargo", target: onResult, context: { kind: "senderLoopback", id: rng.int(4) } });
      if (rng.chance(0.3)) out.push({ type: "resolve", promise, cap: randomDescriptor(rng, st.exportGuesses) });
      if (rng.chance(0.5)) out.push({ type: "release", id: promise, count: rng.pick([1, 2]) });
      return out;
    },
  ],
  // A promise the server exports (later()), used before and after it resolves
  // (resolveLater()): the server's Resolve, and calls that cross it.
  [
    2,
    (rng, st) => {
      const boot = { importedCap: st.exportGuesses[0]! };
      const simple = (methodId: number, content: ContentSpec, to: TargetSpec = boot, interfaceId = IFACE.testService): MessageSpec => ({
        type: "call",
        question: question(rng, st),
        target: to,
        interfaceId,
        methodId,
        content,
        caps: [],
        sendResultsTo: 0,
      });
      const later = simple(M.later, { kind: "struct", data: [5n], ptrs: [] });
      const counter: TargetSpec = { promisedAnswer: (later as { question: number }).question, transform: [0] };
      const add = () => simple(0, { kind: "struct", data: [1n], ptrs: [] }, counter, IFACE.counter);
      const out: MessageSpec[] = [later, add()];
      if (rng.chance(0.5)) out.push(add());
      out.push(simple(M.resolveLater, { kind: "empty" }));
      out.push(add());
      if (rng.chance(0.4)) out.push({ type: "disembargo", target: counter, context: { kind: "senderLoopback", id: rng.int(4) } });
      if (rng.chance(0.4)) out.push({ type: "finish", question: (later as { question: number }).question, releaseResultCaps: rng.chance(0.5) });
      return out;
    },
  ],
  // The server calls a promise we exported (callMany), then we resolve that
  // promise to one of the server's own objects: calls already sent to us must
  // come back before new ones go straight to it (an embargo, and its
  // Disembargo for us to echo: the responder does).
  [
    2,
    (rng, st) => {
      const boot = { importedCap: st.exportGuesses[0]! };
      const promise = st.nextOurs++;
      const made: MessageSpec = {
        type: "call",
        question: question(rng, st),
        target: boot,
        interfaceId: IFACE.testService,
        methodId: M.newCounter,
        content: { kind: "struct", data: [100n], ptrs: [] },
        caps: [],
        sendResultsTo: 0,
      };
      const many: MessageSpec = {
        type: "call",
        question: question(rng, st),
        target: boot,
        interfaceId: IFACE.testService,
        methodId: M.callMany,
        content: { kind: "struct", data: [BigInt(rng.range(1, 5))], ptrs: [{ kind: "capPtr", index: 0 }] },
        caps: [{ kind: "senderPromise", id: promise }],
        sendResultsTo: 0,
      };
      const to: DescriptorSpec = rng.weighted<DescriptorSpec>([
        [3, { kind: "receiverAnswer", question: (made as { question: number }).question, transform: [0] }],
        [1, { kind: "receiverHosted", id: rng.int(4) }],
        [1, ourCap(st)],
      ]);
      return [made, many, { type: "resolve", promise, cap: to }];
    },
  ],
  // The same message many times: many answers, or one id reused many times.
  [
    1,
    (rng, st) => {
      const n = rng.range(2, 300);
      const reuse = rng.chance(0.3);
      const out: MessageSpec[] = [];
      const template = call(rng, st);
      for (let i = 0; i < n; i++) out.push(reuse ? template : { ...template, question: question(rng, st) } as MessageSpec);
      return out;
    },
  ],
];

/** A hostile conversation of MessageSpecs. */
export function hostileScript(rng: Rng): MessageSpec[] {
  const st: ScriptState = { nextQ: 0, asked: [], bootQ: null, exportGuesses: [0, 1, 2, 3], nextOurs: 0 };
  const out: MessageSpec[] = [];
  if (rng.chance(0.85)) {
    const q = question(rng, st);
    st.bootQ = q;
    out.push({ type: "bootstrap", question: q });
  }
  const blocks = rng.range(1, 12);
  for (let i = 0; i < blocks; i++) out.push(...rng.weighted(BLOCKS)(rng, st));
  if (rng.chance(0.1)) out.push({ type: "abort", reason: "hostile goodbye" });
  return out;
}
