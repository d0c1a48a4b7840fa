// The run-time schema loader against the generated codecs of the same
// schema (test/codec/fixtures/codectest.capnp, loaded from what the
// generated module embeds): the same bytes written, the same values read
// back, the same errors for values that do not fit, the same interface
// descriptors; and what it says about schemas it cannot use.
import { describe, expect, it } from "vitest";
import { loadSchema, serializeSchema, type LoadedStruct } from "../../src/codegen/dynamic.js";
import { openRequest, writeNodes } from "../../src/codegen/nodes.js";
import { readMessage, SchemaTypeError, writeMessage, type Codec } from "../../src/codec/runtime.js";
import type { InterfaceDef } from "../../src/codec/types.js";
import { dynamicCall } from "../../src/rpc/typed.js";
import { Counter, Greeter, Room } from "../../src/gen/demo.js";
import * as gen from "./fixtures/gen/codectest.js";
import * as names from "./fixtures/gen/names.js";
import { bytesOf, FakeCaps, fakeClient } from "./helpers.js";
import { SAMPLE } from "./samples.js";

const schema = loadSchema(gen.Service.schema!);

function isInterface(x: unknown): x is InterfaceDef {
  return typeof x === "object" && x !== null && "methods" in x && "superclasses" in x;
}

function loaded(name: string): LoadedStruct {
  const s = schema.structs.get(name);
  if (!s) throw new Error(`no struct ${name} in the loaded schema (it has ${[...schema.structs.keys()].join(", ")})`);
  return s;
}

/** Generated and loaded codecs of one struct, with values to put through both. */
const CASES: [string, Codec<any>, unknown[]][] = [
  ["AllTypes", gen.AllTypes$codec, [SAMPLE, {}, { structField: SAMPLE, anyField: null }]],
  [
    "Defaults",
    gen.Defaults$codec,
    [{}, { b: false, i8: 5, i64: 3n, u64: 0n, f32: 0, f64: Number.NaN, color: "red", text: "", data: new Uint8Array(0), point: {}, ints: [], b2: true }],
  ],
  [
    "Shape",
    gen.Shape$codec,
    [
      {},
      { name: "c", circle: 2.5, style: { color: "blue", border: { dashed: "--" } } },
      { which: "rectangle", rectangle: { width: 2, height: 3 } },
      { empty: true, style: { border: { which: "solid", solid: 7 } } },
      { points: [{ x: 1 }, { y: -2 }] },
      { which: 9, name: "a member from a newer schema" },
    ],
  ],
  ["Nested", gen.Nested$codec, [{ inner: { value: 7, mood: "sad" }, inners: [{ mood: 1 }, {}] }]],
  ["Record", gen.Record$codec, [{ id: 1, score: -0.5, name: "r", tags: ["a", "b"], active: true, kind: "green", stamp: -5n, payload: new Uint8Array([9]), origin: { x: 3 }, level: 255 }]],
  ["UsesGeneric", gen.UsesGeneric$codec, [{ box: { count: 2 }, textBox: { count: 3 } }]],
];

