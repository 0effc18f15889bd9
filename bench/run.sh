#!/usr/bin/env bash
# Runs LoRA Studio's bench from the folder scripts/bundle-gpu.mjs made (dist-gpu/), on a Linux x86-64 machine
# that has a GPU driver but no Node, npm or network (see shared/GPU.md). Usage: bash run.sh [bench flags]
#   bash run.sh --model all            # the three models, one JSON line each
#   bash run.sh --quick                # the tiny CI model (also works on a machine without a GPU: SwiftShader)
# Steps: unpack node and dawn.node (xz) into a work folder in $TMPDIR (or $LORA_BENCH_WORK); make the Vulkan
# loader and the GL dispatch libraries the NVIDIA Vulkan driver needs available (the .debs in debs/, only when
# some are missing); point Vulkan at the NVIDIA driver's ICD file; run the bundled CLI's `bench` command.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# Everything unpacked goes to a work folder outside this one, so dist-gpu/ stays as bundled (small enough to
# copy again, and usable read-only). It is keyed by the packed node and Dawn, so a new bundle unpacks afresh.
key="$(cat "$here/node.xz" "$here/node_modules/webgpu/dist/linux-x64/dawn.node.xz" | cksum | cut -d' ' -f1)"
work="${LORA_BENCH_WORK:-${TMPDIR:-/tmp}/lora-studio-bench-$key}"
mkdir -p "$work/node_modules/webgpu/dist/linux-x64"

# xz -d, or Python's lzma where xz is missing.
unpack() {
  [ -f "$2" ] && return 0
  if command -v xz >/dev/null 2>&1; then xz -dc "$1" >"$2.part"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2.part"
  fi
  mv "$2.part" "$2"
}
unpack "$here/node.xz" "$work/node"
chmod +x "$work/node"
unpack "$here/node_modules/webgpu/dist/linux-x64/dawn.node.xz" "$work/node_modules/webgpu/dist/linux-x64/dawn.node"
# The bundle imports 'webgpu', which Node resolves from node_modules/ beside the importing file.
cp "$here/cli.mjs" "$work/cli.mjs"
cp "$here/node_modules/webgpu/package.json" "$here/node_modules/webgpu/index.js" "$work/node_modules/webgpu/"

LIBS="libvulkan.so.1 libGLdispatch.so.0 libGLX.so.0 libEGL.so.1 libGL.so.1 libOpenGL.so.0 libGLESv2.so.2 libX11.so.6 libXext.so.6 libxcb.so.1 libXau.so.6 libXdmcp.so.6 libbsd.so.0 libmd.so.0"
have="$(ldconfig -p 2>/dev/null || true)" # read once: `ldconfig -p | grep -q` fails under pipefail when grep exits early
missing=""
for l in $LIBS; do grep -qF "$l" <<<"$have" || missing="$missing $l"; done
if [ -n "$missing" ]; then
  if ! ls "$here"/debs/*.deb >/dev/null 2>&1; then
    echo "run.sh: missing$missing and no debs/ to unpack: Dawn may find no Vulkan adapter" >&2
  elif [ "$(id -u)" = 0 ]; then
    echo "run.sh: installing the libraries in debs/ (missing:$missing)" >&2
    for f in "$here"/debs/*.deb; do dpkg -x "$f" /; done
    ldconfig
  else
    # Not root: unpack into the work folder and let the dynamic loader look there.
    echo "run.sh: unpacking debs/ into $work/sysroot (missing:$missing)" >&2
    for f in "$here"/debs/*.deb; do dpkg -x "$f" "$work/sysroot"; done
    export LD_LIBRARY_PATH="$work/sysroot/usr/lib/x86_64-linux-gnu:$work/sysroot/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
fi

icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; fi

exec "$work/node" "$work/cli.mjs" bench "$@"
