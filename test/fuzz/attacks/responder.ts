// Reading what the server sends on a hostile plain connection, and reacting
// to it: the server's own questions (calls on capabilities the hostile peer
// exported) get a Return built from the case's spec, its Returns a Finish,
// its Disembargos an echo. What a hostile peer answers is where the server
// trusts the peer most (results it forwards, copies or pipelines on).
import * as rpc from "capnp-es/capnp/rpc";
import { FrameDecoder } from "../../../src/transport/framing.js";
import type { Rng } from "../prng.js";
import { encodeMessage, type ReturnBody } from "../rpc-spec.js";
import { randomContent, randomDescriptors } from "../generate/content.js";

export interface Responder {
  /** The Return sent for every Call the server makes to us; null: never answer. */
  onCall: ReturnBody | null;
  /** Send Finish for the server's Returns (a well-behaved caller would). */
  finishReturns: boolean;
  /** Echo the server's Disembargo(senderLoopback) as receiverLoopback, with this id offset (0: the right id). */
  disembargoEcho: number | null;
}

/** What the server said on one connection: for the run's summary. */
export interface Heard {
  messages: number;
  aborts: string[];
  undecodable: string | null;
}

/** Decodes the server's output; answers it through `send` once `armed` (after the scripted writes). */
export class ServerListener {
  readonly heard: Heard = { messages: 0, aborts: [], undecodable: null };
  #queue: Uint8Array[] = [];
  #armed = false;
  readonly #decoder: FrameDecoder;

  constructor(
    private readonly responder: Responder | null,
    private readonly send: (frame: Uint8Array) => void,
  ) {
    this.#decoder = new FrameDecoder(undefined, (m) => this.#onMessage(m.getRoot(rpc.Message)));
  }

  push(chunk: Uint8Array): void {
    if (this.heard.undecodable) return;
    try {
      this.#decoder.push(chunk);
    } catch (e) {
      // The server must never send what it could not itself decode.
      this.heard.undecodable = e instanceof Error ? e.message : String(e);
    }
  }

  /** From now on replies go out at once (queued ones first). */
  arm(): void {
    this.#armed = true;
    for (const f of this.#queue.splice(0)) this.send(f);
  }

  #reply(frame: Uint8Array): void {
    if (this.#armed) this.send(frame);
    else if (this.#queue.length < 1000) this.#queue.push(frame);
  }

  #onMessage(m: rpc.Message): void {
    this.heard.messages++;
    try {
      switch (m.which()) {
        case rpc.Message.ABORT:
          this.heard.aborts.push(m.abort.reason);
          return;
        case rpc.Message.CALL:
          if (this.responder?.onCall) {
            this.#reply(encodeMessage({ type: "return", answer: m.call.questionId, releaseParamCaps: true, body: this.responder.onCall }));
          }
          return;
        case rpc.Message.RETURN:
          if (this.responder?.finishReturns) {
            this.#reply(encodeMessage({ type: "finish", question: m.return.answerId, releaseResultCaps: true }));
          }
          return;
        case rpc.Message.DISEMBARGO: {
          const d = m.disembargo;
          if (this.responder?.disembargoEcho != null && d.context._isSenderLoopback) {
            const target = d.target._isImportedCap
              ? { importedCap: d.target.importedCap }
              : { promisedAnswer: d.target.promisedAnswer.questionId, transform: [] };
            this.#reply(
              encodeMessage({
                type: "disembargo",
                target,
                context: { kind: "receiverLoopback", id: (d.context.senderLoopback + this.responder.disembargoEcho) >>> 0 },
              }),
            );
          }
          return;
        }
      }
    } catch {
      // A message our reading of it did not expect: nothing to react to.
    }
  }
}

export function randomResponder(rng: Rng): Responder | null {
  if (rng.chance(0.3)) return null;
  const onCall = rng.weighted<ReturnBody | null>([
    [2, null],
    [4, { kind: "results", content: randomContent(rng), caps: randomDescriptors(rng) }],
    [1, { kind: "exception", reason: "hostile", type: rng.int(5) }],
    [1, { kind: "canceled" }],
    [1, { kind: "resultsSentElsewhere" }],
    [1, { kind: "takeFromOtherQuestion", question: rng.int(4) }],
    [1, { kind: "acceptFromThirdParty", content: randomContent(rng) }],
  ]);
  return {
    onCall,
    finishReturns: rng.chance(0.5),
    disembargoEcho: rng.weighted<number | null>([
      [2, null],
      [3, 0],
      [1, rng.range(1, 5)],
    ]),
  };
}
