// The studio's answer to "will this run fit?": the engine's memory plan (src/model/memory.ts) of the trainer
// and evaluator a run with these settings builds, against the budget the studio allows itself and the
// device's largest buffer, with the refusal that disables Start. Plans are cached per loaded model by what
// shapes them, and remember which shapes a trainer was actually built for (MemoryEstimate.measured).
// Not the plan itself (memory.ts), and nothing here touches the GPU.

import type { AdapterConfig } from '../io/peft';
import type { ModelConfig } from '../model/config';
import type { MemoryPlan } from '../model/memory';
import { planRun, type RunShape } from '../train/memory_plan';
import { studioOptimizer } from '../train/run';
import type { MemoryEstimate, OptimSettings, TrainableFacts } from './protocol';

const GIB = 2 ** 30;
/** Memory plans kept (one per run shape asked about). */
const MAX_PLANS = 32;

const mb = (bytes: number) => `${Math.ceil(bytes / 1e6).toLocaleString('en-US')} MB`;

/**
 * The GPU memory the studio lets a run use. WebGPU does not say how much memory a GPU has, so this is a
 * conservative budget: 4 GiB, or half the machine's memory where the browser reports less (integrated GPUs
 * and SwiftShader share it).
 */
function memoryBudget(): number {
  const gb = (globalThis.navigator as { deviceMemory?: number } | undefined)?.deviceMemory;
  return Math.min(4 * GIB, gb ? (gb * GIB) / 2 : 4 * GIB);
}

/** The settings a run is built from: its adapter (null when refused), optimizer, sequence length and validation rows. */
export interface RunRequest {
  adapter: AdapterConfig | null;
  optim: OptimSettings;
  seqLen: number;
  /** Validation rows loaded (the run's evaluator takes up to a batch of them); undefined: no data yet. */
  validationRows: number | undefined;
}

export class MemoryEstimator {
  private plans = new Map<string, MemoryPlan>();
  private built = new Set<string>();

  constructor(private readonly config: ModelConfig, private readonly limits: { maxBufferSize: number; maxStorageBufferBindingSize: number }) {}

  /** The estimate of run `r`; `refusal`: why its settings are refused already (else the memory may refuse). */
  estimate(r: RunRequest, trainable: TrainableFacts, refusal: string | null): MemoryEstimate {
    const { key, plan } = this.plan(r);
    const limitBytes = memoryBudget();
    const { maxBufferSize } = this.limits;
    if (refusal === null && plan.largestWeight > maxBufferSize) {
      refusal = `This model needs a single buffer of ${mb(plan.largestWeight)}; this GPU allows ${mb(maxBufferSize)} per buffer. Choose a smaller model.`;
    } else if (refusal === null && plan.bytes > limitBytes) {
      refusal = `Needs about ${mb(plan.bytes)} of GPU memory; the studio allows itself ${mb(limitBytes)} here. Lower the batch size or the sequence length (or the rank).`;
    } else if (refusal === null && plan.largestBuffer > maxBufferSize) {
      refusal = `This run needs a single buffer of ${mb(plan.largestBuffer)}; this GPU allows ${mb(maxBufferSize)} per buffer. Lower the batch size or the sequence length.`;
    }
    const { weights, adapter, optimizer, activations, other } = plan;
    return {
      bytes: plan.bytes, limitBytes, breakdown: { weights, adapter, optimizer, activations, other }, largestBuffer: plan.largestBuffer, maxBufferSize,
      measured: this.built.has(key), trainable, refusal,
    };
  }

  /** A trainer of run `r` has been built on the GPU. */
  markBuilt(r: RunRequest): void {
    this.built.add(this.plan(r).key);
  }

  /** The plan of run `r` (of the model alone when its adapter is refused), cached by what shapes it. */
  private plan(r: RunRequest): { key: string; plan: MemoryPlan } {
    const whole = (v: number) => (Number.isSafeInteger(v) && v >= 1 ? v : 1);
    const o = r.optim, B = whole(o.batchSize), T = whole(r.seqLen);
    const shape: RunShape | null = r.adapter && {
      adapter: r.adapter, batch: B, seqLen: T, gradAccum: whole(o.gradAccum), optimizer: studioOptimizer(o), keepLastGood: true,
      evalBatch: Math.min(B, r.validationRows ?? B),
    };
    const key = JSON.stringify(shape && { ...shape, adapter: [shape.adapter.targetModules, shape.adapter.r, shape.adapter.loraDropout > 0], optimizer: o.maxGradNorm > 0 });
    let plan = this.plans.get(key);
    if (!plan) {
      if (this.plans.size >= MAX_PLANS) this.plans.clear();
      plan = planRun(this.config, shape, this.limits.maxStorageBufferBindingSize);
      this.plans.set(key, plan);
    }
    return { key, plan };
  }
}
