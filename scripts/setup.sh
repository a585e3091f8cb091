# Sourced by the other scripts: installs what a fresh Linux machine lacks, and nothing it has.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WINDOWS_TARGET=x86_64-pc-windows-msvc
export OXTUN_IMAGE="$PWD/target/$WINDOWS_TARGET/release/oxtun.dll"

if ! rustup target list --installed | grep -qx "$WINDOWS_TARGET"; then
    rustup target add "$WINDOWS_TARGET"
fi
for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$component"; then
        rustup component add "$component"
    fi
done
if ! command -v cargo-nextest >/dev/null; then
    cargo install --locked cargo-nextest
fi
if ! command -v llvm-readobj >/dev/null; then
    apt_install() {
        if [ "$(id -u)" = 0 ]; then apt-get "$@"; else sudo apt-get "$@"; fi
    }
    apt_install update -qq
    apt_install install -y -qq llvm >/dev/null
fi
