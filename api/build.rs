//! The API library's link: undecorated exports on 32-bit Windows, and on Windows the driver
//! package embedded as resources (see src/package.rs).

fn main() {
    let target = std::env::var("TARGET").unwrap();
    // __stdcall names are decorated on x86 (WintunCreateAdapter@12); wintun.dll exports them
    // undecorated, and callers look them up so.
    if target == "i686-pc-windows-gnu" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--kill-at");
    }
}
