#!/usr/bin/env bash
# Build Transfer Studio's one-folder app with PyInstaller: dist/TransferStudio/ (TransferStudio.app on macOS).
#
# Usage: packaging/build.sh [--cpu-only | --full] [--keep-build]
#
#   --cpu-only    leave out the CUDA libraries torch needs only on a GPU, and hide GPUs at start-up
#                 (for a CUDA torch on machines without an NVIDIA GPU; about 1.2 GB smaller)
#   --full        bundle everything the installed torch needs, GPU support included
#   (neither)     auto: --full when this machine has a working NVIDIA GPU (nvidia-smi) or torch is a
#                 CPU-only build (nothing to leave out), else --cpu-only
#   --keep-build  reuse PyInstaller's work folder (build/pyinstaller) instead of starting clean
#
# Environment: PYTHON (default .venv/bin/python, else python3) runs PyInstaller; it must have the
# project and the `package` extra installed:  pip install -e '.[package]'
#
# The bundle holds whichever torch is installed. For the smallest bundle, for machines without an
# NVIDIA GPU, build from a CPU-only torch (no nvidia-* packages, a few hundred MB instead of GBs):
#     pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu
#     pip install -e '.[package]'
#     packaging/build.sh
#
# Prints the bundle's size and the build time; the last line is JSON (benchmarks/bundle.sh reads it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
NAME=TransferStudio
DIST="$ROOT/dist"
WORK="$ROOT/build/pyinstaller"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

flavour=auto
clean=--clean
for arg in "$@"; do
    case "$arg" in
        --cpu-only) flavour=cpu-only ;;
        --full) flavour=full ;;
        --keep-build) clean= ;;
        -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    esac
done

log() { printf '[build.sh] %s\n' "$*" >&2; }

if ! "$PYTHON" -c "import PyInstaller" 2>/dev/null; then
    log "PyInstaller is not installed for $PYTHON: run  $PYTHON -m pip install -e '.[package]'"
    exit 2
fi

torch_cuda="$("$PYTHON" -c 'import torch; print(torch.version.cuda or "")')"
if [[ "$flavour" == auto ]]; then
    if [[ -z "$torch_cuda" ]]; then
        flavour=full
        log "torch is a CPU-only build: bundling all of it"
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        flavour=full
        log "torch has CUDA $torch_cuda and this machine has an NVIDIA GPU: full bundle"
    else
        flavour=cpu-only
        log "torch has CUDA $torch_cuda but this machine has no usable NVIDIA GPU: CPU-only bundle" \
            "(use --full to keep GPU support)"
    fi
fi

"$PYTHON" packaging/make_icons.py --if-needed

log "PyInstaller $("$PYTHON" -m PyInstaller --version), flavour $flavour"
rm -rf "${DIST:?}/$NAME" "${DIST:?}/$NAME.app"
start=$(date +%s.%N)
TRANSFER_STUDIO_BUNDLE_FLAVOUR="$flavour" "$PYTHON" -m PyInstaller --noconfirm $clean \
    --log-level "${PYINSTALLER_LOG_LEVEL:-WARN}" \
    --distpath "$DIST" --workpath "$WORK" packaging/transfer_studio.spec
end=$(date +%s.%N)
build_s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

app="$DIST/$NAME"
if [[ "$(uname -s)" == Linux ]]; then
    # A launcher next to the executable: double-click it in a file manager (after "Allow launching"),
    # or run packaging/install_linux_desktop.sh to add Transfer Studio to the applications menu.
    sed -e "s|^Exec=.*|Exec=\"$app/$NAME\"|" -e "s|^TryExec=.*|TryExec=$app/$NAME|" \
        -e "s|^Icon=.*|Icon=$app/_internal/resources/icons/hicolor/256x256/apps/transfer-studio.png|" \
        resources/transfer-studio.desktop > "$app/$NAME.desktop"
    chmod +x "$app/$NAME.desktop"
fi

size_h=$(du -sh "$app" | cut -f1)
size_mb=$(du -sm "$app" | cut -f1)
log "built $app in ${build_s} s: $size_h ($flavour)"
printf '{"bundle": "%s", "flavour": "%s", "size": "%s", "size_mb": %s, "build_s": %s}\n' \
    "$app" "$flavour" "$size_h" "$size_mb" "$build_s"
