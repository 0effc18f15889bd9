// The studio's answer to "will this run fit?": the engine's memory plan (src/model/memory.ts) of the trainer
// and evaluator a run with these settings builds, on the model as it is loaded (its base dtype) and with the
// run's recompute switch, against the budget the studio allows itself, the device's largest buffer and its
// largest binding; with the refusal that disables Start, which names the settings that would fit. Plans are
// cached per loaded model by what shapes them, and remember which shapes a trainer was actually built for
// (MemoryEstimate.measured). Not the plan itself (memory.ts), and nothing here touches the GPU.
//
// The settings that would fit are planned only when refusing (a plan of a 1 B model takes about a second),
// in the order that costs the user least: recompute on (same numbers, more compute), then a smaller batch
// (halved, with more accumulation to keep the rows a step), then the NF4 base, which means reloading the model.

import type { AdapterConfig } from '../io/peft';
import type { BaseDtype } from '../model/causal_lm';
import type { ModelConfig } from '../model/config';
import { planRun, type RunMemoryPlan, type RunShape } from '../train/memory_plan';
import { adapterConfig, studioOptimizer } from '../train/run';
import type { LoraSettings, MemoryAlternative, MemoryEstimate, OptimSettings, TrainableFacts } from './protocol';

const GIB = 2 ** 30;
/** Memory plans kept (one per run shape asked about). */
const MAX_PLANS = 32;
/** The most micro-batches a suggestion raises accumulation to (the settings' own limit). */
const MAX_ACCUM = 256;
/** Suggestions a refusal names at most. */
const MAX_ALTERNATIVES = 2;

/** Megabytes, rounded up: to a tenth below 10 MB, so a small model's figures still differ. */
export const mb = (bytes: number) => (bytes < 1e7 ? `${(Math.ceil(bytes / 1e5) / 10).toFixed(1)} MB` : `${Math.ceil(bytes / 1e6).toLocaleString('en-US')} MB`);
const RECOMPUTE = 'turn on “Recompute activations”';

/**
 * The GPU memory the studio lets a run use. WebGPU does not say how much memory a GPU has, so this is a
 * conservative budget: 4 GiB, or half the machine's memory where the browser reports less (integrated GPUs
 * and SwiftShader share it).
 */
export function memoryBudget(): number {
  const gb = (globalThis.navigator as { deviceMemory?: number } | undefined)?.deviceMemory;
  return Math.min(4 * GIB, gb ? (gb * GIB) / 2 : 4 * GIB);
}

/** The settings a run is built from: its adapter (null when refused), optimizer, sequence length and validation rows. */
export interface RunRequest {
  adapter: AdapterConfig | null;
  /** With `recompute`, the run's switch. */
  optim: OptimSettings;
  seqLen: number;
  /** Validation rows loaded (the run's evaluator takes up to a batch of them); undefined: no data yet. */
  validationRows: number | undefined;
}

/** What a plan exceeds, and whether anything but the base's dtype can help. */
interface Problem {
  message: string;
  /** The base weights themselves: only a smaller base dtype helps. */
  weights: boolean;
}

export class MemoryEstimator {
  private plans = new Map<string, RunMemoryPlan>();
  private built = new Set<string>();

  /** `baseDtype`: how the loaded model holds its base; `budget`: the bytes a run may take (memoryBudget()). */
  constructor(
    private readonly config: ModelConfig,
    private readonly limits: { maxBufferSize: number; maxStorageBufferBindingSize: number },
    private readonly baseDtype: BaseDtype = 'f32',
    private readonly budget = memoryBudget(),
  ) {}

  /** The estimate of a run with LoRA settings `lora` on the model named `modelName`; LoRA settings PEFT refuses are its refusal. */
  estimateSettings(s: Omit<RunRequest, 'adapter'> & { lora: LoraSettings }, modelName: string, trainable: TrainableFacts): MemoryEstimate {
    let adapter: AdapterConfig | null = null, refusal: string | null = null;
    try {
      adapter = adapterConfig(s.lora, modelName);
    } catch (e) {
      refusal = (e as Error).message;
    }
    return this.estimate({ adapter, optim: s.optim, seqLen: s.seqLen, validationRows: s.validationRows }, trainable, refusal);
  }

