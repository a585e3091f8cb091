# The Windows package flow, after windows-drivers-rs' rust-driver-makefile.toml: cargo builds the
# image through wdk-build (--features wdk: build.rs takes the link configuration from the WDK),
# then stampinf,
# infverif, inf2cat and signtool make target\package\<arch>\ with oxtun.sys, oxtun.inf, oxtun.cat
# and oxtun.pdb for amd64 and arm64, test-signed with a certificate of the current user's store.
# Run it through `cargo make package` from a WDK build environment (the EWDK's
# LaunchBuildEnv.cmd, or a Developer PowerShell with the WDK) with LLVM on PATH. Untested: the
# project's machines have no Windows (docs/windows.md).
$ErrorActionPreference = 'Stop'
Set-Location (Join-Path $PSScriptRoot '..')

function Invoke-Tool([string] $Tool, [string[]] $Arguments) {
    & $Tool @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$Tool $Arguments failed with exit code $LASTEXITCODE" }
}

$version = ((cargo pkgid -p oxtun) -split '[#@]')[-1]
$package = 'target\package'
# inf2cat's name for Windows 10 2004 (the driver's minimum, ExAllocatePool2) on each architecture.
$targets = @(
    @{ Triple = 'x86_64-pc-windows-msvc'; Arch = 'amd64'; Os = '10_VB_X64' },
    @{ Triple = 'aarch64-pc-windows-msvc'; Arch = 'arm64'; Os = '10_VB_ARM64' }
)

# A self-signed code-signing certificate in the current user's store, made once and reused while
# it is valid a day longer (windows-drivers-rs keeps WDRLocalTestCert the same way).
$subject = 'CN=oxtun test signing (not trusted)'
$certificate = Get-ChildItem Cert:\CurrentUser\My -CodeSigningCert |
    Where-Object { $_.Subject -eq $subject -and $_.NotAfter -gt (Get-Date).AddDays(1) } |
    Select-Object -First 1
if (-not $certificate) {
    $certificate = New-SelfSignedCertificate -Type CodeSigningCert -Subject $subject `
        -CertStoreLocation Cert:\CurrentUser\My -HashAlgorithm SHA256 -NotAfter (Get-Date).AddYears(1)
}
$sign = @('sign', '/v', '/fd', 'SHA256', '/s', 'My', '/sha1', $certificate.Thumbprint)

Remove-Item -Recurse -Force $package -ErrorAction SilentlyContinue
New-Item -ItemType Directory $package | Out-Null
Export-Certificate -Cert $certificate -FilePath "$package\oxtun-test.cer" | Out-Null
foreach ($target in $targets) {
    Invoke-Tool cargo @('build', '--release', '--locked', '--features', 'wdk', '--target', $target.Triple, '-p', 'oxtun')
    $built = "target\$($target.Triple)\release"
    $folder = "$package\$($target.Arch)"
    New-Item -ItemType Directory $folder | Out-Null
    Copy-Item "$built\oxtun_driver.dll" "$folder\oxtun.sys"
    Copy-Item "$built\oxtun_driver.pdb" "$folder\oxtun.pdb"
    Copy-Item wintun.inx "$folder\oxtun.inf"
    Invoke-Tool stampinf @('-f', "$folder\oxtun.inf", '-d', '*', '-a', $target.Arch, '-v', "$version.0")
    Invoke-Tool infverif @('/v', '/w', "$folder\oxtun.inf")
    Invoke-Tool signtool ($sign + "$folder\oxtun.sys")
    Invoke-Tool inf2cat @("/driver:$folder", "/os:$($target.Os)")
    Invoke-Tool signtool ($sign + "$folder\oxtun.cat")
}
Get-ChildItem -Recurse $package | Select-Object FullName
