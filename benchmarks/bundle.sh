#!/usr/bin/env bash
# Measure the app bundle: a clean build (packaging/build.sh), its size, and its self-test under Xvfb.
#
# Usage: benchmarks/bundle.sh [--no-build] [--no-append] [build.sh options: --cpu-only | --full]
#
#   --no-build    measure the bundle already in dist/TransferStudio (build time reported as "-")
#   --no-append   print the results only; by default a row is added to the "App bundle" table in
#                 BENCHMARKS.md (the section is created the first time)
#
# The self-test is `xvfb-run -a dist/TransferStudio/TransferStudio --self-test` (Qt's offscreen
# platform when xvfb-run is missing): it opens the window, trains 1 epoch of efficientnet_lite0
# feature extraction on a synthetic 2-class dataset, classifies one image and exits 0.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
APP="$ROOT/dist/TransferStudio"
build=1
append=1
build_args=()
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        --no-append) append=0 ;;
        *) build_args+=("$arg") ;;
    esac
done

if [[ $build == 1 ]]; then
    build_json="$(PYTHON="$PYTHON" packaging/build.sh "${build_args[@]}" | tail -n 1)"
else
    [[ -x "$APP/TransferStudio" ]] || { echo "no bundle in $APP: run packaging/build.sh" >&2; exit 2; }
    build_json="{\"bundle\": \"$APP\", \"size\": \"$(du -sh "$APP" | cut -f1)\", \"size_mb\": $(du -sm "$APP" | cut -f1), \"build_s\": null}"
fi
echo "build: $build_json"

if command -v xvfb-run >/dev/null 2>&1; then
    runner=(env -u QT_QPA_PLATFORM xvfb-run -a)
    display=Xvfb
else
    runner=(env QT_QPA_PLATFORM=offscreen)
    display=offscreen
fi
log="$(mktemp)"
start=$(date +%s.%N)
set +e
selftest_json="$("${runner[@]}" "$APP/TransferStudio" --self-test 2>"$log" | tail -n 1)"
rc=$?
set -e
end=$(date +%s.%N)
selftest_s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
echo "self-test ($display): exit $rc in ${selftest_s} s: $selftest_json"
if [[ $rc != 0 ]]; then
    echo "self-test output:" >&2
    tail -n 40 "$log" >&2
fi
rm -f "$log"

BUILD_JSON="$build_json" SELFTEST_JSON="$selftest_json" SELFTEST_RC="$rc" SELFTEST_S="$selftest_s" \
DISPLAY_KIND="$display" APPEND="$append" "$PYTHON" - <<'EOF'
"""Format the measurements as a BENCHMARKS.md table row (and add it under "App bundle")."""

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

HEADER = "## App bundle (`benchmarks/bundle.sh`)"
INTRO = """
`benchmarks/bundle.sh` builds the one-folder app from a clean state with `packaging/build.sh`
(PyInstaller), measures it with `du -sh dist/TransferStudio`, and runs the bundle's self-test under
Xvfb: `xvfb-run -a dist/TransferStudio/TransferStudio --self-test` opens the window, trains 1 epoch of
efficientnet_lite0 feature extraction on a synthetic 2-class dataset (32 images), classifies one image
and exits 0. Self-test seconds are wall-clock for the whole process, start-up included. The flavour
is `cpu-only` when the CUDA libraries that torch loads only on a GPU were left out (see README).

| date | flavour | torch | bundle size | build s | self-test s | self-test | machine |
| --- | --- | --- | ---: | ---: | ---: | --- | --- |
"""


def machine() -> str:
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        gpus = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        gpus = ""
    gpu = gpus.splitlines()[0].split("(")[0].split(":", 1)[-1].strip() if gpus else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}"


build = json.loads(os.environ["BUILD_JSON"])
try:
    test = json.loads(os.environ["SELFTEST_JSON"] or "{}")
except ValueError:
    test = {}
rc = int(os.environ["SELFTEST_RC"])
info = test.get("bundle") or {}
result = f"exit {rc}" + (f", {test['device']}, predicted {test['predicted']}" if rc == 0 and "device" in test else "")
row = (
    f"| {datetime.date.today().isoformat()} | {info.get('flavour', build.get('flavour', '?'))} "
    f"| {info.get('torch', '?')} | {build['size']} ({build['size_mb']} MB) "
    f"| {build['build_s'] if build['build_s'] is not None else '-'} | {os.environ['SELFTEST_S']} "
    f"| {result} ({os.environ['DISPLAY_KIND']}) | {machine()} |"
)
print(row)
if os.environ["APPEND"] == "1":
    path = Path("BENCHMARKS.md")
    lines = path.read_text(encoding="utf-8").splitlines()
    if HEADER not in lines:
        lines += ["", HEADER, "", *INTRO.strip("\n").split("\n")]
    start = lines.index(HEADER)
    i = next(k for k in range(start, len(lines)) if lines[k].startswith("| ---")) + 1
    while i < len(lines) and lines[i].startswith("|"):
        i += 1
    lines.insert(i, row)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"added to {path}")
EOF
exit "$rc"