  /** The estimate of run `r`; `refusal`: why its settings are refused already (else the memory may refuse). */
  estimate(r: RunRequest, trainable: TrainableFacts, refusal: string | null): MemoryEstimate {
    const { key, plan } = this.plan(r, this.baseDtype);
    let alternatives: MemoryAlternative[] = [];
    const problem = refusal === null ? this.problem(plan) : null;
    if (problem) {
      alternatives = this.alternatives(r, problem.weights);
      const ways = alternatives.map((a) => `${a.label} (about ${mb(a.bytes)}${a.note ? `; ${a.note}` : ''})`).join(' or ');
      refusal = `${problem.message} ${ways ? `${ways[0].toUpperCase()}${ways.slice(1)}.` : this.lastResort(r, problem.weights)}`;
    }
    const { weights, adapter, optimizer, activations, other } = plan;
    return {
      bytes: plan.bytes, limitBytes: this.budget, breakdown: { weights, adapter, optimizer, activations, other }, largestBuffer: plan.largestBuffer,
      maxBufferSize: this.limits.maxBufferSize, measured: this.built.has(key), trainable, refusal, alternatives,
    };
  }

  /** A trainer of run `r` has been built on the GPU. */
  markBuilt(r: RunRequest): void {
    this.built.add(this.plan(r, this.baseDtype).key);
  }

  /** What `plan` exceeds first, in words (null: it fits). */
  private problem(plan: RunMemoryPlan): Problem | null {
    const { maxBufferSize, maxStorageBufferBindingSize: maxBinding } = this.limits;
    if (plan.largestWeight > maxBufferSize) {
      return { weights: true, message: `This model needs a single buffer of ${mb(plan.largestWeight)}; this GPU allows ${mb(maxBufferSize)} per buffer.` };
    }
    if (plan.bytes > this.budget) return { weights: false, message: `Needs about ${mb(plan.bytes)} of GPU memory; the studio allows itself ${mb(this.budget)} here.` };
    if (plan.largestBuffer > maxBufferSize) {
      return { weights: false, message: `This run needs a single buffer of ${mb(plan.largestBuffer)}; this GPU allows ${mb(maxBufferSize)} per buffer.` };
    }
    if (plan.largestBinding > maxBinding) {
      return { weights: false, message: `This run binds ${mb(plan.largestBinding)} to one kernel; this GPU allows ${mb(maxBinding)} per binding.` };
    }
    return null;
  }

  /**
   * Up to MAX_ALTERNATIVES settings near `r` that fit, cheapest first: recompute on; a smaller batch (with
   * recompute as set, else turned on too); and only when neither fits, the NF4 base (a reload) with the
   * least else that makes it fit. `weightsOnly`: the base's own buffers are too big, so only its dtype helps.
   */
  private alternatives(r: RunRequest, weightsOnly: boolean): MemoryAlternative[] {
    const o = r.optim, on = o.recompute === true;
    const found: MemoryAlternative[] = [];
    if (!weightsOnly) {
      if (!on) {
        const bytes = this.fits({ ...r, optim: { ...o, recompute: true } }, this.baseDtype);
        if (bytes !== null) found.push({ optim: { recompute: true }, bytes, label: RECOMPUTE });
      }
      const smaller = this.smallerBatch(r, on, this.baseDtype) ?? (!on && found.length === 0 ? this.smallerBatch(r, true, this.baseDtype) : null);
      if (smaller) found.push(smaller);
    }
    if (found.length > 0 || this.baseDtype === 'nf4') return found.slice(0, MAX_ALTERNATIVES);
    const reload = 'reload the model with the NF4 base';
    const bytes = this.fits(r, 'nf4');
    if (bytes !== null) return [{ optim: {}, baseDtype: 'nf4', bytes, label: reload }];
    if (weightsOnly) return [];
    if (!on) {
      const both = this.fits({ ...r, optim: { ...o, recompute: true } }, 'nf4');
      if (both !== null) return [{ optim: { recompute: true }, baseDtype: 'nf4', bytes: both, label: `${reload} and ${RECOMPUTE}` }];
    }
    const smaller = this.smallerBatch(r, true, 'nf4');
    return smaller ? [{ ...smaller, baseDtype: 'nf4', label: `${reload} and ${smaller.label}` }] : [];
  }

