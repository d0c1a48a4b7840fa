// Channels by name (schema/channel.capnp): a bidirectional byte channel
// between a peer and a plugin, for plugins that speak a protocol of their
// own rather than define a schema. Built from capabilities only: the
// capability a caller gets for the plugin's name also answers
// ChannelAcceptor, each direction is a ByteSource (flow control, cancellation),
// and the hub vouches for the caller through the plugin's Provider. So a
// channel rides a direct path whenever the plugin's capability does.
import { Duplex, PassThrough, type Readable } from "node:stream";
import { ChannelAcceptor } from "../gen/channel.js";
import { BrokenHook, RefCounted, type CallHints, type CallResult, type CapHook, type OutgoingCall, type Payload } from "../rpc/hook.js";
import { RpcError } from "../rpc/errors.js";
import { hookOf, wrapHook } from "../rpc/typed.js";
import type { Capability } from "../rpc/types.js";
import { fromByteSource, toByteSource } from "../stream/bytes.js";
import { logger } from "../log.js";

const log = logger("capmesh:mesh");

/** The PluginInfo feature of a plugin that accepts channels. */
export const CHANNELS_FEATURE = "channels";

/** A channel a caller asks a plugin to open. */
export interface ChannelRequest {
  /** The caller's identity ("@<base64>.ed25519"), vouched for by the hub. */
  readonly caller: string;
  /** The protocol the caller asks for (free form; "" when it named none). */
  readonly protocol: string;
}

/**
 * A plugin's channel handler (joinMesh `channels`). To accept, return the
 * plugin's end as a Duplex: what the caller writes is written into it, what
 * it gives out is read by the caller (a PassThrough echoes; a Transform
 * answers; `duplexPair()` of node:stream, Node 22, gives a socket-like end).
 * To refuse, throw: the caller's openChannel rejects with the plugin's name
 * and the error's message.
 */
export type ChannelHandler = (channel: ChannelRequest) => Duplex | Promise<Duplex>;

/**
 * The plugin's end of the data: the Duplex's readable side, ended (not
 * failed) when the plugin destroys it without an error, so that closing the
 * channel from the plugin's side ends the caller's read cleanly. Stopping
 * early (the caller went away) destroys the Duplex.
 */
async function* readableSide(end: Duplex): AsyncGenerator<Uint8Array> {
  let finished = false;
  try {
    for await (const chunk of end.iterator({ destroyOnReturn: false })) yield chunk as Uint8Array;
    finished = true;
  } catch (error) {
    if (!(end.destroyed && !end.errored)) throw error;
    finished = true;
  } finally {
    if (!finished) end.destroy();
  }
}

/** The ChannelAcceptor the plugin `name` gives `caller`. */
function acceptorFor(name: string, caller: string, handler: ChannelHandler): ChannelAcceptor {
  return ChannelAcceptor.server({
    open: async ({ protocol, input }) => {
      if (input === null) throw RpcError.failed(`ChannelAcceptor.open of plugin "${name}": \`input\` is missing (the caller's ByteSource)`);
      let end: unknown;
      try {
        end = await handler({ caller, protocol });
      } catch (error) {
        throw RpcError.failed(`plugin "${name}" refused the channel: ${error instanceof Error ? error.message : String(error)}`);
      }
      if (!(end instanceof Duplex)) {
        throw RpcError.failed(`plugin "${name}" refused the channel: its channels handler returned no Duplex (it must return one, or throw to refuse)`);
      }
      // Read the caller's bytes now, while `input` is still lent to this call.
      const incoming = fromByteSource(input).nodeReadable();
      incoming.pipe(end);
      // The caller aborted or went away: close the plugin's end. Without an
      // error, so that a plugin that does not listen for 'error' is not
      // brought down by a caller (it sees 'close' before its readable ended).
      incoming.once("error", (error) => {
        log.debug("a channel's caller went away", { plugin: name, caller, protocol, error: error.message });
        end.destroy();
      });
      // The plugin closed its end: stop the caller's bytes too.
      end.once("close", () => incoming.destroy());
      return { output: toByteSource(readableSide(end)) };
    },
  });
}

/**
 * A capability that is `inner` (the plugin's own, as `provide` gave it) and
 * also a ChannelAcceptor: calls of ChannelAcceptor's interface go to
 * `acceptor`, every other call to `inner`, with the caller's hints intact.
 */
class WithChannels extends RefCounted implements CapHook {
  readonly brand = null;
  readonly brokenReason = null;

  constructor(
    private readonly inner: CapHook,
    private readonly acceptor: CapHook,
  ) {
    super();
  }

