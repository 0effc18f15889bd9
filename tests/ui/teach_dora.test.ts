// The Teach playground's DoRA split (src/ui/teach/playground.ts doraSplit): W′ = m ⊙ (W + ΔW)/‖W + ΔW‖ with
// m = ‖W‖ keeps W's row lengths and the update's directions, and equals W when there is no update.

import { describe, expect, it } from 'vitest';
import { doraSplit, playgroundLayer } from '../../src/ui/teach/playground';

describe('doraSplit', () => {
  it("gives W′ the row lengths of W and the row directions of W + ΔW", () => {
    const { W, A, B } = playgroundLayer(3, 4);
    const deltaW = W.map((_, o) => W[0].map((_, i) => 2 * B[o].reduce((s, b, k) => s + b * A[k][i], 0)));
    const { lengthW, lengthUpdated, weight } = doraSplit(W, deltaW);
    W.forEach((row, o) => {
      expect(Math.hypot(...weight[o])).toBeCloseTo(Math.hypot(...row), 12);
      expect(lengthW[o][0]).toBeCloseTo(Math.hypot(...row), 12);
      const updated = row.map((w, i) => w + deltaW[o][i]);
      expect(lengthUpdated[o][0]).toBeCloseTo(Math.hypot(...updated), 12);
      const scale = lengthW[o][0] / lengthUpdated[o][0];
      weight[o].forEach((v, i) => expect(v).toBeCloseTo(scale * updated[i], 12));
    });
    const none = doraSplit(W, W.map((row) => row.map(() => 0))).weight;
    none.forEach((row, o) => row.forEach((v, i) => expect(v).toBeCloseTo(W[o][i], 12)));
  });
});
