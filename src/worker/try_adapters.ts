// Try it's adapters beside the one the session holds: library entries attached to the loaded model (their A
// and B uploaded once, CausalLM.attach; whether one fits is io/base_identity.ts's call, as for Load), the
// blend a generate request names turned into the model's BlendTerms and said back as it really ran, a blend
// saved as a new library entry (PEFT's "cat", src/model/blend.ts), and the checks of a generate request.
// Switching what Try it runs is choosing another BlendTerm list: the base weights and every attached
// adapter stay where they are on the GPU.
// Not the held adapter and its run (session.ts keeps those) and not the programs' cache (generators.ts).

import { badInput } from '../io/errors';
import type { AdapterEntry, AdapterLibrary } from '../io/library';
import { writeAdapter, type AdapterConfig } from '../io/peft';
import { blendAdapters, type BlendSource } from '../model/blend';
import type { BlendTerm, CausalLM } from '../model/causal_lm';
import type { ModelConfig } from '../model/config';
import { adapterExpectation } from '../model/lora';
import type { LoraTokenizer } from '../io/tokenizer';
import { adapterLoaded, entryConfig, fittingWeights } from './adapter_entries';
import { GeneratorCache } from './generators';
import type { AttachedAdapter, BlendWeight, EngineRequest, EventBody, RanAdapter, ResponseBody } from './protocol';

/** Adapters attached at once: each holds its A and B on the GPU, and every blend of them a program of its own. */
export const MAX_ATTACHED = 8;

/** The adapter the session holds, as a blend sees it (null: none). */
export interface HeldAdapter {
  name: string;
  config: AdapterConfig;
  /** Its values, read back only when a blend with it is saved. */
  read: () => Promise<Map<string, Float32Array>>;
}

interface Attached {
  facts: AttachedAdapter;
  config: AdapterConfig;
  /** The CPU copy, for saving a blend without reading the GPU back. */
  weights: Map<string, Float32Array>;
}

export class AttachedAdapters {
  private attached = new Map<string, Attached>();

  /** Attach `entry` to `model` (refused with the reason when it does not fit); attaching one already attached changes nothing. */
  attach(model: CausalLM, entry: AdapterEntry, config: ModelConfig, modelName: string): void {
    if (this.attached.has(entry.id)) return;
    if (this.attached.size >= MAX_ATTACHED) badInput(`${MAX_ATTACHED} adapters are attached already: detach one before you attach “${entry.name}”.`);
    const weights = fittingWeights(entry, config, modelName);
    const cfg = entryConfig(entry);
    model.attach(entry.id, cfg, weights);
    const { lora, note } = adapterLoaded(entry, config, modelName, []);
    this.attached.set(entry.id, { facts: { adapterId: entry.id, name: entry.name, lora, note }, config: cfg, weights });
  }

  /** Detach an attached adapter from `model`; one that is not attached is refused by name. */
  detach(model: CausalLM, adapterId: string): void {
    if (!this.attached.has(adapterId)) badInput('That adapter is not attached (it may have gone with the model it was attached to).');
    model.detach(adapterId);
    this.attached.delete(adapterId);
  }

  list(): AttachedAdapter[] {
    return [...this.attached.values()].map((a) => a.facts);
  }

  /** Forget every attachment (the model and its device went, and the buffers with them). */
  clear(): void {
    this.attached.clear();
  }

  /** The model's terms for `blend` and what they run as, after checking every weight and adapter. Zero weights are left out. */
  resolve(blend: readonly BlendWeight[], held: HeldAdapter | null): { terms: BlendTerm[]; ran: RanAdapter[] } {
    const seen = new Set<string | null>();
    const ran: RanAdapter[] = [];
    for (const { adapterId, weight } of blend) {
      const name = adapterId === null ? held?.name : this.attached.get(adapterId)?.facts.name;
      if (name === undefined) {
        badInput(adapterId === null ? 'There is no adapter yet: train one or load one from the library first.' : 'That adapter is not attached: attach it again.');
      }
      if (typeof weight !== 'number' || !Number.isFinite(weight)) badInput(`The weight of “${name}” is ${String(weight)}: give a finite number such as 0.5, 1 or -1.`);
      if (seen.has(adapterId)) badInput(`“${name}” is in the blend twice: give each adapter once, with one weight.`);
      seen.add(adapterId);
      if (weight !== 0) ran.push({ adapterId, name: name!, weight });
    }
    return { terms: ran.map((t) => ({ id: t.adapterId, weight: t.weight })), ran };
  }

  /** Save `blend` as a new library entry named `name`: the cat blend, whose ΔW is exactly what the live blend adds. */
  async saveBlend(
    library: AdapterLibrary, blend: readonly BlendWeight[], name: string, held: HeldAdapter | null, config: ModelConfig, modelName: string,
  ): Promise<ResponseBody<'saveBlend'>> {
    const { ran } = this.resolve(blend, held);
    if (ran.length === 0) badInput('Every weight of the blend is 0: give at least one adapter a weight to save a blend.');
    const sources: BlendSource[] = [];
    for (const t of ran) {
      const a = t.adapterId === null ? null : this.attached.get(t.adapterId)!;
      sources.push({ config: a ? a.config : held!.config, weights: a ? a.weights : await held!.read(), weight: t.weight, name: `“${t.name}”` });
    }
    const result = blendAdapters(sources, { combination: 'cat' });
    const cfg = { ...result.config, baseModel: modelName };
    const { weights } = writeAdapter(cfg, result.weights, adapterExpectation(config));
    const entry = await library.save({ name, baseModel: modelName, config: cfg, weights, steps: 0, lossHistory: [] });
    return { type: 'adapterSaved', adapterId: entry.id, name: entry.name, steps: entry.steps };
  }
}

