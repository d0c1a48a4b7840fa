// Compiled schema nodes as data: a subset of a CodeGeneratorRequest's nodes
// written out again as a CodeGeneratorRequest of its own. Generated code
// embeds one (its file's nodes and the nodes they need), and joinMesh merges
// them into PluginInfo.schema, so that tools with no generated code can load
// the schema at run time (dynamic.ts).
//
// Only what encoding and decoding need is kept: the nodes themselves (no
// file or annotation nodes), without their own annotations, and no source
// info (doc comments). Nodes are copied as they are, so peers in other
// languages read the result with their own schema loaders.
import { Message, Pointer, utils, type Struct } from "capnp-es";
import * as schema from "capnp-es/capnp/schema";
import { copyPointer } from "../codec/copy.js";
import type { SchemaGraph } from "./graph.js";

/** Node.annotations' pointer index: dropped from copies. */
const NODE_ANNOTATIONS = 2;
/** Node.displayName's pointer index: rewritten when the file is renamed. */
const NODE_DISPLAY_NAME = 0;

/** What reading an untrusted schema may cost, in pointer traversals × 8 (capnp-es's unit). */
const READ_BUDGET_FLOOR = 64 << 20;
const READ_BUDGET_FACTOR = 64;

/**
 * Opens a serialized CodeGeneratorRequest: standard framing, or `packed`.
 * Unless `trusted` (the capnp tool's own output), reading it is bounded by
 * its size, so that a hostile schema (aliased pointers) fails instead of
 * freezing the process.
 */
export function openRequest(bytes: Uint8Array, options: { packed?: boolean; trusted?: boolean } = {}): schema.CodeGeneratorRequest {
  const message = new Message(bytes, options.packed ?? false, false);
  message._capnp.traversalLimit = options.trusted
    ? Number.POSITIVE_INFINITY
    : Math.max(READ_BUDGET_FLOOR, bytes.byteLength * (options.packed ? 8 : 1) * READ_BUDGET_FACTOR);
  return message.getRoot(schema.CodeGeneratorRequest);
}

/**
 * Every node `roots` need to be encoded and decoded: the roots, then the
 * types of struct fields, groups, method params and results, and
 * superclasses, transitively. Ids missing from the graph are left out.
 */
export function neededNodes(graph: SchemaGraph, roots: Iterable<bigint>): Set<bigint> {
  const found = new Set<bigint>();
  const queue = [...roots];
  while (queue.length > 0) {
    const id = queue.pop()!;
    const node = graph.nodes.get(id);
    if (node === undefined || found.has(id)) continue;
    if (node.kind === "file" || node.kind === "annotation" || node.kind === "unknown") continue;
    found.add(id);
    queue.push(...graph.references(node));
  }
  return found;
}

/**
 * A new CodeGeneratorRequest holding copies of `nodes` (in that order), as
 * standard framed bytes, or packed. `filePaths` renames the schema files in
 * display names (`old.capnp:Foo` → `new.capnp:Foo`), keyed by the old path.
 */
export function writeNodes(nodes: Iterable<schema.Node>, packed = false, filePaths?: ReadonlyMap<string, string>): Uint8Array {
  const list = [...nodes];
  const message = new Message();
  const request = message.initRoot(schema.CodeGeneratorRequest);
  const out = request._initNodes(list.length);
  list.forEach((node, i) => {
    const copy = out.get(i);
    const name = node.displayName;
    const colon = name.indexOf(":");
    const path = colon < 0 ? undefined : filePaths?.get(name.slice(0, colon));
    if (path === undefined) {
      copyStruct(node, copy, [NODE_ANNOTATIONS]);
    } else {
      copyStruct(node, copy, [NODE_ANNOTATIONS, NODE_DISPLAY_NAME]);
      copy.displayName = path + name.slice(colon);
      copy.displayNamePrefixLength = node.displayNamePrefixLength + path.length - colon;
    }
  });
  return new Uint8Array(packed ? message.toPackedArrayBuffer() : message.toArrayBuffer());
}

/** Copies `src`'s data and pointers (but the pointers `skip`) into the empty struct `dst`. */
function copyStruct(src: Struct, dst: Struct, skip: readonly number[]): void {
  const from = utils.getContent(src);
  const fromSize = utils.getSize(src);
  const to = utils.getContent(dst);
  const toSize = utils.getSize(dst);
  const dataBytes = Math.min(fromSize.dataByteLength, toSize.dataByteLength);
  for (let i = 0; i < dataBytes; i++) to.segment.setUint8(to.byteOffset + i, from.segment.getUint8(from.byteOffset + i));
  const pointers = Math.min(fromSize.pointerLength, toSize.pointerLength);
  for (let i = 0; i < pointers; i++) {
    if (skip.includes(i)) continue;
    const p = new Pointer(from.segment, from.byteOffset + fromSize.dataByteLength + i * 8);
    if (utils.isNull(p)) continue;
    copyPointer(p, new Pointer(to.segment, to.byteOffset + toSize.dataByteLength + i * 8));
  }
}

/** The nodes of a request by id (the first of any duplicates). */
export function nodesById(request: schema.CodeGeneratorRequest): Map<bigint, schema.Node> {
  const byId = new Map<bigint, schema.Node>();
  for (const node of request.nodes) if (!byId.has(node.id)) byId.set(node.id, node);
  return byId;
}
