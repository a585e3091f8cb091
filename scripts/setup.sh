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
# Debian's LLVM tools (llvm-readobj for the main job) and clang (the SEH shim of the image).
missing=()
command -v llvm-readobj >/dev/null || missing+=(llvm)
command -v clang >/dev/null || compgen -c | grep -qE '^clang-[0-9]+$' || missing+=(clang)
if [ ${#missing[@]} -gt 0 ]; then
    apt_get() {
        if [ "$(id -u)" = 0 ]; then apt-get "$@"; else sudo apt-get "$@"; fi
    }
    apt_get update -qq
    DEBIAN_FRONTEND=noninteractive apt_get install -y -qq "${missing[@]}" >/dev/null
fi
