// The autograd tape: records a forward pass as GPU nodes, walks it backward to record the gradient nodes,
// then compiles everything into one flat list of dispatches that a training step replays as a single
// command buffer with no CPU read-back inside it.
//
// Tensors are virtual until compile(): a node names the tensors it reads and writes, and compile() gives
// each virtual tensor a pooled GPU buffer from its first use to its last use (an interval allocation over
// the node order, planned for the whole program at once, largest tensors first). So an activation's memory
// is free again after the last backward node that needs it, and later tensors of the same step reuse it. Persistent tensors (weights, LoRA
// parameters and their gradients, inputs, the loss) own their buffers and are never recycled.
//
// Gradient rule (micrograd's `+=`): the first node that produces a gradient for a tensor writes it, every
// later one accumulates into it; `gradSlot()` tells an op which of the two it is. Parameter gradients are
// persistent and always accumulated, so a step zeroes them explicitly first (see zeroGrads).
//
// Memory for compute (activation checkpointing), two ways, both invisible to the ops' backward rules: a
// tensor with a recipe (recomputable) is read by every backward node as a copy recomputed at its first
// backward use; and a checkpointed segment of the forward (checkpoint, one decoder layer) keeps only its
// inputs: when the backward reaches it, its forward nodes are recorded again into fresh tensors, and the
// segment's backward nodes read those. Same kernels on the same values, so the gradients are bit for bit.

import type { Binding, Dispatch, Gpu } from '../gpu/gpu';

export class Tensor {
  private static nextId = 0;
  readonly id = Tensor.nextId++;
  /** Set for persistent tensors at creation, for virtual ones by compile(). */
  buffer: GPUBuffer | undefined;
  /**
   * Where a persistent tensor's gradient lives when its owner placed it (a packed parameter: a range of the
   * packed gradient buffer, src/autograd/packed.ts); otherwise the tape gives it a buffer of its own.
   */
  gradAt: { buffer: GPUBuffer; offset: number } | undefined;
  /** Gradients flow into this tensor (it is a trainable parameter or depends on one). */
  requiresGrad = false;
  constructor(
    readonly label: string,
    readonly shape: readonly number[],
    readonly persistent: boolean,
    buffer?: GPUBuffer,
    /** Bytes into `buffer` where this tensor starts (a multiple of 256: a binding offset); 0 unless packed. */
    readonly offset = 0,
  ) {
    this.buffer = buffer;
  }
  /** The tensor's bytes as a binding: its whole buffer, or its range of a packed one. */
  get binding(): Binding {
    const buffer = this.buffer!;
    const own = this.offset === 0 && buffer.size === Math.max(16, Math.ceil(this.bytes / 16) * 16);
    return own ? buffer : { buffer, offset: this.offset, size: this.bytes };
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get bytes(): number {
    return this.numel * 4;
  }
  /** Rows [r0, r0 + n) of this persistent (rows, cols) tensor as a binding range: a chunk of a (V, C) table. */
  rows(r0: number, n: number): GPUBufferBinding {
    const cols = this.shape[1];
    return { buffer: this.buffer!, offset: this.offset + r0 * cols * 4, size: n * cols * 4 };
  }
}

/** Bytes [offset, offset + size) of a binding, as a binding of its buffer (offset a multiple of 256). */
export function range(b: Binding, offset: number, size: number): GPUBufferBinding {
  return 'buffer' in b ? { buffer: b.buffer, offset: (b.offset ?? 0) + offset, size } : { buffer: b, offset, size };
}

/** Whether two bindings start at the same byte of the same buffer (an in-place operation). */
export function sameStart(a: Binding, b: Binding): boolean {
  const at = (x: Binding) => ('buffer' in x ? [x.buffer, x.offset ?? 0] : [x, 0]);
  const [ba, oa] = at(a), [bb, ob] = at(b);
  return ba === bb && oa === ob;
}

/**
 * The binding of `t` (its buffer, or its range of a packed one); throws if a virtual tensor is used before
 * compile() placed it.
 */
export type Resolve = (t: Tensor) => Binding;

interface Node {
  label: string;
  reads: readonly Tensor[];
  writes: readonly Tensor[];
  build: (buf: Resolve) => Dispatch | Dispatch[];
}

/** A checkpointed part of the forward: nodes [from, to) and backward closures [from, to) it recorded. */
interface Segment {
  nodes: [number, number];
  fns: [number, number];
}

/** `n` reading and writing `swap`'s replacements instead of the tensors they replace. */
function substituted(n: Node, swap: ReadonlyMap<Tensor, Tensor>): Node {
  const to = (t: Tensor) => swap.get(t) ?? t;
  return { label: n.label, reads: n.reads.map(to), writes: n.writes.map(to), build: (b) => n.build((t) => b(to(t))) };
}

export interface GradSlot {
  grad: Tensor;
  /** false: this node is the first to produce the gradient and overwrites it; true: it adds (+=). */
  accumulate: boolean;
}

export interface Program {
  dispatches: Dispatch[];
  /**
   * Bytes of the pooled buffers the program holds for its virtual tensors (activations and their gradients):
   * at least the most tensor bytes live at once, and close to it, since the buffers are planned for the whole
   * program (Tape.placeTensors).
   */
  transientBytes: number;
  /** The virtual tensors live together at the largest sum of tensor bytes, and the node it was reached at. */
  peakTensors: { label: string; bytes: number }[];
  peakNode: string;
}

export class Tape {
  private nodes: Node[] = [];
  private backwardFns: (() => void)[] = [];
  private grads = new Map<Tensor, Tensor>();
  private gradWritten = new Set<Tensor>();
  private kept = new Set<Tensor>();
  /** Recipes for recomputing a forward value in the backward (recomputable), and the copies made so far. */
  private recipes = new Map<Tensor, () => Tensor>();
  private recomputed = new Map<Tensor, Tensor>();
  /** Nodes [0, forwardEnd) are the forward's (set when backward() starts). */
  private forwardEnd = Infinity;
  /** The checkpointed segments of the forward: their nodes and their backward closures, in recording order. */
  private segments: Segment[] = [];
  private inSegment = false;
  /** While the backward of a checkpointed segment is recorded: each forward value of it → its recomputed copy. */
  private copies: Map<Tensor, Tensor> | undefined;

