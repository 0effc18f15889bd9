// The engine worker: owns the GPU devices and answers EngineRequests (protocol.ts) one response per id,
// posting a request's events (protocol.ts: EventFor) as they happen. It is the only place the studio's UI
// reaches src/gpu and src/autograd from. The work per request lives in handlers.ts (stateless) and
// session.ts (the model, data, adapter and run); this file is the devices and the message loop, nothing else.
// Requests run concurrently: a `pause` or `stop` is answered while a `train` is still going.

import { browserGpu, requestDevice } from '../gpu/device';
import { GpuError } from '../gpu/errors';
import { Gpu } from '../gpu/gpu';
import { LoraStudioError } from '../io/errors';
import { AdapterLibrary } from '../io/library';
import { loraLinear } from './handlers';
import type { EngineErrorCode, EngineEvent, EngineRequest, EngineRequestType, EngineResponse, EventBody, ResponseBody } from './protocol';
import { Session } from './session';

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

let adapterLibrary: AdapterLibrary | null = null;

/** The session's model gets a device of its own, opened per model (see session.ts). */
const session = new Session(
  async () => {
    const { device, info } = await requestDevice(browserGpu());
    return new Gpu(device, info);
  },
  () => (adapterLibrary ??= new AdapterLibrary()),
);

type Handlers = {
  [T in EngineRequestType]: (req: Extract<EngineRequest, { type: T }>, emit: (ev: EventBody<T>) => void) => Promise<ResponseBody<T>>;
};

const handlers: Handlers = {
  init: async () => ({ type: 'ready', gpu: (await openGpu()).info }),
  loraLinear: async (req) => loraLinear(await openGpu(), req),
  loadModel: (req, emit) => session.loadModel(req, emit),
  loadDataset: (req) => session.loadDataset(req),
  estimateMemory: (req) => session.estimateMemory(req),
  train: (req, emit) => session.train(req, emit),
  resumeRun: (req, emit) => session.resumeRun(req, emit),
  loadAdapter: (req) => session.loadAdapter(req),
  pause: async () => session.pause(),
  resume: async () => session.resume(),
  stop: async () => session.stop(),
  generate: (req, emit) => session.generate(req, emit),
  saveAdapter: (req) => session.saveAdapter(req),
  exportAdapter: (req) => session.exportAdapter(req),
  attachAdapter: (req) => session.attachAdapter(req),
  detachAdapter: (req) => session.detachAdapter(req),
  saveBlend: (req) => session.saveBlend(req),
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
    const handler = handlers[req.type] as (r: EngineRequest, emit: (ev: Omit<EngineEvent, 'id'>) => void) => Promise<Omit<EngineResponse, 'id'>>;
    if (!handler) throw new Error(`unknown request type "${(req as { type: unknown }).type}"`);
    const emit = (ev: Omit<EngineEvent, 'id'>) => scope.postMessage({ ...ev, id: req.id });
    res = { ...(await handler(req, emit)), id: req.id } as EngineResponse;
  } catch (err) {
    res = errorResponse(req.id, err);
  }
  scope.postMessage(res);
};
