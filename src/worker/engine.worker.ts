// The engine worker: owns the GPU device and answers EngineRequests (protocol.ts) one response per id.
// It is the only place the studio's UI reaches src/gpu and src/autograd from. The work per request lives
// in handlers.ts; this file is the device and the message loop, nothing else.

import { browserGpu, requestDevice } from '../gpu/device';
import { GpuError } from '../gpu/errors';
import { Gpu } from '../gpu/gpu';
import { LoraStudioError } from '../io/errors';
import { loraLinear } from './handlers';
import type { EngineErrorCode, EngineRequest, EngineRequestType, EngineResponse, ResponseBody } from './protocol';

const scope = self as unknown as DedicatedWorkerGlobalScope;

let gpu: Promise<Gpu> | null = null;

/** The device, opened on first use. A failed open is forgotten so the next request tries again. */
function openGpu(): Promise<Gpu> {
  gpu ??= (async () => {
    const { device, info } = await requestDevice(browserGpu());
    return new Gpu(device, info);
  })();
  gpu.catch(() => { gpu = null; });
  return gpu;
}

type Handlers = { [T in EngineRequestType]: (req: Extract<EngineRequest, { type: T }>) => Promise<ResponseBody<T>> };

const handlers: Handlers = {
  init: async () => ({ type: 'ready', gpu: (await openGpu()).info }),
  loraLinear: async (req) => loraLinear(await openGpu(), req),
};

function errorResponse(id: number, err: unknown): EngineResponse {
  let code: EngineErrorCode = 'internal';
  if (err instanceof GpuError || err instanceof LoraStudioError) code = err.code;
  else if (err instanceof RangeError) code = 'bad-input';
  const message = err instanceof Error ? err.message : String(err);
  return { id, type: 'error', code, message: code === 'internal' ? `Internal engine error: ${message}. Please report it; nothing was saved or changed.` : message };
}

scope.onmessage = async (ev: MessageEvent<EngineRequest>) => {
  const req = ev.data;
  let res: EngineResponse;
  try {
    const handler = handlers[req.type] as (r: EngineRequest) => Promise<Omit<EngineResponse, 'id'>>;
    if (!handler) throw new Error(`unknown request type "${(req as { type: unknown }).type}"`);
    res = { ...(await handler(req)), id: req.id } as EngineResponse;
  } catch (err) {
    res = errorResponse(req.id, err);
  }
  scope.postMessage(res);
};
