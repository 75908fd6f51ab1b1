#!/usr/bin/env bash
# Add Transfer Studio to the Linux applications menu (per user, no root): the .desktop file and icons.
#
# Usage: packaging/install_linux_desktop.sh [BUNDLE_DIR]
#
#   BUNDLE_DIR   an app bundle folder (default dist/TransferStudio when it exists): the menu entry runs
#                BUNDLE_DIR/TransferStudio. Without a bundle the entry runs `transfer-studio-gui`, the
#                window-only command of a pip install: found on PATH or in .venv/bin (the entry gets
#                its full path), else left to PATH when the menu entry is opened.
#
# Installs into ${XDG_DATA_HOME:-~/.local/share}/applications and .../icons/hicolor; remove those two
# transfer-studio files/icons to uninstall.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
bundle="${1:-}"
if [[ -z "$bundle" && -x "$ROOT/dist/TransferStudio/TransferStudio" ]]; then
    bundle="$ROOT/dist/TransferStudio"
fi

mkdir -p "$DATA/applications"
for icon in "$ROOT"/resources/icons/hicolor/*/apps/transfer-studio.*; do
    size="$(basename "$(dirname "$(dirname "$icon")")")"
    install -D -m 644 "$icon" "$DATA/icons/hicolor/$size/apps/$(basename "$icon")"
done

desktop="$DATA/applications/transfer-studio.desktop"
if [[ -n "$bundle" ]]; then
    bundle="$(cd "$bundle" && pwd)"
    sed -e "s|^Exec=.*|Exec=\"$bundle/TransferStudio\"|" -e "s|^TryExec=.*|TryExec=$bundle/TransferStudio|" \
        "$ROOT/resources/transfer-studio.desktop" > "$desktop"
else
    command="$(command -v transfer-studio-gui || true)"
    if [[ -z "$command" && -x "$ROOT/.venv/bin/transfer-studio-gui" ]]; then
        command="$ROOT/.venv/bin/transfer-studio-gui"
    fi
    if [[ -n "$command" ]]; then
        sed -e "s|^Exec=.*|Exec=\"$command\"|" -e "s|^TryExec=.*|TryExec=$command|" \
            "$ROOT/resources/transfer-studio.desktop" > "$desktop"
    else
        echo "warning: transfer-studio-gui is not on PATH: the menu entry works once it is" \
            "(pip install the project, or pass an app bundle folder)" >&2
        install -m 644 "$ROOT/resources/transfer-studio.desktop" "$desktop"
    fi
fi
command -v update-desktop-database >/dev/null && update-desktop-database "$DATA/applications" || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$DATA/icons/hicolor" || true
echo "installed $desktop (runs $(sed -n 's/^Exec=//p' "$desktop"))"
