// Which model a run trained on, as a checkpoint records it (ModelIdentity in protocol.ts): made from a model
// source or from the studio's model choice, compared, and said in words. The one place for this, used by the
// engine session (to refuse resuming a run on another model) and by the UI (to load the run's model first).
// No engine imports here: the UI bundle takes this file as it is.

import { parseHubRef } from '../io/hub_ref';
import type { ModelIdentity } from './protocol';

/** The embedded model, served with the studio under `${baseUrl}${dir}`. */
export const DEFAULT_MODEL = { name: 'moby-llama', dir: 'models/moby-llama/', files: ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json'] };

/**
 * The identity of a model source (protocol.ts ModelSourceSpec) or of the UI's model choice: what stays the
 * same from one tab to the next. A token, the base URL and a folder's files are dropped; ids are trimmed, and
 * a pasted Hub URL becomes its id (and the revision it names, unless one is given).
 */
export function modelIdentity(source: ModelIdentity): ModelIdentity {
  if (source.kind === 'hub') {
    const ref = parseHubRef(source.id) ?? { id: source.id.trim() };
    const revision = source.revision?.trim() || ref.revision;
    return { kind: 'hub', id: ref.id, ...(revision ? { revision } : {}) };
  }
  if (source.kind === 'files') return { kind: 'files', label: source.label || 'folder' };
  return { kind: 'default' };
}

/** Whether two identities name the same model (a Hub revision left out is "main"); null is no model. */
export function sameModel(a: ModelIdentity | null, b: ModelIdentity | null): boolean {
  if (!a || !b || a.kind !== b.kind) return false;
  if (a.kind === 'hub' && b.kind === 'hub') return a.id === b.id && (a.revision || 'main') === (b.revision || 'main');
  if (a.kind === 'files' && b.kind === 'files') return a.label === b.label;
  return true;
}

/** A model identity in words, for messages: "moby-llama (built in)", "the Hub model org/x", "the folder “x”". */
export function describeModel(m: ModelIdentity): string {
  if (m.kind === 'hub') return `the Hub model ${m.id}${m.revision ? `@${m.revision}` : ''}`;
  if (m.kind === 'files') return `the folder “${m.label}”`;
  return `${DEFAULT_MODEL.name} (built in)`;
}
