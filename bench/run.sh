#!/usr/bin/env bash
# Every GPU measurement of LoRA Studio in one command, from the folder scripts/bundle-gpu.mjs made (dist-gpu/),
# on a Linux x86-64 machine with an NVIDIA driver and no Node, npm or network (shared/GPU.md):
#   bash run.sh                  the engine bench for all models (with --profile; SmolLM2 again on the plain
#                                reductions, --subgroups off), the dry-run figures, and
#                                torch_peft.py at the same shapes (PyTorch's default SDPA attention), combined by
#                                gpu_report.py into results/report.json with the ratios engine/PyTorch; < 4 minutes
#   bash run.sh bench [flags]    the engine bench alone, with bench's own flags (`bench --quick` checks the bundle,
#                                SwiftShader included)
#   bash run.sh --check          the prerequisite checks alone: unpacks nothing, runs nothing
# Every prerequisite is checked before anything is unpacked or run, and a missing one stops the script with one
# line that says what to install or do: the bundle's files, Linux x86-64, the glibc the bundled node and Dawn
# need (requirements.env), xz or python3 (to unpack), python3 with torch + transformers + peft and a CUDA device
# (the PyTorch bench), coreutils' timeout, the NVIDIA Vulkan driver file, and, where the Vulkan loader or GL
# dispatch libraries are missing, dpkg-deb or python3 to unpack debs/.
# Nothing is written outside the work folder ($LORA_BENCH_WORK, default $TMPDIR/lora-studio-bench-<key>) and the
# results folder ($LORA_BENCH_OUT, default ./results): the .debs are unpacked into the work folder and reach only
# the node process, through LD_LIBRARY_PATH; no file of the machine is changed and ldconfig is only read.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

die() { echo "run.sh: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
# version_ge A B: A ≥ B, as dotted numbers
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -t. -k1,1n -k2,2n -k3,3n | head -n1)" = "$2" ]; }

mode=all
case "${1:-}" in
  "") ;;
  --check) mode=check; shift ;;
  bench) mode=bench; shift ;;
  *) die "unknown argument '$1'; use: bash run.sh | bash run.sh bench [bench flags] | bash run.sh --check" ;;
esac

# ---- prerequisites ------------------------------------------------------------------------------------------

for f in node.xz node_modules/webgpu/dist/linux-x64/dawn.node.xz node_modules/webgpu/index.js \
         node_modules/webgpu/package.json cli.mjs requirements.env gpu_report.py torch_peft.py models.json; do
  [ -f "$here/$f" ] || die "$f is missing: this folder is not a complete bundle; make one with 'node scripts/bundle-gpu.mjs' and copy all of dist-gpu/"
done
NEED_GLIBC="" ARCH=""
# shellcheck source=/dev/null
. "$here/requirements.env"
[ "$(uname -s)" = Linux ] && [ "$(uname -m)" = "$ARCH" ] || die "this bundle runs on Linux $ARCH, not $(uname -s) $(uname -m)"
glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc //p')" || true
[ -n "$glibc" ] || die "no GNU C library found (getconf GNU_LIBC_VERSION): the bundled node and Dawn need glibc $NEED_GLIBC or newer"
version_ge "$glibc" "$NEED_GLIBC" || die "glibc $glibc is older than $NEED_GLIBC, which the bundled node and Dawn need: use a newer distribution (Debian 12, Ubuntu 22.04 or later)"
have xz || have python3 || die "neither xz nor python3 is installed: one is needed to unpack node and Dawn (apt-get install xz-utils)"

if [ "$mode" != bench ]; then
  have python3 || die "python3 is not installed: the PyTorch bench and the report need it (or run only the engine: bash run.sh bench --model all)"
  have timeout || die "timeout (coreutils) is not installed: it keeps every phase inside the 4-minute budget"
  mods="$(python3 -c 'import importlib.util as u; print(" ".join(m for m in ("torch", "transformers", "peft") if u.find_spec(m) is None))')"
  [ -z "$mods" ] || die "python3 lacks $mods: pip install torch transformers peft (or run only the engine: bash run.sh bench --model all)"
  python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' ||
    die "PyTorch sees no CUDA device (torch.cuda.is_available() is False): install the CUDA build of torch, or check the driver with nvidia-smi"
fi

# The NVIDIA Vulkan driver file: where the environment says, else where drivers put it.
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
             /etc/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.x86_64.json; do
    if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; break; fi
  done
fi
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  [ "$mode" = bench ] || die "no NVIDIA Vulkan driver file (nvidia_icd.json) found: install the driver's Vulkan part, or set VK_DRIVER_FILES to its path"
  echo "run.sh: no NVIDIA Vulkan driver file found; Dawn will use whatever Vulkan driver it finds" >&2
fi

