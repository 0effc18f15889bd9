// An Error with a machine-readable `code`, which crosses the worker boundary as plain data and lets a
// caller switch on what went wrong. GpuError (src/gpu/errors.ts) and EngineError (src/worker/client.ts)
// are this with their own codes. It does not say anything to the user itself: each subclass's messages do.

export class CodedError<Code extends string> extends Error {
  readonly code: Code;

  /** `name` is given, not taken from the class, so it survives minification. */
  constructor(name: string, code: Code, message: string) {
    super(message);
    this.name = name;
    this.code = code;
  }
}