describe("loadSchema: codecs equal to the generated ones", () => {
  it("finds every struct, enum and interface of the file, by schema name", () => {
    for (const name of ["AllTypes", "Defaults", "Shape", "Nested", "Nested.Inner", "Holder", "Box", "UsesGeneric", "Record", "Point", "Service.get$Params"]) {
      expect(schema.structs.has(name), name).toBe(true);
    }
    expect([...schema.enums.keys()].sort()).toEqual(["Color", "Nested.Inner.Mood"]);
    expect([...schema.interfaces.keys()].sort()).toEqual(["Service", "SubService"]);
    expect(schema.byId(gen.SubService.id)).toBe(schema.interfaces.get("SubService"));
    expect(schema.enums.get("Color")!.names).toEqual(gen.Color.names);
  });

  for (const [name, generated, values] of CASES) {
    it(`${name}: writes the same bytes and reads the same values`, () => {
      const dynamic = loaded(name).codec;
      expect(dynamic.name).toBe(generated.name);
      expect([dynamic.dataWords, dynamic.pointers, dynamic.fields]).toEqual([generated.dataWords, generated.pointers, generated.fields]);
      for (const value of values) {
        const bytes = bytesOf(writeMessage(generated, value));
        expect(bytesOf(writeMessage(dynamic, value as Record<string, unknown>))).toEqual(bytes);
        const expected = readMessage(generated, bytes);
        expect(readMessage(dynamic, bytes)).toEqual(expected);
        // Key order too: results print in declaration order.
        expect(Object.keys(readMessage(dynamic, bytes))).toEqual(Object.keys(expected as object));
      }
    });
  }

  it("matches every generated codec of both fixture schemas (names that clash included)", () => {
    for (const module of [gen, names] as Record<string, unknown>[]) {
      const loadedSchema = loadSchema(Object.values(module).find((x): x is InterfaceDef => isInterface(x) && x.schema !== undefined)!.schema!);
      // Groups are no entry of their own: they are found through their fields.
      const byName = new Map<string, Codec<any>>();
      const visit = (s: LoadedStruct): void => {
        if (byName.has(s.codec.name)) return;
        byName.set(s.codec.name, s.codec);
        for (const f of s.fields) if (f.isGroup && f.type.kind === "struct") visit(f.type.struct);
      };
      loadedSchema.structs.forEach(visit);
      const codecs = Object.entries(module).filter(([key]) => key.endsWith("$codec")) as [string, Codec<any>][];
      expect(codecs.length).toBeGreaterThan(5);
      for (const [key, generated] of codecs) {
        const dynamic = byName.get(generated.name);
        expect(dynamic, key).toBeDefined();
        expect([dynamic!.dataWords, dynamic!.pointers, dynamic!.fields], key).toEqual([generated.dataWords, generated.pointers, generated.fields]);
        const empty = bytesOf(writeMessage(generated, {}));
        expect(bytesOf(writeMessage(dynamic!, {})), key).toEqual(empty);
        expect(readMessage(dynamic!, empty), key).toEqual(readMessage(generated, empty));
      }
    }
  });

  it("reads what a default-valued (empty) struct holds: schema defaults, recursion cut at null", () => {
    const empty = bytesOf(writeMessage(gen.Point$codec, {}));
    for (const [name, generated] of CASES) expect(readMessage(loaded(name).codec, empty)).toEqual(readMessage(generated, empty));
    expect(readMessage(loaded("AllTypes").codec, empty).structField).toBeNull();
  });

  it("passes capabilities through the cap table with their loaded interface", () => {
    const value = { svc: fakeClient("a"), sub: fakeClient("b"), svcs: [fakeClient("c"), null], any: fakeClient("d"), which_: 3, b: fakeClient("e") };
    const genCaps = new FakeCaps();
    const dynCaps = new FakeCaps();
    const bytes = bytesOf(writeMessage(gen.Holder$codec, value, genCaps));
    expect(bytesOf(writeMessage(loaded("Holder").codec, value, dynCaps))).toEqual(bytes);
    expect(dynCaps.added.map((c) => [c.value, c.iface?.name ?? null])).toEqual(genCaps.added.map((c) => [c.value, c.iface?.name ?? null]));
    expect(readMessage(loaded("Holder").codec, bytes, dynCaps)).toEqual(readMessage(gen.Holder$codec, bytes, genCaps));
  });

  it("rejects what does not fit with the generated codecs' errors", () => {
    const bad: [string, unknown][] = [
      ["AllTypes", { uInt8Field: 300 }],
      ["AllTypes", { textField: 5 }],
      ["AllTypes", { dataField: "AQI=" }],
      ["AllTypes", { int64Field: 1.5 }],
      ["AllTypes", { enumField: "purple" }],
      ["AllTypes", { structList: [{ x: 1 }, { x: 1.5 }] }],
      ["AllTypes", { listList: [[1], "2"] }],
      ["AllTypes", { structField: { structField: { bogus: 1 } } }],
      ["AllTypes", []],
      ["Shape", { which: "triangle" }],
      ["Shape", { style: { border: { solid: -1 } } }],
      ["Holder", { svc: { notAMethod: () => {} } }],
    ];
    for (const [name, value] of bad) {
      const generated = CASES.find(([n]) => n === name)?.[1] ?? gen.Holder$codec;
      let expected: unknown;
      try {
        writeMessage(generated, value, new FakeCaps());
      } catch (e) {
        expected = e;
      }
      expect(expected, `${name} ${JSON.stringify(value)}`).toBeInstanceOf(SchemaTypeError);
      let got: unknown;
      try {
        writeMessage(loaded(name).codec, value as Record<string, unknown>, new FakeCaps());
      } catch (e) {
        got = e;
      }
      expect(got).toBeInstanceOf(SchemaTypeError);
      expect((got as Error).message).toBe((expected as Error).message);
    }
  });

  it("describes interfaces as the generated descriptors do, superclasses and streams included", () => {
    for (const generated of [gen.Service, gen.SubService] as InterfaceDef[]) {
      const iface = schema.interfaces.get(generated.name)!;
      expect(iface.id).toBe(generated.id);
      expect(iface.superclasses.map((s) => s.id)).toEqual(generated.superclasses.map((s) => s.id));
      const shape = (d: InterfaceDef) => d.methods.map((m) => [m.name, m.ordinal, m.stream, m.params.name, m.results.name]);
      expect(shape(iface)).toEqual(shape(generated));
      for (const m of iface.methods) {
        const g = generated.methods.find((x) => x.name === m.name)!;
        expect(Object.keys(m.results.pipeline)).toEqual(Object.keys(g.results.pipeline));
      }
    }
    const child = schema.structOf(schema.interfaces.get("SubService")!.methods[0]!.results)!;
    expect(child.fields.map((f) => [f.key, f.type.kind])).toEqual([
      ["svc", "interface"],
      ["list", "list"],
    ]);
  });

  it("gives field types for tools that convert values (groups, unions, lists of lists)", () => {
    const shape = loaded("Shape");
    expect(shape.hasUnion).toBe(true);
    expect(shape.fields.map((f) => [f.key, f.discriminant, f.isGroup])).toEqual([
      ["name", null, false],
      ["circle", 0, false],
      ["rectangle", 1, true],
      ["empty", 2, false],
      ["points", 3, false],
      ["style", null, true],
    ]);
    const list = loaded("AllTypes").fields.find((f) => f.key === "structListList")!.type;
    expect(list).toMatchObject({ kind: "list", element: { kind: "list", element: { kind: "struct", struct: { name: "Point" } } } });
  });
});

