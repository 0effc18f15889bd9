// Which dtype a loaded model holds its frozen base in (src/model/causal_lm.ts BaseDtype): the one loadModel
// asks for, checked before anything is read; absent, the checkpoint's own (src/model/streamed_model.ts
// storedBaseDtype), so a bf16 checkpoint stays 2 bytes a weight unless asked otherwise. Not the conversion
// itself, which is the engine's (createModel).

import { badInput } from '../io/errors';
import { BASE_DTYPES, type BaseDtype } from '../model/causal_lm';

/** `asked` if it names a base dtype, undefined if absent; anything else is refused, naming the choices. */
export function askedBaseDtype(asked: unknown): BaseDtype | undefined {
  if (asked === undefined) return undefined;
  if (!(BASE_DTYPES as readonly unknown[]).includes(asked)) badInput(`Unknown base dtype ${JSON.stringify(asked)}; choose ${BASE_DTYPES.join(', ')}, or leave it to the checkpoint's own.`);
  return asked as BaseDtype;
}
