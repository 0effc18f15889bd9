// `node scripts/bundle-gpu.mjs`: pack the bench for a Linux x86-64 GPU machine that has no Node, npm or network
// (shared/GPU.md). Writes dist-gpu/ (gitignored):
//   cli.mjs                                  the CLI (with `bench`) and its WGSL, bundled by esbuild: one file
//   node.xz                                  this machine's node binary (process.execPath), xz-compressed
//   node_modules/webgpu/                     the webgpu package's index.js + package.json, and
//     dist/linux-x64/dawn.node.xz            Dawn, so `import('webgpu')` resolves beside cli.mjs
//   debs/*.deb                               the Vulkan loader and GL dispatch libraries the NVIDIA ICD needs
//                                            (apt-get download; skipped with a warning when that fails)
//   run.sh                                   bench/run.sh: checks the machine, unpacks all this into a private
//                                            folder and runs every measurement (or `run.sh bench [flags]`)
//   requirements.env                         what run.sh checks before it starts: the CPU architecture and the
//                                            newest glibc symbol version the packed node and dawn.node use
//   torch_peft.py, models.json               the PyTorch + PEFT bench, run by run.sh at the same shapes
//   gpu_report.py                            combines the three benches' JSON lines into one report with ratios
// Then copy dist-gpu/ over (`tar -C dist-gpu -cf lora-bench.tar .`) and run `bash run.sh`.
import { build } from 'esbuild';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rawPlugin } from './esbuild-raw.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'dist-gpu');
const log = (s) => process.stderr.write(`bundle-gpu: ${s}\n`);

// The .debs shared/GPU.md lists: the Vulkan loader, GLVND and the X11 libraries libGLX_nvidia links to.
const DEBS = ['libvulkan1', 'libglvnd0', 'libglx0', 'libegl1', 'libgl1', 'libopengl0', 'libgles2', 'libx11-6', 'libxext6',
  'libxcb1', 'libxau6', 'libxdmcp6', 'libbsd0', 'libmd0'];

rmSync(out, { recursive: true, force: true });
const dawnDir = join(out, 'node_modules', 'webgpu', 'dist', 'linux-x64');
mkdirSync(dawnDir, { recursive: true });

await build({
  entryPoints: [join(root, 'src/cli/main.ts')],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outfile: join(out, 'cli.mjs'),
  external: ['webgpu'],
  plugins: [rawPlugin],
  logLevel: 'error',
});
log('cli.mjs bundled');

const webgpu = join(root, 'node_modules', 'webgpu');
for (const f of ['package.json', 'index.js']) copyFileSync(join(webgpu, f), join(out, 'node_modules', 'webgpu', f));
const xz = (src, dst) => writeFileSync(dst, execFileSync('xz', ['-T0', '-6', '-c', src], { maxBuffer: 1 << 30 }));
xz(join(webgpu, 'dist', 'linux-x64', 'dawn.node'), join(dawnDir, 'dawn.node.xz'));
log('dawn.node packed');
xz(process.execPath, join(out, 'node.xz'));
log(`node ${process.version} packed`);

mkdirSync(join(out, 'debs'));
const apt = spawnSync('apt-get', ['download', ...DEBS], { cwd: join(out, 'debs'), encoding: 'utf8' });
if (apt.status !== 0) {
  log(`warning: apt-get download failed (${(apt.stderr || apt.error?.message || '').trim().split('\n').pop()}); ` +
    'dist-gpu/debs/ is empty, so the GPU machine must already have the Vulkan loader and GLVND (run `apt-get update` here and retry)');
} else {
  log(`${readdirSync(join(out, 'debs')).length} .debs fetched`);
}

copyFileSync(join(root, 'bench', 'run.sh'), join(out, 'run.sh'));
chmodSync(join(out, 'run.sh'), 0o755);
for (const f of ['torch_peft.py', 'models.json', 'gpu_report.py']) copyFileSync(join(root, 'bench', f), join(out, f));

// The newest GLIBC_x.y symbol version either binary asks for: run.sh refuses an older glibc with that figure
// instead of letting the dynamic loader fail half-way.
const glibcOf = (file) => [...readFileSync(file).toString('latin1').matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
const [major, minor] = [...glibcOf(process.execPath), ...glibcOf(join(webgpu, 'dist', 'linux-x64', 'dawn.node'))]
  .reduce((a, b) => (b[0] > a[0] || (b[0] === a[0] && b[1] > a[1]) ? b : a), [2, 17]);
writeFileSync(join(out, 'requirements.env'), `ARCH=x86_64\nNEED_GLIBC=${major}.${minor}\n`);
log(`requirements.env: glibc ${major}.${minor} or newer`);

const size = (dir) => readdirSync(dir, { withFileTypes: true })
  .reduce((s, e) => s + (e.isDirectory() ? size(join(dir, e.name)) : statSync(join(dir, e.name)).size), 0);
log(`dist-gpu/ ready: ${(size(out) / 2 ** 20).toFixed(1)} MiB; run it with: bash dist-gpu/run.sh`);
