//! Support, outside the layers: it calls nothing of the simulator.
//!
//! Which build of the driver the simulated kernel runs, chosen in one place for the tests, the
//! benchmarks and the emulator: the host build, the driver's Rust source compiled for this
//! machine and linked into this process, or the kernel image itself, the x64 `oxtun.sys` the
//! cross build makes, mapped by [`crate::image::loader`].
//!
//! The setting is the environment variable `OXTUN_SIM_DRIVER`: `host` (or unset), `image` for
//! the release image the cross build leaves in the target folder, or `image=PATH`. The kernel
//! image is not rebuilt for you: `cargo build -p oxtun --release --target x86_64-pc-windows-msvc`
//! first (scripts/test.sh does).

use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable that chooses the build.
pub const SETTING: &str = "OXTUN_SIM_DRIVER";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverBuild {
    /// The driver linked into this process.
    Host,
    /// The kernel image in this file.
    Image(PathBuf),
}

impl DriverBuild {
    /// The build `OXTUN_SIM_DRIVER` chooses; the host build when it is unset. A value that
    /// names no build stops the process: running the other build instead would pass for it.
    pub fn from_setting() -> DriverBuild {
        Self::setting().unwrap_or_else(|error| panic!("{error}"))
    }

    /// The build `OXTUN_SIM_DRIVER` chooses, or why its value names none.
    pub fn setting() -> Result<DriverBuild, String> {
        match std::env::var(SETTING) {
            Err(std::env::VarError::NotPresent) => Ok(DriverBuild::Host),
            Ok(value) => DriverBuild::parse(&value).map_err(|error| format!("{SETTING}: {error}")),
            Err(error) => Err(format!("{SETTING}: {error}")),
        }
    }

    /// `host`, `image` or `image=PATH`.
    pub fn parse(value: &str) -> Result<DriverBuild, String> {
        match value.split_once('=') {
            None if value == "host" => Ok(DriverBuild::Host),
            None if value == "image" => Ok(DriverBuild::Image(Self::release_image())),
            Some(("image", path)) if !path.is_empty() => Ok(DriverBuild::Image(path.into())),
            _ => Err(format!("{value:?} is not host, image or image=PATH")),
        }
    }

    /// The x64 release image in the target folder (`CARGO_TARGET_DIR` if set).
    pub fn release_image() -> PathBuf {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace.join("target"));
        target.join("x86_64-pc-windows-msvc/release/oxtun_driver.dll")
    }
}

impl fmt::Display for DriverBuild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverBuild::Host => write!(f, "the host build"),
            DriverBuild::Image(path) => write!(f, "the kernel image {}", path.display()),
        }
    }
}