  constructor(readonly gpu: Gpu) {}

  /** A virtual tensor: gets a pooled buffer only for the span of nodes that use it. */
  tensor(label: string, shape: readonly number[]): Tensor {
    return new Tensor(label, shape, false);
  }

  /** A tensor that owns `buffer` (a weight, an input, the loss). */
  persistent(label: string, shape: readonly number[], buffer: GPUBuffer, requiresGrad = false): Tensor {
    const t = new Tensor(label, shape, true, buffer);
    t.requiresGrad = requiresGrad;
    return t;
  }

  /**
   * Record one node. `build` runs at compile time, when every tensor has its buffer. In the backward, a read
   * of a forward value that is recomputed (a recipe's, or a checkpointed segment's) becomes a read of its copy.
   */
  op(label: string, reads: readonly Tensor[], writes: readonly Tensor[], build: Node['build']): void {
    if (this.forwardEnd === Infinity) {
      this.nodes.push({ label, reads, writes, build });
      return;
    }
    const swap = new Map<Tensor, Tensor>();
    for (const t of reads) {
      const c = this.saved(t);
      if (c !== t) swap.set(t, c);
    }
    this.nodes.push(swap.size === 0 ? { label, reads, writes, build } : substituted({ label, reads, writes, build }, swap));
  }