  /**
   * The largest batch B/2, B/4, … that fits with recompute `recompute` and base `dtype` (memory grows with
   * the batch, so a binary search over the halvings), with accumulation raised to keep the rows a step.
   */
  private smallerBatch(r: RunRequest, recompute: boolean, dtype: BaseDtype): MemoryAlternative | null {
    const B = whole(r.optim.batchSize), accum = whole(r.optim.gradAccum);
    const halvings = Math.floor(Math.log2(B)); // B >> halvings is 1
    if (halvings === 0) return null;
    const at = (k: number) => {
      const batchSize = Math.max(1, Math.floor(B / 2 ** k));
      const more = B % batchSize === 0 && accum * (B / batchSize) <= MAX_ACCUM ? accum * (B / batchSize) : accum;
      const optim = { ...r.optim, batchSize, gradAccum: more, recompute };
      return { optim, bytes: this.fits({ ...r, optim }, dtype) };
    };
    let best = at(halvings);
    if (best.bytes === null) return null;
    let lo = 1, hi = halvings - 1; // the fewest halvings that fit lie in [lo, halvings]
    while (lo <= hi) {
      const mid = (lo + hi) >> 1, tried = at(mid);
      if (tried.bytes !== null) (best = tried), (hi = mid - 1);
      else lo = mid + 1;
    }
    const { batchSize, gradAccum } = best.optim;
    const turnOn = recompute && r.optim.recompute !== true;
    const label = `${turnOn ? `${RECOMPUTE} and ` : ''}use batch ${batchSize}${gradAccum !== accum ? ` with accumulation ${gradAccum}` : ''}`;
    const note = gradAccum !== accum ? `the same ${B * accum} rows a step` : undefined;
    return { optim: { batchSize, gradAccum, ...(turnOn ? { recompute: true } : {}) }, bytes: best.bytes!, label, ...(note ? { note } : {}) };
  }

  /** Bytes of run `r` on a `dtype` base if it fits, else null. */
  private fits(r: RunRequest, dtype: BaseDtype): number | null {
    const { plan } = this.plan(r, dtype);
    return this.problem(plan) === null ? plan.bytes : null;
  }

  /** What to change when nothing near the settings fits. */
  private lastResort(r: RunRequest, weights: boolean): string {
    if (weights) return this.baseDtype === 'nf4' ? 'Choose a smaller model.' : 'Even the NF4 base does not fit: choose a smaller model.';
    const tried = [whole(r.optim.batchSize) > 1 && 'batch 1', 'recomputed activations', this.baseDtype !== 'nf4' && 'the NF4 base'].filter((t) => t !== false);
    const all = tried.length > 1 ? `${tried.slice(0, -1).join(', ')} and ${tried.at(-1)}` : tried[0];
    return `Even with ${all} it does not fit: lower the sequence length (or the rank), or choose a smaller model.`;
  }

  /** The plan of run `r` on a `dtype` base (of the model alone when its adapter is refused), cached by what shapes it. */
  private plan(r: RunRequest, dtype: BaseDtype): { key: string; plan: RunMemoryPlan } {
    const o = r.optim, B = whole(o.batchSize), T = whole(r.seqLen);
    const recompute = o.recompute === true;
    const shape: RunShape | null = r.adapter && {
      adapter: r.adapter, batch: B, seqLen: T, gradAccum: whole(o.gradAccum), optimizer: studioOptimizer(o), keepLastGood: true,
      evalBatch: Math.min(B, r.validationRows ?? B),
    };
    const key = JSON.stringify([
      dtype, recompute,
      shape && { ...shape, adapter: [shape.adapter.targetModules, shape.adapter.r, shape.adapter.loraDropout > 0, shape.adapter.useDora === true], optimizer: o.maxGradNorm > 0 },
    ]);
    let plan = this.plans.get(key);
    if (!plan) {
      if (this.plans.size >= MAX_PLANS) this.plans.clear();
      plan = planRun(this.config, shape, this.limits.maxStorageBufferBindingSize, { baseDtype: dtype, recompute });
      this.plans.set(key, plan);
    }
    return { key, plan };
  }
}

/** A positive whole number, else 1 (the settings' checks refuse the rest). */
function whole(v: number): number {
  return Number.isSafeInteger(v) && v >= 1 ? v : 1;
}
