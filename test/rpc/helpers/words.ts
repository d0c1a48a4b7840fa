// Hand-laid Cap'n Proto messages for hostile-input tests: a single segment
// written word by word, so a test can build shapes no honest writer makes
// (aliased pointers, lists of any length) without going through a builder.
import * as rpc from "capnp-es/capnp/rpc";

export class Words {
  readonly bytes: Uint8Array;
  readonly view: DataView;

  constructor(readonly count: number) {
    this.bytes = new Uint8Array(count * 8);
    this.view = new DataView(this.bytes.buffer);
  }

  /** A struct pointer at word `at` to the struct at word `target`. */
  struct(at: number, target: number, dataWords: number, pointers: number): this {
    this.view.setInt32(at * 8, (target - at - 1) << 2, true);
    this.view.setUint32(at * 8 + 4, dataWords | (pointers << 16), true);
    return this;
  }

  /** A list pointer at word `at` to the list at word `target` (`elementSize` as in the encoding spec). */
  list(at: number, target: number, elementSize: number, count: number): this {
    this.view.setInt32(at * 8, ((target - at - 1) << 2) | 1, true);
    this.view.setUint32(at * 8 + 4, (elementSize | (count << 3)) >>> 0, true);
    return this;
  }

  /** A composite list's tag word at `at`: `elements` structs of the given size. */
  tag(at: number, elements: number, dataWords: number, pointers: number): this {
    this.view.setUint32(at * 8, (elements << 2) >>> 0, true);
    this.view.setUint16(at * 8 + 4, dataWords, true);
    this.view.setUint16(at * 8 + 6, pointers, true);
    return this;
  }

  u16(at: number, byte: number, value: number): this {
    this.view.setUint16(at * 8 + byte, value, true);
    return this;
  }

  u32(at: number, byte: number, value: number): this {
    this.view.setUint32(at * 8 + byte, value, true);
    return this;
  }

  /** The message in standard framing (one segment). */
  frame(): Uint8Array {
    const out = new Uint8Array(8 + this.bytes.byteLength);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, 0, true);
    dv.setUint32(4, this.count, true);
    out.set(this.bytes, 8);
    return out;
  }
}

/** Lays out a pointer at word `at` and what it points to from word `first` on. */
export type Layout = { words: number; write: (w: Words, at: number, first: number) => void };

/**
 * An rpc Call of `interfaceId`.`methodId` on export `target` whose params
 * content is laid out by `content`. Words 0–12: root → Message{which = call}
 * → Call (3 data words, 3 pointers) → MessageTarget{importedCap}, Payload
 * {content (word 11), capTable (null)}.
 */
export function callFrame(questionId: number, target: number, interfaceId: bigint, methodId: number, content: Layout): Uint8Array {
  const words = new Words(13 + content.words);
  words.struct(0, 1, 1, 1).u16(1, 0, rpc.Message.CALL);
  words.struct(2, 3, 3, 3).u32(3, 0, questionId).u16(3, 4, methodId);
  words.view.setBigUint64(4 * 8, interfaceId, true);
  words.struct(6, 9, 1, 1).u32(9, 0, target);
  words.struct(7, 11, 0, 2);
  content.write(words, 11, 13);
  return words.frame();
}

/**
 * An rpc Join (Level 4, which capmesh answers with Unimplemented) whose
 * `keyPart` is laid out by `keyPart(words, at)` from word 6 on.
 * Words 0–5: root → Message{which = join} → Join{questionId, target (null), keyPart → word 6}.
 */
export function joinFrame(keyPart: Layout, questionId = 1): Uint8Array {
  const words = new Words(6 + keyPart.words);
  words.struct(0, 1, 1, 1).u16(1, 0, rpc.Message.JOIN);
  words.struct(2, 3, 1, 2).u32(3, 0, questionId);
  keyPart.write(words, 5, 6);
  return words.frame();
}

/**
 * A chain of `levels` structs with two pointers, both to the next one: 16
 * bytes a level, whose tree expansion has 2^levels leaves.
 */
export function aliasedChain(levels: number): Layout {
  return {
    words: levels * 2 + 1,
    write(w, at, first) {
      const leaf = first + levels * 2;
      w.struct(at, first, 0, 2);
      for (let i = 0; i < levels; i++) {
        const self = first + i * 2;
        const next = i === levels - 1 ? leaf : self + 2;
        const [data, ptrs] = i === levels - 1 ? [1, 0] : [0, 2];
        w.struct(self, next, data, ptrs).struct(self + 1, next, data, ptrs);
      }
    },
  };
}

/** A list of `count` one-word structs (nothing aliased: just many). */
export function manyStructs(count: number): Layout {
  return {
    words: 1 + count,
    write(w, at, first) {
      w.list(at, first, 7, count).tag(first, count, 1, 0);
      for (let i = 0; i < count; i++) w.u32(first + 1 + i, 0, i);
    },
  };
}

/** A list of `count` pointers, each to a one-word struct of its own. */
export function manyPointedStructs(count: number): Layout {
  return {
    words: 2 * count,
    write(w, at, first) {
      w.list(at, first, 6, count);
      for (let i = 0; i < count; i++) w.struct(first + i, first + count + i, 1, 0).u32(first + count + i, 0, i);
    },
  };
}

/**
 * A struct whose pointer 0 is `inner` (e.g. params whose first field is a
 * tree): one more level around a layout.
 */
export function structAround(inner: Layout, dataWords = 0, pointers = 1): Layout {
  const size = dataWords + pointers;
  return {
    words: size + inner.words,
    write(w, at, first) {
      w.struct(at, first, dataWords, pointers);
      inner.write(w, first + dataWords, first + size);
    },
  };
}

/**
 * A tree of Node{value, children: List(Node), label} (test/rpc/schema/trees)
 * of `levels` levels where both children of every node share one list: 7
 * words a level, whose reading visits 2^levels nodes.
 */
export function aliasedNodeTree(levels: number): Layout {
  // The root Node (value; children → level 1; label), then per level a
  // composite list of two Nodes whose children both point at the next level.
  return {
    words: 3 + levels * 7,
    write(w, at, first) {
      w.struct(at, first, 1, 2);
      let list = first + 3;
      w.list(first + 1, list, 7, 6);
      for (let level = 0; level < levels; level++) {
        w.tag(list, 2, 1, 2);
        const next = list + 7;
        if (level < levels - 1) w.list(list + 2, next, 7, 6).list(list + 5, next, 7, 6);
        list = next;
      }
    },
  };
}

/** `bytes` of Data (a list of bytes), zero-filled. */
export function dataBlob(bytes: number): Layout {
  return {
    words: Math.ceil(bytes / 8),
    write(w, at, first) {
      w.list(at, first, 2, bytes);
    },
  };
}
