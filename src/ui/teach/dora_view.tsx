// "What DoRA adds", under the Teach playground: the same layer's W + ΔW split into a length and a direction
// per output row, drawn with the playground's heatmaps. The arithmetic is playground.ts `doraSplit`, on the
// CPU from W and the GPU's ΔW; this file draws.

import { Heatmap, niceCeil } from './heatmap';
import { doraSplit } from './playground';
import type { Matrix } from '../../worker/protocol';

export function DoraPart({ W, deltaW, stale }: { W: Matrix; deltaW: Matrix; stale: boolean }) {
  const { lengthW, lengthUpdated, weight } = doraSplit(W, deltaW);
  const top = niceCeil(Math.max(...lengthW.flat(), ...lengthUpdated.flat()));
  return (
    <div className="pg-dora" data-testid="teach-dora">
      <h4>What DoRA adds</h4>
      <p className="note">
        DoRA (PEFT's <span className="mono">use_dora</span>, the LoRA panel's switch) splits every output row of{' '}
        <span className="formula">W + ΔW</span> into a length and a direction:{' '}
        <span className="formula">W′ = m ⊙ (W + ΔW) / ‖W + ΔW‖</span>. B·A now only turns the rows; a trained magnitude{' '}
        <var>m</var>, one number per output row ({W.length} here), sets their lengths. It starts at ‖W‖, so W′ keeps W's
        lengths while taking the update's direction, and it trains beside A and B (the norm is held constant in the backward).
      </p>
      <div className="pg-picture">
        <Heatmap name="‖W‖ = m at start" values={lengthW} bars limit={top} note="row lengths" stale={stale} />
        <Heatmap name="‖W + ΔW‖" values={lengthUpdated} bars limit={top} note="LoRA's row lengths" stale={stale} />
        <Heatmap name="W′" values={weight} limit={1} note="m ⊙ direction" stale={stale} />
      </div>
    </div>
  );
}
