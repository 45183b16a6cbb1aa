#!/usr/bin/env bash
# Prepare a Linux host for nfcpay's NFC readers (nfcpy drives them from user space):
#   1. a udev rule giving the console user / plugdev group access to every supported reader,
#   2. a modprobe blacklist for the kernel NFC drivers that claim them (pn533_usb, pn533, port100),
#   3. unloading those drivers now if they are loaded.
# Idempotent: files already in place are left alone. It prints the plan first, then asks.
#
#   sudo scripts/setup-linux.sh            # show the plan, confirm, apply
#   scripts/setup-linux.sh --dry-run       # only show the plan
#   sudo scripts/setup-linux.sh --yes      # apply without asking
#   scripts/setup-linux.sh --root DIR      # write below DIR instead of / (for tests)
#
# The USB ids mirror firmware_profiles/*.toml ([match] usb); tests check they stay in sync.
set -euo pipefail

READERS=(
    "072f:2200 ACS ACR122U"
    "054c:06c1 Sony RC-S380"
    "054c:06c3 Sony RC-S380"
    "054c:02e1 Sony RC-S330/360/370 (RC-S956)"
    "04e6:5591 SCM SCL3711 (PN533)"
    "04e6:5593 SCM SCL3712 (PN533)"
    "04cc:2533 NXP PN533 demo board"
    "054c:0193 NXP PN531 (Sony ids)"
    "04cc:0531 NXP PN531 / SCM SCL3710"
)
MODULES=(pn533_usb pn533 port100)

dry_run=0
assume_yes=0
root=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --yes|-y) assume_yes=1 ;;
        --root) root="${2:?--root needs a directory}"; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

rules_file="$root/etc/udev/rules.d/60-nfcpay.rules"
blacklist_file="$root/etc/modprobe.d/blacklist-nfcpay.conf"

rules_content() {
    echo "# nfcpay: user-space access to NFC readers driven by nfcpy (scripts/setup-linux.sh)"
    local entry id
    for entry in "${READERS[@]}"; do
        id="${entry%% *}"
        echo "# ${entry#* }"
        echo "SUBSYSTEM==\"usb\", ATTRS{idVendor}==\"${id%%:*}\", ATTRS{idProduct}==\"${id##*:}\", MODE=\"0660\", GROUP=\"plugdev\", TAG+=\"uaccess\""
    done
}

blacklist_content() {
    echo "# nfcpay: keep the kernel NFC drivers off the readers nfcpy drives (scripts/setup-linux.sh)"
    local module
    for module in "${MODULES[@]}"; do
        echo "blacklist $module"
    done
}

loaded_modules() {
    local module
    for module in "${MODULES[@]}"; do
        if [ -z "$root" ] && grep -q "^$module " /proc/modules 2>/dev/null; then
            echo "$module"
        fi
    done
}

actions=()
plan_file() {  # plan_file PATH CONTENT
    if [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; then
        echo "  ok       $1 is already in place"
    else
        echo "  write    $1:"
        printf '%s\n' "$2" | sed 's/^/             | /'
        actions+=("file:$1")
    fi
}

echo "nfcpay host set-up plan:"
rules="$(rules_content)"
blacklist="$(blacklist_content)"
plan_file "$rules_file" "$rules"
plan_file "$blacklist_file" "$blacklist"
mapfile -t loaded < <(loaded_modules)
if [ "${#loaded[@]}" -gt 0 ]; then
    echo "  unload   kernel modules now: modprobe -r ${loaded[*]}"
    actions+=("modules")
else
    echo "  ok       no NFC kernel module is loaded"
fi
if [ -z "$root" ] && command -v pgrep >/dev/null && pgrep -x pcscd >/dev/null; then
    echo "  note     pcscd is running and grabs the ACR122U; stop it while nfcpay uses the reader:"
    echo "             sudo systemctl stop pcscd.socket pcscd.service"
fi

if [ "${#actions[@]}" -eq 0 ]; then
    echo "Nothing to do."
    exit 0
fi
if [ "$dry_run" -eq 1 ]; then
    echo "Dry run: nothing changed."
    exit 0
fi
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    echo "Run as root to apply: sudo $0" >&2
    exit 1
fi
if [ "$assume_yes" -eq 0 ]; then
    read -r -p "Apply these changes? [y/N] " answer
    case "$answer" in y|Y|yes) ;; *) echo "Nothing changed."; exit 1 ;; esac
fi

for action in "${actions[@]}"; do
    case "$action" in
        file:"$rules_file")
            mkdir -p "$(dirname "$rules_file")"
            printf '%s\n' "$rules" > "$rules_file"
            echo "wrote $rules_file"
            if [ -z "$root" ] && command -v udevadm >/dev/null; then
                udevadm control --reload-rules && udevadm trigger --subsystem-match=usb
                echo "reloaded udev rules (re-plug the reader if it was connected)"
            fi ;;
        file:"$blacklist_file")
            mkdir -p "$(dirname "$blacklist_file")"
            printf '%s\n' "$blacklist" > "$blacklist_file"
            echo "wrote $blacklist_file" ;;
        modules)
            modprobe -r "${loaded[@]}"
            echo "unloaded ${loaded[*]}" ;;
    esac
done
echo "Done. Check with: nfcpay doctor"
