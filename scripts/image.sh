#!/usr/bin/env bash
# The main job: cross-build the kernel image for x64 and ARM64, and say where each is and what it
# imports.
source "$(dirname "$0")/setup.sh" image

for target in "${WINDOWS_TARGETS[@]}"; do
    cargo build --release --target "$target" -p oxtun
done
for target in "${WINDOWS_TARGETS[@]}"; do
    image="target/$target/release/oxtun.sys"
    cp "target/$target/release/oxtun_driver.dll" "$image"
    echo
    echo "kernel image (${WINDOWS_ARCH[$target]}): $PWD/$image ($(stat -c %s "$image") bytes)"
    echo "debug symbols: $PWD/target/$target/release/oxtun_driver.pdb"
    llvm-readobj --file-headers "$image" |
        grep -E '^ *(Machine|Subsystem|AddressOfEntryPoint|ImageBase):|IMAGE_DLL_CHARACTERISTICS' |
        sed 's/^ */  /'
    echo "imports:"
    llvm-readobj --coff-imports "$image" | awk '
        /Name:/ { dll = $2 }
        /Symbol:/ { printf "  %-14s %s\n", dll, $2 }'
done