  #target(interfaceId: bigint): CapHook {
    return interfaceId === ChannelAcceptor.id ? this.acceptor : this.inner;
  }

  call(interfaceId: bigint, methodId: number, params: Payload, hints?: CallHints): CallResult {
    return this.#target(interfaceId).call(interfaceId, methodId, params, hints);
  }

  newCall(interfaceId: bigint, methodId: number): OutgoingCall {
    return this.#target(interfaceId).newCall(interfaceId, methodId);
  }

  resolved(): CapHook | null {
    return null;
  }

  whenMoreResolved(): Promise<CapHook> | null {
    return null;
  }

  protected dispose(): void {
    this.inner.release();
    this.acceptor.release();
  }
}

/**
 * What joinMesh's Provider gives `caller` for a plugin with channels: its
 * `provide` capability (when it has one) that also accepts channels.
 */
export function provideWithChannels(
  name: string,
  provide: Capability | ((caller: string) => Capability) | undefined,
  handler: ChannelHandler,
  caller: string,
): Capability {
  let inner: CapHook;
  if (provide === undefined) {
    inner = new BrokenHook(RpcError.unimplemented(`plugin "${name}" serves channels only (openChannel); it provides no capability`));
  } else if (typeof provide === "function") {
    const cap = provide(caller);
    inner = hookOf(cap).addRef();
    cap.release();
  } else {
    inner = hookOf(provide).addRef();
  }
  const acceptor = acceptorFor(name, caller, handler);
  const acceptorHook = hookOf(acceptor).addRef();
  acceptor.release();
  return wrapHook(new WithChannels(inner, acceptorHook), null);
}

/** What `MeshPeer.openChannel` takes. */
export interface OpenChannelOptions {
  /** The protocol to ask the plugin for (free form); default "". */
  protocol?: string;
  /** Wait up to this many ms for the name to be registered (as connect's `wait`). */
  wait?: number;
}

/**
 * Opens a channel on `acceptor` (the capability registered as `name`): the
 * caller's end as a Duplex. `end()` is a half close (the plugin reads to
 * its end and may still answer); `destroy()` ends both directions.
 */
export async function openChannelOn(acceptor: ChannelAcceptor, name: string, protocol: string): Promise<Duplex> {
  const outgoing = new PassThrough();
  const input = toByteSource(outgoing);
  let output;
  try {
    ({ output } = await acceptor.open({ protocol, input }));
  } catch (error) {
    outgoing.destroy();
    throw openFailed(name, protocol, error);
  } finally {
    input.release();
  }
  if (output === null) {
    outgoing.destroy();
    throw new RpcError("failed", `openChannel("${name}"): the plugin accepted but returned no output stream`);
  }
  const incoming = fromByteSource(output).nodeReadable();
  output.release();
  return joined(incoming, outgoing);
}

/**
 * One Duplex of the channel's two streams. (Not Duplex.from: its destroy()
 * without an error emits an AbortError, which would bring down an opener
 * that closes its channel the ordinary way.) destroy() stops both
 * directions; an error of either side destroys it with that error.
 */
function joined(incoming: Readable, outgoing: PassThrough): Duplex {
  let waiting: ((error?: Error | null) => void) | null = null;
  const settle = (error?: Error) => {
    const callback = waiting;
    waiting = null;
    callback?.(error);
  };
  const gone = () => new Error("the channel's other end stopped reading (it closed the channel)");
  const duplex = new Duplex({
    read() {
      incoming.resume();
    },
    write(chunk: Uint8Array, _encoding, callback) {
      if (outgoing.destroyed) return callback(gone());
      if (outgoing.write(chunk)) return callback();
      waiting = callback;
    },
    final(callback) {
      outgoing.end();
      callback();
    },
    destroy(error, callback) {
      incoming.destroy();
      outgoing.destroy();
      settle(gone());
      callback(error);
    },
  });
  outgoing.on("drain", () => settle());
  outgoing.once("close", () => settle(gone()));
  incoming.on("data", (chunk: Uint8Array) => {
    if (!duplex.push(chunk)) incoming.pause();
  });
  incoming.once("end", () => duplex.push(null));
  incoming.once("error", (error) => duplex.destroy(error));
  return duplex;
}

function openFailed(name: string, protocol: string, error: unknown): Error {
  const what = `openChannel("${name}"${protocol ? `, protocol "${protocol}"` : ""})`;
  if (error instanceof RpcError && error.type === "unimplemented" && error.message.includes("0x" + ChannelAcceptor.id.toString(16))) {
    return new RpcError("unimplemented", `${what}: plugin "${name}" does not accept channels (it joined without \`channels\`)`, error.remote);
  }
  if (error instanceof RpcError) return new RpcError(error.type, `${what}: ${error.message}`, error.remote);
  return new Error(`${what}: ${error instanceof Error ? error.message : String(error)}`);
}
