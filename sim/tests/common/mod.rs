//! A `wintun-emu` child process, for the emulator's tests and benchmark; and a network namespace
//! of the calling process's own.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use oxtun_client::Adapter;

/// Every task offload the driver offers, turned on as an administrator does (`--keyword`).
#[allow(dead_code, reason = "only the offload tests and the benchmark use it")]
pub const OFFLOAD_KEYWORDS: [&str; 11] = [
    "*IPChecksumOffloadIPv4=3",
    "*TCPChecksumOffloadIPv4=3",
    "*TCPChecksumOffloadIPv6=3",
    "*UDPChecksumOffloadIPv4=3",
    "*UDPChecksumOffloadIPv6=3",
    "*LsoV2IPv4=1",
    "*LsoV2IPv6=1",
    "*UsoIPv4=1",
    "*UsoIPv6=1",
    "*RscIPv4=1",
    "*RscIPv6=1",
];

/// A running emulator, stopped with SIGTERM on drop.
pub struct Emulator {
    child: Option<Child>,
    /// Reads the emulator's stderr as it comes, so a long life's log never fills the pipe
    /// (which would stop the emulator in its next write); returns the log.
    log: Option<std::thread::JoinHandle<String>>,
    pub socket: PathBuf,
    _directory: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Emulator {
    /// Starts `wintun-emu` with `args` (besides `--socket`) and waits until it is ready.
    pub fn start(args: &[&str]) -> Emulator {
        // One directory per emulator, so that tests sharing a process (plain `cargo test`) do
        // not share a socket.
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let directory = std::env::temp_dir().join(format!(
            "oxtun-emu-test-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&directory).unwrap();
        let socket = directory.join("device.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_wintun-emu"))
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting wintun-emu");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            format!("ready {}", socket.display()),
            "the emulator did not start"
        );
        let mut stderr = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut log = String::new();
            let _ = stderr.read_to_string(&mut log);
            log
        });
        Emulator {
            child: Some(child),
            log: Some(log),
            socket,
            _directory: TempDir(directory),
        }
    }

    #[allow(dead_code, reason = "the deployed-client suite brings its own client")]
    pub fn adapter(&self) -> Adapter {
        Adapter::emulator(&self.socket)
    }

    #[allow(dead_code, reason = "the benchmark does not use it")]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    #[allow(dead_code, reason = "the benchmark does not use it")]
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// SIGTERM, then the exit status and everything it wrote on stderr.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        self.stop()
    }

    fn stop(&mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let log = self.log.take().unwrap().join().unwrap();
        (child.wait().unwrap(), log)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if self.child.is_some() {
            let (_, log) = self.stop();
            if std::thread::panicking() {
                eprintln!("wintun-emu's log:\n{log}");
            }
        }
    }
}

/// Moves this process into a network namespace of its own, with loopback up.
#[allow(dead_code, reason = "the offload tests make a namespace per thread")]
pub fn own_network_namespace() {
    // SAFETY: unshare affects only this process (and the children it starts later).
    let result = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        result,
        0,
        "network tests need root (CAP_SYS_ADMIN) to make a namespace: {}",
        std::io::Error::last_os_error()
    );
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .unwrap();
    assert!(status.success());
}
