#!/usr/bin/env bash
# The driver package, as the Windows flow of Makefile.toml makes it less the catalog (inf2cat
# needs Windows): target/package/<arch>/ holds the kernel image as oxtun.sys, Authenticode
# test-signed with a certificate made here, its symbols and the stamped INF, for amd64 and arm64;
# target/package/oxtun-test.cer is the certificate a test machine must trust. The private key
# stays in target/test-signing/ and is never packaged or committed. What is up to date is left
# as it is: an image is signed again only when it was built again.
# One packaging at a time (and one set-up): the image and INF tests run this script when they
# find the package older than an image, and several of them may at once.
mkdir -p "$(dirname "$0")/../target"
exec 9>"$(dirname "$0")/../target/.package.lock"
flock 9
source "$(dirname "$0")/setup.sh" package

package=target/package
signing=target/test-signing
version=$(cargo pkgid -p oxtun)
version=${version##*[#@]}
# stampinf's `-d *`: today, or the time SOURCE_DATE_EPOCH gives for a reproducible package.
date=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%m/%d/%Y)

# What stampinf does: the architecture into the decorated section names, and DriverVer in
# [Version] as the date and the four-part version.
stamp_inf() {
    sed -e 's/\$ARCH\$/'"$1"'/g' \
        -e '/^\[Version\]/I,/^\[/ s|^\(DriverVer\s*=\).*|\1 '"$date,$version.0"'|I' wintun.inx
}

# A self-signed code-signing certificate, made once and kept while it is valid a day longer.
if ! openssl x509 -in "$signing/oxtun-test.pem" -noout -checkend 86400 >/dev/null 2>&1; then
    mkdir -p "$signing"
    openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 365 \
        -subj "/CN=oxtun test signing (not trusted)" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -addext "keyUsage=critical,digitalSignature" \
        -addext "extendedKeyUsage=codeSigning" \
        -keyout "$signing/oxtun-test.key" -out "$signing/oxtun-test.pem" 2>/dev/null
fi

# Writes stdin to the file only when it differs, so an unchanged file keeps its time (the API
# library's build embeds these files and rebuilds when they change).
write_if_changed() {
    cat >"$1.new"
    if cmp -s "$1.new" "$1"; then rm "$1.new"; else mv "$1.new" "$1"; fi
}

mkdir -p "$package"
openssl x509 -in "$signing/oxtun-test.pem" -outform der | write_if_changed "$package/oxtun-test.cer"
for target in "${WINDOWS_TARGETS[@]}"; do
    arch=${WINDOWS_ARCH[$target]}
    image=target/$target/release/oxtun_driver.dll
    signed=$package/$arch/oxtun.sys
    cargo build --release --locked --target "$target" -p oxtun
    mkdir -p "$package/$arch"
    stamp_inf "$arch" | write_if_changed "$package/$arch/oxtun.inf"
    # Signed again only when the image or the certificate is newer than the signed image.
    if [ -f "$signed" ] && ! [ "$image" -nt "$signed" ] && ! [ "$signing/oxtun-test.pem" -nt "$signed" ]; then
        echo "$signed: up to date"
        continue
    fi
    cp "target/$target/release/oxtun_driver.pdb" "$package/$arch/oxtun.pdb"
    osslsigncode sign -certs "$signing/oxtun-test.pem" -key "$signing/oxtun-test.key" \
        -h sha256 -n "OxTun" -in "$image" -out "$signed.new" >/dev/null
    # Checks the signature against the certificate: the image's digest and the signer's chain.
    osslsigncode verify -CAfile "$signing/oxtun-test.pem" -in "$signed.new" \
        >"$signing/verify-$arch.log" 2>&1 ||
        { cat "$signing/verify-$arch.log"; exit 1; }
    mv "$signed.new" "$signed"
    echo "$signed: $(grep -E '^Signature verification' "$signing/verify-$arch.log")"
done
echo "package: $PWD/$package (no catalog: inf2cat needs Windows, see docs/windows.md)"
find "$package" -type f | sort | sed 's/^/  /'