  /**
   * Record `fn`'s forward as a checkpointed segment: its activations are not kept for the backward, which
   * records the segment's forward again (into fresh tensors) just before the segment's own backward and reads
   * those. What the segment reads from before it (its inputs) is kept as usual, or recomputed if it has a recipe.
   */
  checkpoint<T>(fn: () => T): T {
    if (this.inSegment) throw new Error('tape.checkpoint: segments do not nest');
    if (this.forwardEnd !== Infinity) throw new Error('tape.checkpoint: only the forward is checkpointed');
    const n0 = this.nodes.length, f0 = this.backwardFns.length;
    this.inSegment = true;
    try {
      return fn();
    } finally {
      this.inSegment = false;
      this.segments.push({ nodes: [n0, this.nodes.length], fns: [f0, this.backwardFns.length] });
    }
  }

  /** Register the backward of the op just recorded; closures run in reverse order in backward(). */
  onBackward(fn: () => void): void {
    this.backwardFns.push(fn);
  }

  /**
   * Register the backward of an op with output `out`, under the guard every op shares: `fn(dout)` runs only
   * when some consumer gave `out` a gradient and at least one of `inputs` needs one.
   */
  onGradient(out: Tensor, inputs: readonly Tensor[], fn: (dout: Tensor) => void): void {
    this.onBackward(() => {
      if (this.hasGrad(out) && inputs.some((t) => t.requiresGrad)) fn(this.grad(out));
    });
  }

  /** Outputs need gradients when any input does. */
  propagate(out: Tensor, inputs: readonly Tensor[]): Tensor {
    out.requiresGrad = inputs.some((t) => t.requiresGrad);
    return out;
  }

  /** The gradient tensor of `t` (persistent for persistent tensors, so parameter grads survive the step). */
  grad(t: Tensor): Tensor {
    let g = this.grads.get(t);
    if (!g) {
      g = !t.persistent
        ? new Tensor(`${t.label}.grad`, t.shape, false)
        : t.gradAt
          ? new Tensor(`${t.label}.grad`, t.shape, true, t.gradAt.buffer, t.gradAt.offset)
          : new Tensor(`${t.label}.grad`, t.shape, true, this.gpu.buffer(`${t.label}.grad`, t.bytes));
      this.grads.set(t, g);
    }
    return g;
  }

  /** Keep a virtual tensor's buffer to the end of the program, so it can be read afterwards. */
  keep(t: Tensor): void {
    this.kept.add(t);
  }

  /** Make `grad` the gradient of `t` (the starting point of a backward that is not the loss's; for tests). */
  seedGrad(t: Tensor, grad: GPUBuffer): void {
    this.grads.set(t, new Tensor(`${t.label}.grad`, t.shape, true, grad));
    this.gradWritten.add(t);
  }

  hasGrad(t: Tensor): boolean {
    return this.gradWritten.has(t);
  }

  /** Claim the gradient of `t` for writing: the first claim overwrites, later ones accumulate. */
  gradSlot(t: Tensor): GradSlot {
    const grad = this.grad(t);
    if (t.persistent) return { grad, accumulate: true };
    const accumulate = this.gradWritten.has(t);
    this.gradWritten.add(t);
    return { grad, accumulate };
  }

  /**
   * Make `g` itself the gradient of `t`, instead of a copy of it, when t has none yet (the add's backward,
   * whose gradient passes unchanged); later gradients of t then accumulate into g's buffer. Sound because `g`
   * is the gradient of the op's output, which is final when that op's backward runs (every consumer's ran
   * before), so only this op's own backward nodes still read it, and they are recorded first. Both must be
   * virtual: a persistent gradient belongs to its owner. Returns false, sharing nothing, when it cannot.
   */
  shareGrad(t: Tensor, g: Tensor): boolean {
    if (t.persistent || g.persistent || this.grads.has(t)) return false;
    this.grads.set(t, g);
    this.gradWritten.add(t);
    return true;
  }