# The Vulkan loader and GL dispatch libraries the NVIDIA driver needs: the machine's own where it has them.
LIBS="libvulkan.so.1 libGLdispatch.so.0 libGLX.so.0 libEGL.so.1 libGL.so.1 libOpenGL.so.0 libGLESv2.so.2 libX11.so.6 libXext.so.6 libxcb.so.1 libXau.so.6 libXdmcp.so.6 libbsd.so.0 libmd.so.0"
ldconfig_bin=""
for p in /sbin/ldconfig /usr/sbin/ldconfig; do [ -x "$p" ] && { ldconfig_bin="$p"; break; }; done
known="$([ -n "$ldconfig_bin" ] && "$ldconfig_bin" -p 2>/dev/null || true)" # read once: `| grep -q` fails under pipefail
missing=""
for l in $LIBS; do grep -qF "$l" <<<"$known" || missing="$missing $l"; done
debs=""
if [ -n "$missing" ]; then
  ls "$here"/debs/*.deb >/dev/null 2>&1 ||
    die "missing$missing and no debs/ to unpack: make the bundle where 'apt-get download' works (run apt-get update there first)"
  if have dpkg-deb; then debs=dpkg-deb; elif have python3; then debs=python3
  else die "missing$missing: unpacking debs/ needs dpkg-deb or python3, and neither is installed"; fi
fi

if [ "$mode" = check ]; then
  echo "run.sh: prerequisites met (glibc $glibc ≥ $NEED_GLIBC; driver file ${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-none}}; libraries missing:${missing:- none}${debs:+, unpacked with $debs})"
  exit 0
fi

# ---- unpacking, into a private work folder ---------------------------------------------------------------

# Keyed by the packed node and Dawn, so a new bundle unpacks afresh and dist-gpu/ stays as bundled.
key="$(cat "$here/node.xz" "$here/node_modules/webgpu/dist/linux-x64/dawn.node.xz" | cksum | cut -d' ' -f1)"
work="${LORA_BENCH_WORK:-${TMPDIR:-/tmp}/lora-studio-bench-$key}"
mkdir -p "$work/node_modules/webgpu/dist/linux-x64"

unxz() { # xz -d, or Python's lzma where xz is missing
  [ -f "$2" ] && return 0
  if have xz; then xz -dc "$1" >"$2.part"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2.part"
  fi
  mv "$2.part" "$2"
}
unxz "$here/node.xz" "$work/node"
chmod +x "$work/node"
unxz "$here/node_modules/webgpu/dist/linux-x64/dawn.node.xz" "$work/node_modules/webgpu/dist/linux-x64/dawn.node"
# The bundle imports 'webgpu', which Node resolves from node_modules/ beside the importing file.
cp "$here/cli.mjs" "$work/cli.mjs"
cp "$here/node_modules/webgpu/package.json" "$here/node_modules/webgpu/index.js" "$work/node_modules/webgpu/"

node_cmd=("$work/node" "$work/cli.mjs")
if [ -n "$missing" ]; then
  sysroot="$work/sysroot"
  echo "run.sh: unpacking debs/ into $sysroot (missing:$missing)" >&2
  for f in "$here"/debs/*.deb; do
    if [ "$debs" = dpkg-deb ]; then dpkg-deb -x "$f" "$sysroot"
    else # a .deb is an ar archive holding data.tar.*; tarfile reads xz and gzip
      python3 - "$f" "$sysroot" <<'PY'
import io, sys, tarfile
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"!<arch>\n", f"{sys.argv[1]} is not a .deb"
i = 8
while i < len(data):
    name, size = data[i:i + 16].decode().strip().rstrip("/"), int(data[i + 48:i + 58])
    if name.startswith("data.tar"):
        tarfile.open(fileobj=io.BytesIO(data[i + 60:i + 60 + size])).extractall(sys.argv[2])
        break
    i += 60 + size + (size & 1)
else:
    sys.exit(f"{sys.argv[1]}: no data.tar member (or one compressed with zstd: install dpkg)")
PY
    fi
  done
  lib="$sysroot/usr/lib/x86_64-linux-gnu:$sysroot/lib/x86_64-linux-gnu"
  node_cmd=(env "LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "${node_cmd[@]}")
fi

if [ "$mode" = bench ]; then exec "${node_cmd[@]}" bench "$@"; fi

# ---- every measurement, each phase under its own time limit (the sum stays under 4 minutes) ------------------

out="${LORA_BENCH_OUT:-$here/results}"
mkdir -p "$out"
failed=""
phase() { # phase NAME SECONDS command...: stdout (JSON lines) to NAME.jsonl, stderr to NAME.log
  local name="$1" limit="$2" t0 rc=0
  shift 2
  t0="$(date +%s)"
  echo "run.sh: $name (at most ${limit} s)" >&2
  timeout -k 5 "$limit" "$@" >"$out/$name.jsonl" 2>"$out/$name.log" || rc=$?
  echo "\"$name\": {\"exit\": $rc, \"seconds\": $(( $(date +%s) - t0 ))}," >>"$out/phases.part"
  if [ "$rc" != 0 ]; then
    failed="$failed $name"
    echo "run.sh: $name $([ "$rc" = 124 ] && echo "ran past ${limit} s" || echo "failed (exit $rc)"); see $out/$name.log" >&2
  fi
}
rm -f "$out/phases.part"
gpu_name="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n1 || true)"
phase engine 95 "${node_cmd[@]}" bench --model all --profile
# The same step on the plain reductions, profiled, to see what the subgroup kernels buy on this GPU.
phase engine_plain 20 "${node_cmd[@]}" bench --model smollm2-135m --subgroups off --profile --steps 5 --matmul-size 1024
phase dry_run 15 "${node_cmd[@]}" bench --dry-run --model all
phase torch 85 python3 "$here/torch_peft.py" --model all --attn sdpa
{
  echo "{\"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\", \"gpu\": \"${gpu_name//\"/}\", \"glibc\": \"$glibc\","
  echo "\"vulkan_driver_file\": \"${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-}}\", \"phases\": {"
  sed '$ s/,$//' "$out/phases.part"
  echo "}}"
} >"$out/meta.json"
rm -f "$out/phases.part"
python3 "$here/gpu_report.py" --engine "$out/engine.jsonl" --engine-plain "$out/engine_plain.jsonl" \
  --dry-run "$out/dry_run.jsonl" --torch "$out/torch.jsonl" \
  --meta "$out/meta.json" --out "$out/report.json"
echo "run.sh: report in $out/report.json" >&2
[ -z "$failed" ] || die "phases that did not finish:$failed (their logs are in $out/); the report lists what is missing"
