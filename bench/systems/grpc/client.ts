// gRPC client (@grpc/grpc-js).
import * as grpc from "@grpc/grpc-js";
import { CHAIN_LENGTH, runClient } from "../../lib/client.js";
import { BenchService, channelOptions } from "./service.js";

type Unary<Req, Res> = (req: Req, cb: (err: grpc.ServiceError | null, res: Res) => void) => grpc.ClientUnaryCall;

await runClient(async (_address, args) => {
  const client = new BenchService(args.addressText, grpc.credentials.createInsecure(), channelOptions);
  await new Promise<void>((resolve, reject) =>
    client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())),
  );
  const call =
    <Req, Res>(name: string) =>
    (req: Req): Promise<Res> =>
      new Promise((resolve, reject) =>
        (client[name] as Unary<Req, Res>).call(client, req, (err, res) => (err ? reject(err) : resolve(res))),
      );
  const ping = call<{ target: number; n: number }, { n: number }>("Ping");
  const next = call<{ target: number; depth: number }, { next: number }>("Next");
  return {
    notes: {
      pipelined: "no object capabilities: each step names the previous handle id",
      stream: "client-streaming call, HTTP/2 flow control",
    },
    ping: async (n) => (await ping({ target: 0, n })).n,
    stream(chunk, more) {
      return new Promise<number>((resolve, reject) => {
        const sink = (client.Sink as (cb: (err: grpc.ServiceError | null, res: { bytes: number }) => void) => grpc.ClientWritableStream<unknown>).call(
          client,
          (err, res) => (err ? reject(err) : resolve(res.bytes)),
        );
        const message = { chunk: Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) };
        const pump = (): void => {
          while (more()) {
            if (!sink.write(message)) {
              sink.once("drain", pump);
              return;
            }
          }
          sink.end();
        };
        pump();
      });
    },
    async chainAwaited(n) {
      let target = 0;
      for (let depth = 1; depth <= CHAIN_LENGTH; depth++) target = (await next({ target, depth })).next;
      return (await ping({ target, n })).n;
    },
    close: () => client.close(),
  };
});