  /**
   * Make `g`, already the gradient of `a` (shareGrad), the gradient of `b` too, for `out = a + b` whose
   * gradient g is: both then read and write one buffer, with no copy. Sound only when every reader of b's
   * gradient is recorded before the first node that adds into a's, which the forward's order decides: b has
   * no consumer but the add, and nothing recorded from b's producer on reads a (so every other consumer of a
   * comes earlier in the forward, its backward later). The residual adds of a decoder are like this: the
   * branch (o_proj's or down_proj's output) is made after the stream's last other use (its norm). Returns
   * false, sharing nothing, when it cannot.
   */
  shareGradWith(a: Tensor, b: Tensor, g: Tensor): boolean {
    if (b.persistent || this.grads.has(b) || this.grads.get(a) !== g || a === b) return false;
    const forward = this.nodes.slice(0, this.forwardEnd);
    const readers = forward.filter((n) => n.reads.includes(b));
    const producer = forward.findLastIndex((n) => n.writes.includes(b));
    if (readers.length !== 1 || producer < 0 || !readers[0].reads.includes(a)) return false;
    if (forward.slice(producer).some((n) => n !== readers[0] && (n.reads.includes(a) || n.writes.includes(a)))) return false;
    this.grads.set(b, g);
    this.gradWritten.add(b);
    return true;
  }

  /**
   * Let the backward recompute `t` instead of keeping it: `make` records the nodes that compute a copy of it
   * from tensors the backward keeps anyway, and returns the copy. A backward that reads `t` through saved()
   * then reads that copy, so `t` itself dies with its last forward reader (activation checkpointing: memory
   * for the time of `make`'s nodes). Nothing is recomputed unless some backward asks.
   */
  recomputable(t: Tensor, make: () => Tensor): void {
    this.recipes.set(t, make);
  }

  /**
   * What a backward node reads for the forward value `t`: t, its checkpointed segment's copy, or the copy its
   * recipe makes (recorded at the first ask).
   */
  saved(t: Tensor): Tensor {
    const fromSegment = this.copies?.get(t);
    if (fromSegment) return fromSegment;
    const make = this.recipes.get(t);
    if (!make) return t;
    let copy = this.recomputed.get(t);
    if (!copy) {
      copy = make();
      this.recomputed.set(t, copy);
    }
    return copy;
  }

  /** Record the backward pass from `loss` (whose gradient the loss op seeds itself). */
  backward(): void {
    this.forwardEnd = this.nodes.length;
    const segments = [...this.segments];
    let seg = segments.pop();
    for (let i = this.backwardFns.length - 1; i >= 0; i--) {
      while (seg && i < seg.fns[0]) seg = segments.pop();
      if (seg && i === seg.fns[1] - 1) this.copies = this.recordAgain(seg);
      this.backwardFns[i]();
      if (seg && i === seg.fns[0]) this.copies = undefined;
    }
    this.copies = undefined;
    this.backwardFns = [];
  }

  /**
   * Record a checkpointed segment's forward nodes again, each tensor they write replaced by a fresh one, and
   * return the map original → copy. The segment's inputs with recipes are read through their copies too, so
   * neither they nor anything the segment made outlives the forward.
   */
  private recordAgain(seg: Segment): Map<Tensor, Tensor> {
    const forward = this.nodes.slice(seg.nodes[0], seg.nodes[1]);
    const copies = new Map<Tensor, Tensor>();
    for (const n of forward) {
      for (const t of n.writes) {
        if (t.persistent) throw new Error(`tape.checkpoint: ${n.label} writes ${t.label}, a persistent tensor; a recomputed segment may only make activations`);
        if (!copies.has(t)) copies.set(t, new Tensor(`${t.label}.recomputed`, t.shape, false));
      }
    }
    for (const n of forward) {
      for (const t of n.reads) if (!t.persistent && !copies.has(t) && this.recipes.has(t)) copies.set(t, this.saved(t));
    }
    for (const n of forward) this.nodes.push(substituted({ ...n, label: `${n.label}.recomputed` }, copies));
    return copies;
  }

  /** Nodes recorded so far, for tests and profiling. */
  get nodeLabels(): string[] {
    return this.nodes.map((n) => n.label);
  }

