// Loads bench.proto for both sides.
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const definition = protoLoader.loadSync(fileURLToPath(new URL("./bench.proto", import.meta.url)), {
  longs: Number,
  defaults: true,
});
const loaded = grpc.loadPackageDefinition(definition) as unknown as {
  capmesh: { bench: { Bench: grpc.ServiceClientConstructor } };
};
export const BenchService = loaded.capmesh.bench.Bench;

/** grpc-js spells a unix socket `unix:<path>`, as we do, and TCP `host:port`. */
export function grpcTarget(address: string): string {
  return address;
}

export const channelOptions: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": 8 * 1024 * 1024,
  "grpc.max_send_message_length": 8 * 1024 * 1024,
};
