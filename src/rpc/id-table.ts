// ID allocation for the tables whose IDs this vat chooses (questions,
// exports, embargoes). rpc.capnp: "IDs ... are reused like Unix file
// descriptors" — always hand out the lowest free ID, so tables stay dense.

export class IdTable<T> {
  private readonly slots: (T | undefined)[] = [];
  private readonly free: number[] = []; // a min-heap of released IDs
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(id: number): T | undefined {
    return this.slots[id];
  }

  /** Stores `value` under the lowest free ID and returns that ID. */
  add(value: T): number {
    const id = this.free.length > 0 ? this.popFree() : this.slots.length;
    this.slots[id] = value;
    this.count++;
    return id;
  }

  delete(id: number): T | undefined {
    const value = this.slots[id];
    if (value === undefined) return undefined;
    this.slots[id] = undefined;
    this.count--;
    if (id === this.slots.length - 1) {
      // Trim the tail so the heap does not grow with transient bursts.
      this.slots.length = id;
      while (this.slots.length > 0 && this.slots[this.slots.length - 1] === undefined) {
        this.slots.length--;
      }
      // IDs at or beyond the new length are implicitly free again.
      for (let i = this.free.length - 1; i >= 0; i--) if (this.free[i]! >= this.slots.length) this.removeFreeAt(i);
    } else {
      this.pushFree(id);
    }
    return value;
  }

  *entries(): IterableIterator<[number, T]> {
    for (let id = 0; id < this.slots.length; id++) {
      const value = this.slots[id];
      if (value !== undefined) yield [id, value];
    }
  }

  clear(): void {
    this.slots.length = 0;
    this.free.length = 0;
    this.count = 0;
  }

  private pushFree(id: number): void {
    const heap = this.free;
    heap.push(id);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]! <= heap[i]!) break;
      [heap[parent], heap[i]] = [heap[i]!, heap[parent]!];
      i = parent;
    }
  }

  private popFree(): number {
    const heap = this.free;
    const top = heap[0]!;
    this.removeFreeAt(0);
    return top;
  }

  private removeFreeAt(index: number): void {
    const heap = this.free;
    const last = heap.pop()!;
    if (index >= heap.length) return;
    heap[index] = last;
    // Restore the heap property both ways.
    let i = index;
    while (i > 0 && heap[(i - 1) >> 1]! > heap[i]!) {
      const parent = (i - 1) >> 1;
      [heap[parent], heap[i]] = [heap[i]!, heap[parent]!];
      i = parent;
    }
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let smallest = i;
      if (l < heap.length && heap[l]! < heap[smallest]!) smallest = l;
      if (r < heap.length && heap[r]! < heap[smallest]!) smallest = r;
      if (smallest === i) break;
      [heap[smallest], heap[i]] = [heap[i]!, heap[smallest]!];
      i = smallest;
    }
  }
}