  /**
   * Place every virtual tensor in a pooled buffer for the interval of nodes that touch it, and build the
   * dispatches. Interval allocation: walking the nodes in order, a tensor takes a buffer from the pool at its
   * first use and returns it after its last, so a later tensor of the same size reuses the memory.
   */
  compile(): Program {
    const first = new Map<Tensor, number>();
    const last = new Map<Tensor, number>();
    this.nodes.forEach((n, i) => {
      for (const t of [...n.reads, ...n.writes]) {
        if (t.persistent) continue;
        if (!first.has(t)) first.set(t, i);
        last.set(t, i);
      }
    });
    for (const t of this.kept) if (last.has(t)) last.set(t, this.nodes.length - 1);
    const byFirst = new Map<number, Tensor[]>();
    const byLast = new Map<number, Tensor[]>();
    for (const [t, i] of first) (byFirst.get(i) ?? byFirst.set(i, []).get(i)!).push(t);
    for (const [t, i] of last) (byLast.get(i) ?? byLast.set(i, []).get(i)!).push(t);
    const owned = this.placeTensors(first, last);

    let current = '';
    const resolve: Resolve = (t) => {
      if (!t.buffer) throw new Error(`tape: node ${current} uses tensor ${t.label}, which has no buffer (it is not among the node's reads and writes)`);
      return t.binding;
    };
    let live = 0, peak = 0;
    const liveSet = new Set<Tensor>();
    let peakTensors: Tensor[] = [], peakNode = '';
    const dispatches: Dispatch[] = [];
    this.nodes.forEach((n, i) => {
      for (const t of byFirst.get(i) ?? []) {
        live += t.bytes;
        liveSet.add(t);
        if (live > peak) {
          peak = live;
          peakTensors = [...liveSet];
          peakNode = n.label;
        }
      }
      current = n.label;
      const d = n.build(resolve);
      if (Array.isArray(d)) dispatches.push(...d);
      else dispatches.push(d);
      for (const t of byLast.get(i) ?? []) {
        live -= t.bytes;
        liveSet.delete(t);
      }
    });
    const transientBytes = owned.reduce((sum, b) => sum + b.size, 0);
    return { dispatches, transientBytes, peakTensors: peakTensors.map((t) => ({ label: t.label, bytes: t.bytes })), peakNode };
  }

  /**
   * Give every virtual tensor a pooled buffer for its interval of nodes [first, last], and return the buffers.
   * Planned for the whole program at once, largest tensors first: each takes the smallest buffer already
   * planned that is large enough and idle over its whole interval, or a new one of its own size. A tensor in a
   * larger buffer binds a range of it. Two tensors one node uses are live together, so never share a buffer.
   */
  private placeTensors(first: ReadonlyMap<Tensor, number>, last: ReadonlyMap<Tensor, number>): GPUBuffer[] {
    const padded = (t: Tensor) => Math.max(16, Math.ceil(t.bytes / 16) * 16);
    const order = [...first.keys()].sort((a, b) => padded(b) - padded(a) || first.get(a)! - first.get(b)!);
    const slots: { size: number; busy: [number, number][]; tensors: Tensor[] }[] = [];
    for (const t of order) {
      const [a, b] = [first.get(t)!, last.get(t)!];
      const size = padded(t);
      let slot: (typeof slots)[number] | undefined;
      for (const s of slots) {
        if (s.size < size || (slot && s.size >= slot.size)) continue;
        if (s.busy.every(([x, y]) => y < a || x > b)) slot = s;
      }
      if (!slot) slots.push((slot = { size, busy: [], tensors: [] }));
      slot.busy.push([a, b]);
      slot.tensors.push(t);
    }
    return slots.map((s) => {
      const buffer = this.gpu.buffer(`tape.${s.size}`, s.size);
      for (const t of s.tensors) t.buffer = buffer;
      return buffer;
    });
  }
}
