// Which dtype a loaded model holds its frozen base in (src/model/causal_lm.ts BaseDtype): the one loadModel
// asks for, checked before anything is read, or else the checkpoint's own, so a bf16 checkpoint stays 2 bytes
// a weight unless asked otherwise. Not the conversion itself, which is the engine's (createModel).

import { badInput } from '../io/errors';
import { BASE_DTYPES, type BaseDtype } from '../model/causal_lm';

/** `asked` if it names a base dtype, undefined if absent; anything else is refused, naming the choices. */
export function askedBaseDtype(asked: unknown): BaseDtype | undefined {
  if (asked === undefined) return undefined;
  if (!(BASE_DTYPES as readonly unknown[]).includes(asked)) badInput(`Unknown base dtype ${JSON.stringify(asked)}; choose ${BASE_DTYPES.join(', ')}, or leave it to the checkpoint's own.`);
  return asked as BaseDtype;
}

/**
 * The base dtype of a checkpoint whose tensors are stored as `stored` (model_files.ts: the safetensors
 * dtypes, sorted, comma-separated): BF16 → bf16, F16 → f16; F32, a mix, or anything else → f32, which
 * every dtype converts to without loss.
 */
export function storedBaseDtype(stored: string): BaseDtype {
  if (stored === 'BF16') return 'bf16';
  if (stored === 'F16') return 'f16';
  return 'f32';
}
