// gRPC server (@grpc/grpc-js).
import * as grpc from "@grpc/grpc-js";
import { formatAddress } from "../../lib/address.js";
import { runServer } from "../../lib/server.js";
import { BenchService, channelOptions } from "./service.js";
import fs from "node:fs";

interface PingRequest { target: number; n: number }
interface NextRequest { target: number; depth: number }
interface Chunk { chunk: Buffer }

// Handle id -> depth. Chain handles are single-use: dropped once called.
const objects = new Map<number, number>([[0, 0]]);
let nextId = 1;
const depthOf = (target: number): number => {
  const depth = objects.get(target);
  if (depth === undefined) throw new Error(`no object ${target}`);
  if (target !== 0) objects.delete(target);
  return depth;
};

const impl: grpc.UntypedServiceImplementation = {
  Ping(call: grpc.ServerUnaryCall<PingRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
    try {
      const depth = depthOf(call.request.target);
      callback(null, { n: depth === 0 ? call.request.n : depth });
    } catch (err) {
      callback({ code: grpc.status.NOT_FOUND, details: (err as Error).message });
    }
  },
  Next(call: grpc.ServerUnaryCall<NextRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
    try {
      depthOf(call.request.target);
      const id = nextId++;
      objects.set(id, call.request.depth);
      callback(null, { next: id });
    } catch (err) {
      callback({ code: grpc.status.NOT_FOUND, details: (err as Error).message });
    }
  },
  Sink(call: grpc.ServerReadableStream<Chunk, unknown>, callback: grpc.sendUnaryData<unknown>) {
    let bytes = 0;
    call.on("data", (m: Chunk) => {
      bytes += m.chunk.length;
    });
    call.on("end", () => callback(null, { bytes }));
    call.on("error", () => undefined);
  },
};

await runServer(async (address) => {
  if (address.kind === "unix") {
    try {
      fs.unlinkSync(address.path);
    } catch {
      // not there
    }
    process.once("exit", () => {
      try {
        fs.unlinkSync(address.path);
      } catch {
        // gone
      }
    });
  }
  const server = new grpc.Server(channelOptions);
  server.addService(BenchService.service, impl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(formatAddress(address), grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return address.kind === "tcp" ? { ...address, port } : address;
});