describe("schemas for the mesh", () => {
  it("serializeSchema holds what the interfaces need and no more; loaded interfaces carry it on", () => {
    const bytes = serializeSchema([Greeter])!;
    const s = loadSchema(bytes);
    // Greeter.room returns a Room, whose join takes a Listener; Counter is not needed.
    expect([...s.interfaces.keys()].sort()).toEqual(["Greeter", "Listener", "Room"]);
    expect(serializeSchema([Greeter, Counter, Room])).not.toBeNull();
    expect(loadSchema(s.interfaces.get("Greeter")!.schema!).interfaces.has("Room")).toBe(true);
    expect(serializeSchema([{ name: "X", id: 1n, methods: [], superclasses: [] }])).toBeNull();
  });

  it("a loaded interface calls a server made from generated code, with dynamicCall or as a client", async () => {
    const loadedGreeter = loadSchema(serializeSchema([Greeter])!).interfaces.get("Greeter")!;
    using greeter = Greeter.server({ greet: ({ name }) => ({ greeting: `hello, ${name}` }), room: () => ({}) });
    expect(await dynamicCall(greeter, loadedGreeter, "greet", { name: "loaded" })).toEqual({ greeting: "hello, loaded" });
    using served = loadedGreeter.server({ greet: (p) => ({ greeting: `dynamic ${String(p.name)}` }) });
    expect(await served.castAs(Greeter).greet({ name: "x" })).toEqual({ greeting: "dynamic x" });
    await expect(dynamicCall(greeter, loadedGreeter, "greet", { name: 5 })).rejects.toThrow(
      /^capmesh: Greeter\$greet\$Params\.name: expected Text \(a string\), got 5$/,
    );
  });

  it("names what an incomplete schema lacks, and refuses what is not a schema", () => {
    const request = openRequest(Buffer.from(gen.Service.schema!, "base64"), { packed: true });
    const only = [...request.nodes].filter((n) => n.id === gen.Service.id);
    expect(() => loadSchema(writeNodes(only))).toThrow(/the schema has no struct 0x[0-9a-f]+ \(the params of Service\.get\): it is incomplete/);
    expect(() => loadSchema(new Uint8Array(0))).toThrow(/the schema is empty/);
    expect(() => loadSchema("not base64!")).toThrow(/must be base64/);
    expect(() => loadSchema(new Uint8Array([1, 2, 3]))).toThrow();
  });
});
