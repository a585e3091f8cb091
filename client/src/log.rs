//! Where the library reports what it does: each step of creating an adapter and installing the
//! driver, and each failure with its system error. One process-wide logger, as wintun.dll's
//! `WintunSetLogger` sets; it may be called from any thread at once.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// A message's level, with Wintun's numbering (WINTUN_LOGGER_LEVEL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Level {
    Info = 0,
    Warn = 1,
    Error = 2,
}

/// A logger: level, timestamp (100 ns units since 1601-01-01 UTC, a Windows FILETIME) and text.
pub type Logger = Arc<dyn Fn(Level, u64, &str) + Send + Sync>;

static LOGGER: RwLock<Option<Logger>> = RwLock::new(None);

/// Sets the logger, or with `None` stops logging.
pub fn set_logger(logger: Option<Logger>) {
    *LOGGER
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = logger;
}

/// 100 ns intervals from 1601-01-01 to 1970-01-01.
const FILETIME_UNIX_EPOCH: u64 = 116_444_736_000_000_000;

/// Now, as a FILETIME.
pub fn timestamp() -> u64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    FILETIME_UNIX_EPOCH + (since_unix.as_nanos() / 100) as u64
}

/// Reports `message` at `level` to the logger, if one is set.
pub fn log(level: Level, message: &str) {
    relay(level, timestamp(), message);
}

/// Reports a message made elsewhere (by the native helper of a 32-bit process) with its own
/// timestamp.
pub fn relay(level: Level, timestamp: u64, message: &str) {
    // Cloned out of the lock: a logger that sets the logger does not deadlock.
    let logger = LOGGER
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    if let Some(logger) = logger {
        logger(level, timestamp, message);
    }
}

pub fn info(message: &str) {
    log(Level::Info, message);
}

pub fn warn(message: &str) {
    log(Level::Warn, message);
}

pub fn error(message: &str) {
    log(Level::Error, message);
}
