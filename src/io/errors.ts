// The typed errors every LoRA Studio module throws for problems the user can act on: a malformed
// file, a shape that does not fit the model, a config we refuse, a feature we do not support.
// This file is not a logger or a UI: it only carries a machine-readable `code` (so the worker can
// forward it and the UI can pick an icon or a remedy) and a message written for the user, naming
// the file, what is wrong with it and what to do about it. Programming mistakes stay plain Errors.

export type ErrorCode =
  | 'bad-file' // a file is malformed, truncated or not what its name says
  | 'bad-shape' // tensor shapes or layer counts do not fit the model
  | 'bad-config' // a config file or setting has an invalid value
  | 'unsupported' // well-formed, but uses a feature LoRA Studio does not implement
  | 'bad-input' // an argument from the UI or CLI is out of range
  | 'storage' // IndexedDB / file system refused a read or write
  | 'webgpu'; // the device is missing, lost or lacks a limit we need

export class LoraStudioError extends Error {
  readonly code: ErrorCode;
  /** The file the problem is in, when there is one, so the UI can point at it. */
  readonly file?: string;

  constructor(code: ErrorCode, message: string, options: { file?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LoraStudioError';
    this.code = code;
    if (options.file !== undefined) this.file = options.file;
  }
}

// One subclass per common code, so call sites read as what went wrong and `instanceof` works for
// callers that prefer it to switching on `code`.

export class FormatError extends LoraStudioError {
  override name = 'FormatError';
  constructor(file: string, message: string, cause?: unknown) {
    super('bad-file', message, { file, cause });
  }
}

export class ShapeError extends LoraStudioError {
  override name = 'ShapeError';
  constructor(file: string | undefined, message: string) {
    super('bad-shape', message, { file });
  }
}

export class ConfigError extends LoraStudioError {
  override name = 'ConfigError';
  constructor(file: string | undefined, message: string, cause?: unknown) {
    super('bad-config', message, { file, cause });
  }
}

export class UnsupportedError extends LoraStudioError {
  override name = 'UnsupportedError';
  constructor(file: string | undefined, message: string) {
    super('unsupported', message, { file });
  }
}

/**
 * `fail(problem, cause?)` for a parser that finds many problems in one file: it throws `new Kind(file,
 * "where: problem", cause)`, `where` being the file or a place in it ("data.jsonl:12").
 */
export function throwerFor(Kind: new (file: string, message: string, cause?: unknown) => LoraStudioError, file: string, where = file) {
  return (problem: string, cause?: unknown): never => {
    throw new Kind(file, `${where}: ${problem}`, cause);
  };
}

/** Refuse a request as asked: a 'bad-input' LoraStudioError whose message says what to change. */
export function badInput(message: string): never {
  throw new LoraStudioError('bad-input', message);
}
