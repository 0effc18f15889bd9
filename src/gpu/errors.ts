// Errors raised by the GPU layer. Each says what happened and what the user can do about it.
// (The shared LoraStudioError lives in src/io/errors.ts; GPU errors carry the same `code` field so
// the worker protocol can forward any of them as one typed message.)

import { CodedError } from '../util/coded_error';

export type GpuErrorCode = 'webgpu-missing' | 'adapter-timeout' | 'no-adapter' | 'device-lost' | 'out-of-memory' | 'validation';

export class GpuError extends CodedError<GpuErrorCode> {
  constructor(code: GpuErrorCode, message: string) {
    super('GpuError', code, message);
  }
}

export const WEBGPU_MISSING_MESSAGE =
  'WebGPU is not available in this browser: use Chrome 113+ or Edge 113+ on a computer with a supported GPU ' +
  '(on Linux, start Chrome with --enable-unsafe-webgpu), and check chrome://gpu for "WebGPU: Hardware accelerated".';