type GenerateRequest = Extract<EngineRequest, { type: 'generate' }>;

/** Try it's side of the session: the attached adapters and the cached generators, and generation through them. */
export class TryIt {
  readonly attached = new AttachedAdapters();
  readonly generators: GeneratorCache;

  constructor(maxGenerators: number) {
    this.generators = new GeneratorCache(maxGenerators);
  }

  /** Continue the request's prompt with the blend it names (or the held adapter at alphaScale, or the base model), streaming tokens. */
  async generate(model: CausalLM, tokenizer: LoraTokenizer | undefined, held: HeldAdapter | null, req: GenerateRequest, emit: (ev: EventBody<'generate'>) => void):
  Promise<ResponseBody<'generate'>> {
    const { config } = model;
    if (!tokenizer) badInput('This model has no tokenizer.json, so it cannot read a prompt.');
    checkGenerate(req, config);
    if (!req.blend && req.withAdapter && !held) badInput('There is no adapter yet: train one first (or generate with the base model).');
    const { terms, ran } = this.attached.resolve(req.blend ?? (req.withAdapter ? [{ adapterId: null, weight: req.alphaScale ?? 1 }] : []), held);
    const ids = tokenizer!.encode(req.prompt, { addSpecialTokens: true });
    if (ids.length === 0) badInput('Type a prompt first.');
    const maxLen = Math.min(config.maxPositions, Math.ceil((ids.length + req.maxTokens) / 16) * 16);
    const eos = config.eosTokenId ?? tokenizer!.eosId;
    const stopIds = eos === undefined ? [] : Array.isArray(eos) ? eos : [eos];
    const t0 = performance.now();
    const out: number[] = [];
    await this.generators.use(model, terms, maxLen, (gen) =>
      gen.generate(ids, { maxNewTokens: req.maxTokens, temperature: req.temperature, topK: req.topK, seed: req.seed ?? 0, stopIds }, (id) => {
        out.push(id);
        emit({ type: 'token', tokenId: id, text: tokenizer!.decode(out, { skipSpecialTokens: true }) });
      }));
    return { type: 'generated', text: tokenizer!.decode(out, { skipSpecialTokens: true }), tokens: out.length, seconds: (performance.now() - t0) / 1000, ran };
  }

  /** The next-token logits (V) after `prompt` with `blend` (see Session.nextTokenLogits). */
  nextLogits(model: CausalLM, tokenizer: LoraTokenizer | undefined, held: HeldAdapter | null, prompt: string, blend: readonly BlendWeight[]): Promise<Float32Array> {
    const { config } = model;
    if (!tokenizer) badInput('This model has no tokenizer.json, so it cannot read a prompt.');
    const { terms } = this.attached.resolve(blend, held);
    const ids = tokenizer!.encode(prompt, { addSpecialTokens: true });
    if (ids.length === 0 || ids.length > config.maxPositions) badInput(`The prompt must be 1 to ${config.maxPositions} tokens long.`);
    const maxLen = Math.min(config.maxPositions, Math.ceil(ids.length / 16) * 16);
    return this.generators.use(model, terms, maxLen, (gen) => gen.nextLogits(ids));
  }

  /** Attach library entry `entry` to `model`; the answer lists every attached adapter. */
  attach(model: CausalLM, entry: AdapterEntry, modelName: string): ResponseBody<'attachAdapter'> {
    this.attached.attach(model, entry, model.config, modelName);
    return { type: 'adaptersAttached', attached: this.attached.list() };
  }

  /** Detach one: the programs recorded with its buffers go first. */
  detach(model: CausalLM, adapterId: string): ResponseBody<'detachAdapter'> {
    if (this.generators.busy > 0) badInput('Text is being generated: wait for it to finish before you detach an adapter.');
    this.generators.clear(model.gpu);
    this.attached.detach(model, adapterId);
    return { type: 'adaptersAttached', attached: this.attached.list() };
  }

  /** The model and its device went: nothing attached and no program is left. */
  clear(): void {
    this.attached.clear();
    this.generators.clear(null);
  }
}

/** The checks of a generate request's numbers against the model's context, each refusal saying what to give. */
export function checkGenerate(req: GenerateRequest, config: ModelConfig): void {
  if (!Number.isSafeInteger(req.maxTokens) || req.maxTokens < 1 || req.maxTokens > config.maxPositions - 1) {
    badInput(`Max tokens must be a whole number from 1 to ${config.maxPositions - 1} (got ${req.maxTokens}).`);
  }
  if (!(Number.isFinite(req.temperature) && req.temperature >= 0)) badInput(`Temperature must be ≥ 0 (0: always the likeliest token; got ${req.temperature}).`);
  if (!Number.isSafeInteger(req.topK) || req.topK < 0) badInput(`Top-k must be a whole number ≥ 0 (0: no cut; got ${req.topK}).`);
  const alphaScale = req.alphaScale ?? 1;
  if (!(Number.isFinite(alphaScale) && alphaScale >= 0)) badInput(`The adapter scale must be a number ≥ 0 (got ${alphaScale}).`);
}
