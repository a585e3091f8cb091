//! The emulator's data path, measured as deployed clients use it: packets/s, Gbit/s, loss, CPU
//! time and events per packet from a client through the driver and back to the client, for 64,
//! 512, 1400 and 9000-byte packets; beside it, a plain Linux TUN program doing the same.
//!
//! - reflect: client -> receive ring -> driver -> indicated, handed straight back -> driver ->
//!   send ring -> client. The driver alone.
//! - tun: the same, but the indicated packet goes up a TUN interface into the Linux stack, which
//!   forwards it back out of the interface into the driver. UDP/IPv4.
//! - plain TUN, the reference: a program that writes each packet to a TUN interface and reads it
//!   back after the same forwarding, one system call per packet each way.
//!
//! Each path runs three ways. `waits`: the receiver waits on the driver's event after every
//! empty read, as a wintun.dll application does (the plain program waits in poll); the sender
//! sends as fast as the ring takes packets. `polls`: the receiver never sleeps. `half rate`: the
//! sender paced at half the packets/s of `waits`, where nothing may be lost. Every run has an
//! emulator of its own, whose counts give the events per packet (the driver setting the
//! client's event, and taking the client's) and where packets were dropped.
//!
//! Then TCP, one stream each way at once (iperf3 --bidir), through the demo's two adapters and
//! router, with offloads (the router's sessions take the per-packet header, the adapters' keywords
//! turn every offload on) and without, against a veth pair, every MTU 1500, in namespaces made for
//! it; with the CPU time the router and the emulators spent per GB forwarded. Beside them, the
//! floor under any path through Linux's TUN devices: two of them offloading as the emulators' do,
//! and a thread each way moving packets from one to the other, no driver or ring. Last, a reflect run of its own measures
//! the kernel stack each driver callback uses; measuring costs, so its rates are not reported.
//! Needs root (it makes a network namespace of its own): `cargo bench -p oxtun-sim --bench
//! emulator [-- PATH|SIZE...]`, where words name the paths (reflect, tun, plain, tcp, stack) or
//! sizes to run, all of them when none does.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../../client/examples/router.rs"]
#[allow(
    dead_code,
    reason = "the router's main is the example's; the bench uses its forwarding"
)]
mod router;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Emulator, OFFLOAD_KEYWORDS, own_network_namespace};
use oxtun_client::{Adapter, Error, Features, Session};
use oxtun_sim::tun;

const SIZES: [usize; 4] = [64, 512, 1400, 9000];
const SENDING: Duration = Duration::from_millis(600);
/// Rounds of each run: the best is reported (the worst, for loss at half rate), since other
/// work on a 2-core machine takes a core now and then.
const ROUNDS: usize = 3;
/// How long nothing comes back before a run is over.
const QUIET: Duration = Duration::from_millis(200);
/// Ring capacity: wireguard-go's 8 MiB (tun/tun_windows.go, `StartSession(0x800000)`).
const CAPACITY: u32 = 8 << 20;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Waits,
    Polls,
    /// Waits, with the sender paced at this many packets/s.
    Paced(f64),
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Waits => "waits",
            Mode::Polls => "polls",
            Mode::Paced(_) => "half rate",
        }
    }
}

#[derive(Default)]
struct Run {
    sent: u64,
    received: u64,
    /// From the first send to the last packet back.
    elapsed: Duration,
    /// The client's (or the plain program's) CPU time, all threads.
    client_cpu: Duration,
    /// The emulator's CPU time, all threads.
    emulator_cpu: Duration,
    /// Times the receiver slept on its event or in poll.
    receiver_sleeps: u64,
    /// The emulator's count of events: the driver setting the client's, and taking the
    /// client's. None for the plain program.
    driver_events: Option<u64>,
    /// Where the emulator dropped packets, from its log.
    drops: String,
}

impl Run {
    fn rate(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64()
    }
}

fn report(path: &str, size: usize, mode: Mode, run: &Run) {
    let per_packet = |cpu: Duration| cpu.as_secs_f64() * 1e6 / run.received.max(1) as f64;
    let lost = run.sent - run.received.min(run.sent);
    let events = run.driver_events.map_or("-".to_owned(), |events| {
        format!("{:.3}", events as f64 / run.received.max(1) as f64)
    });
    println!(
        "{path:<9} {size:>5} {:<9} {:>9.0} {:>7.2} {:>7.2}% {:>7.2} {:>8.2} {:>7} {:>7.3}  {}",
        mode.name(),
        run.rate(),
        run.rate() * size as f64 * 8.0 / 1e9,
        lost as f64 * 100.0 / run.sent.max(1) as f64,
        per_packet(run.client_cpu),
        per_packet(run.emulator_cpu),
        events,
        run.receiver_sleeps as f64 / run.received.max(1) as f64,
        run.drops,
    );
}

/// A UDP/IPv4 packet of `size` bytes from `source` to `destination`, its header checksum set.
fn udp_packet(size: usize, source: [u8; 4], destination: [u8; 4]) -> Vec<u8> {
    let mut packet = vec![0u8; size];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&(size as u16).to_be_bytes());
    packet[8] = 64;
    packet[9] = 17;
    packet[12..16].copy_from_slice(&source);
    packet[16..20].copy_from_slice(&destination);
    let sum = packet[..20]
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum::<u32>();
    let folded = (sum & 0xFFFF) + (sum >> 16);
    let checksum = !((folded & 0xFFFF) + (folded >> 16)) as u16;
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet[20..22].copy_from_slice(&9u16.to_be_bytes());
    packet[22..24].copy_from_slice(&9u16.to_be_bytes());
    packet[24..26].copy_from_slice(&((size - 20) as u16).to_be_bytes());
    packet
}

/// This process's CPU time, all threads.
fn own_cpu() -> Duration {
    // SAFETY: getrusage into a local.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |value: libc::timeval| {
        Duration::from_secs(value.tv_sec as u64) + Duration::from_micros(value.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// A process's CPU time, all threads (utime and stime of /proc/PID/stat).
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// Waits up to `timeout` for `fd` to be readable.
fn wait_readable(fd: RawFd, timeout: Duration) {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polling one descriptor of ours.
    unsafe { libc::poll(&mut poll, 1, timeout.as_millis() as i32) };
}

/// Sends for [`SENDING`] with `send` (true when it went), paced as `mode` says, while
/// `receive` (true when a packet came back, false when none was waiting) counts what returns;
/// after an empty receive, a waiting receiver calls `sleep`.
fn measure(
    mode: Mode,
    send: impl Fn() -> bool + Sync,
    receive: impl Fn() -> bool,
    sleep: impl Fn(Duration),
) -> Run {
    thread::scope(|scope| {
        let (start, send) = (Instant::now(), &send);
        let sender = scope.spawn(move || {
            let mut sent = 0u64;
            while start.elapsed() < SENDING {
                if let Mode::Paced(rate) = mode {
                    let due = start + Duration::from_secs_f64(sent as f64 / rate);
                    if let Some(early) = due.checked_duration_since(Instant::now()) {
                        thread::sleep(early);
                    }
                }
                if send() {
                    sent += 1;
                } else {
                    // Full: a while for the reader to make room, not a core spent asking.
                    thread::sleep(Duration::from_micros(50));
                }
            }
            sent
        });
        let (mut received, mut last, mut sleeps) = (0, start, 0);
        loop {
            if receive() {
                received += 1;
                last = Instant::now();
            } else if sender.is_finished() && last.elapsed() > QUIET {
                break;
            } else if mode != Mode::Polls {
                sleep(Duration::from_millis(20));
                sleeps += 1;
            }
        }
        Run {
            sent: sender.join().unwrap(),
            received,
            elapsed: last.max(start + Duration::from_micros(1)) - start,
            receiver_sleeps: sleeps,
            ..Run::default()
        }
    })
}

/// One run through an emulator started with `arguments`, whose TUN interface (if it has one) is
/// `interface`: the stack routes the benchmark's packets back out of it.
fn through_emulator(arguments: &[&str], interface: Option<&str>, packet: &[u8], mode: Mode) -> Run {
    let emulator = Emulator::start(arguments);
    if let Some(interface) = interface {
        tun::ip(&["route", "add", "10.79.0.0/24", "dev", interface]).unwrap();
    }
    let session = Session::start(&emulator.adapter(), CAPACITY).unwrap();
    let queue_dropped = interface.map(tx_dropped);
    let backlog_dropped = softnet_dropped();
    let (client, emulated) = (own_cpu(), process_cpu(emulator.pid()));
    let mut run = measure(
        mode,
        || match session.send(packet) {
            Ok(()) => true,
            Err(Error::Full) => false,
            Err(error) => panic!("send: {error}"),
        },
        || match session.try_receive() {
            Ok(Some(received)) => {
                drop(received);
                true
            }
            Ok(None) => false,
            Err(error) => panic!("receive: {error}"),
        },
        |timeout| wait_readable(session.wait_handle(), timeout),
    );
    run.client_cpu = own_cpu() - client;
    run.emulator_cpu = process_cpu(emulator.pid()) - emulated;
    let queue_dropped = interface
        .zip(queue_dropped)
        .map(|(name, before)| tx_dropped(name) - before);
    let backlog_dropped = softnet_dropped() - backlog_dropped;
    drop(session);
    let (status, log) = emulator.terminate();
    assert!(status.success(), "wintun-emu: {status}\n{log}");
    let counts = log
        .lines()
        .find_map(|line| line.strip_prefix("wintun-emu: upper edge: "))
        .expect("the emulator's counts");
    let number_after = |label: &str| -> u64 {
        let rest = &counts[counts.find(label).expect(label) + label.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    run.driver_events =
        Some(number_after("send event set ") + number_after("receive event taken "));
    run.drops = format!(
        "send path refused {}",
        number_after("(refused by the driver ")
    );
    if let Some(queue_dropped) = queue_dropped {
        run.drops += &format!(
            ", TUN writes refused {}, stack's backlog dropped {backlog_dropped}, TUN queue \
             dropped {queue_dropped}",
            number_after("(dropped ")
        );
    }
    run
}

fn through_plain_tun(tun: &OwnedFd, packet: &[u8], mode: Mode) -> Run {
    let fd = tun.as_raw_fd();
    let mut buffer = vec![0u8; 65536];
    let buffer = std::cell::RefCell::new(&mut buffer);
    let before = own_cpu();
    let dropped_before = tx_dropped("plain0");
    let backlog_before = softnet_dropped();
    let mut run = measure(
        mode,
        // SAFETY: writing `packet` to our TUN descriptor.
        || unsafe { libc::write(fd, packet.as_ptr().cast(), packet.len()) } > 0,
        || {
            let mut buffer = buffer.borrow_mut();
            // SAFETY: reading into our buffer, at most its length, from our TUN descriptor.
            unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) > 0 }
        },
        |timeout| wait_readable(fd, timeout),
    );
    run.client_cpu = own_cpu() - before;
    run.drops = format!(
        "stack's backlog dropped {}, TUN queue dropped {}",
        softnet_dropped() - backlog_before,
        tx_dropped("plain0") - dropped_before
    );
    run
}

/// Packets the kernel dropped on their way out of `interface`: in its queueing discipline and
/// in the TUN device's own queue to the reader (TX "dropped" of `ip -s link`; /sys/class/net
/// shows the first namespace's devices, not this one's).
fn tx_dropped(interface: &str) -> u64 {
    let output = Command::new("ip")
        .args(["-s", "link", "show", "dev", interface])
        .output()
        .expect("ip (iproute2)");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("TX:"));
    lines
        .nth(1)
        .and_then(|figures| figures.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or_else(|| panic!("no TX figures for {interface}: {text}"))
}

/// Packets the kernel dropped for a full input backlog (netdev_max_backlog), every CPU: the
/// second column of /proc/net/softnet_stat.
fn softnet_dropped() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap()
        .lines()
        .filter_map(|line| u64::from_str_radix(line.split(' ').nth(1)?, 16).ok())
        .sum()
}

fn sysctl(name: &str, value: &str) {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::write(&path, value).unwrap_or_else(|error| panic!("{path}: {error}"));
}

/// The three runs of one path and size: waits, polls, and waits at half the rate of waits. Each
/// is the best of [`ROUNDS`], but half rate, which is the round that lost the most. Returns
/// the packets/s of waits and of the better of waits and polls.
fn three_runs(path: &str, size: usize, run: impl Fn(Mode) -> Run) -> (f64, f64) {
    let rounds = |mode| (0..ROUNDS).map(|_| run(mode)).collect::<Vec<Run>>();
    let best = |mode| {
        let runs = rounds(mode);
        runs.into_iter()
            .max_by(|a, b| a.rate().total_cmp(&b.rate()))
            .unwrap()
    };
    let waits = best(Mode::Waits);
    report(path, size, Mode::Waits, &waits);
    let polls = best(Mode::Polls);
    report(path, size, Mode::Polls, &polls);
    let half = Mode::Paced(waits.rate() / 2.0);
    let lost = |run: &Run| run.sent - run.received.min(run.sent);
    let worst = rounds(half).into_iter().max_by_key(lost).unwrap();
    report(path, size, half, &worst);
    (waits.rate(), waits.rate().max(polls.rate()))
}

/// `ip` in a namespace (or the bench's own with `None`), which must succeed.
fn ip(namespace: Option<&str>, arguments: &[&str]) {
    let mut all = vec![];
    if let Some(namespace) = namespace {
        all.extend(["-n", namespace]);
    }
    all.extend(arguments);
    tun::ip(&all).unwrap();
}

/// Network namespaces made for the TCP rows, removed when dropped.
struct Namespaces(Vec<String>);

impl Namespaces {
    fn new(names: &[&str]) -> Namespaces {
        let names: Vec<String> = names
            .iter()
            .map(|name| format!("oxtun-bench-{name}-{}", std::process::id()))
            .collect();
        for name in &names {
            ip(None, &["netns", "add", name]);
            ip(Some(name), &["link", "set", "lo", "up"]);
        }
        Namespaces(names)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// iperf3, one stream each way at once for 3 s, from `client` to the server in `server` at
/// `address`: the Gbit/s of each direction.
fn iperf_both_ways(client: &str, server: &str, address: &str) -> (f64, f64) {
    let mut iperf = Command::new("ip")
        .args(["netns", "exec", server, "iperf3", "--server", "--one-off"])
        .stdout(Stdio::null())
        .spawn()
        .expect("iperf3 (scripts/setup.sh installs it)");
    let output = (0..50)
        .find_map(|_| {
            thread::sleep(Duration::from_millis(100));
            let output = Command::new("ip")
                .args(["netns", "exec", client, "iperf3", "--client", address])
                .args(["--bidir", "--time", "3", "--json"])
                .output()
                .unwrap();
            output.status.success().then_some(output)
        })
        .expect("iperf3 never connected");
    let _ = iperf.wait();
    let json = String::from_utf8_lossy(&output.stdout);
    // `sum_sent` is the client's direction, `sum_sent_bidir_reverse` the server's.
    let rate = |key: &str| -> f64 {
        let rest = &json[json.find(&format!("\"{key}\"")).expect(key)..];
        let rest = &rest[rest.find("\"bits_per_second\":").unwrap() + 18..];
        let number: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '+')
            .collect();
        number.parse::<f64>().unwrap() / 1e9
    };
    (rate("sum_sent"), rate("sum_sent_bidir_reverse"))
}

/// A wintun-emu in `namespace` with `address`, once it is ready; its interface's MTU 1500, as
/// veth's, and `keywords` set.
fn emulator_in(
    namespace: &str,
    socket: &str,
    name: &str,
    address: &str,
    keywords: &[&str],
) -> Child {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", namespace, env!("CARGO_BIN_EXE_wintun-emu")])
        .args([
            "--socket",
            socket,
            "--name",
            name,
            "--address",
            address,
            "--mtu",
            "1500",
        ]);
    for keyword in keywords {
        command.args(["--keyword", keyword]);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("ready"), "wintun-emu did not start");
    child
}

/// One TCP row through two adapters and the router.
struct TcpRow {
    rates: (f64, f64),
    /// Packets the router forwarded, both ways (a super-packet counts once).
    packets: u64,
    bytes: u64,
    /// CPU time of the router (the client) and of both emulators.
    client_cpu: Duration,
    emulator_cpu: Duration,
}

/// TCP both ways through two adapters and the demo's router, its sessions asking for `features`,
/// the adapters' keywords `keywords`.
fn through_router(features: Features, keywords: &[&str]) -> TcpRow {
    let namespaces = Namespaces::new(&["a", "b"]);
    let directory = std::env::temp_dir().join(format!("oxtun-bench-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let sockets = [directory.join("a.sock"), directory.join("b.sock")];
    let mut emulators = vec![];
    for (index, address) in ["10.77.0.1/24", "10.77.0.2/24"].iter().enumerate() {
        let socket = sockets[index].to_str().unwrap();
        let name = ["oxtun-a", "oxtun-b"][index];
        emulators.push(emulator_in(
            &namespaces.0[index],
            socket,
            name,
            address,
            keywords,
        ));
    }
    let start =
        |socket| Session::start_with(&Adapter::emulator(socket), CAPACITY, features).unwrap();
    let (a, b) = (start(&sockets[0]), start(&sockets[1]));
    let emulator_cpu = |emulators: &[Child]| -> Duration {
        emulators
            .iter()
            .map(|emulator| process_cpu(emulator.id()))
            .sum()
    };
    let row = thread::scope(|scope| {
        let a_to_b = scope.spawn(|| router::forward(&a, &b));
        let b_to_a = scope.spawn(|| router::forward(&b, &a));
        let (client_before, emulators_before) = (own_cpu(), emulator_cpu(&emulators));
        let rates = iperf_both_ways(&namespaces.0[0], &namespaces.0[1], "10.77.0.2");
        let (client_cpu, emulator_cpu) = (
            own_cpu() - client_before,
            emulator_cpu(&emulators) - emulators_before,
        );
        // The emulators' end ends the router's sessions.
        for emulator in &mut emulators {
            // SAFETY: signalling our own child (ip netns exec runs the emulator in its place).
            unsafe { libc::kill(emulator.id() as i32, libc::SIGTERM) };
            let _ = emulator.wait();
        }
        let (mut packets, mut bytes) = (0, 0);
        for thread in [a_to_b, b_to_a] {
            if let Ok(forwarded) = thread.join().unwrap() {
                packets += forwarded.packets;
                bytes += forwarded.bytes;
            }
        }
        TcpRow {
            rates,
            packets,
            bytes,
            client_cpu,
            emulator_cpu,
        }
    });
    drop(namespaces);
    let _ = std::fs::remove_dir_all(&directory);
    row
}

/// TCP both ways through two TUN devices that offload as the emulators' do (TUNSETOFFLOAD with
/// checksums, TSO and USO), a thread each way moving every packet from one to the other with its
/// virtio_net_hdr as it is: no driver, no ring, no router, two copies per byte (Linux's, into the
/// reading process and out of the writing one). What any path through Linux's TUN devices costs
/// on this machine: the floor under the rows through the emulators. Returns the rates, and the
/// CPU time and bytes of the two threads.
fn through_tun_pair() -> ((f64, f64), Duration, u64) {
    use oxtun_sim::upper_edge::{TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let namespaces = Namespaces::new(&["e", "f"]);
    let names = ["oxtun-pair-e", "oxtun-pair-f"];
    let addresses = ["10.75.0.1/24", "10.75.0.2/24"];
    let mut tuns = vec![];
    for index in 0..2 {
        let (name, namespace) = (names[index], namespaces.0[index].as_str());
        let tun = tun::open_with_headers(name, true).unwrap();
        let flags = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6;
        tun::set_offload(&tun, flags).unwrap();
        // The open descriptor keeps working once its interface is in another namespace.
        ip(None, &["link", "set", "dev", name, "netns", namespace]);
        ip(
            Some(namespace),
            &["address", "add", addresses[index], "dev", name],
        );
        ip(Some(namespace), &["link", "set", name, "mtu", "1500", "up"]);
        tuns.push(tun);
    }
    let stop = AtomicBool::new(false);
    let bytes = AtomicU64::new(0);
    let forward = |from: &OwnedFd, to: &OwnedFd| {
        let mut buffer = vec![0u8; 0x10000 + 64];
        while !stop.load(Ordering::Relaxed) {
            wait_readable(from.as_raw_fd(), Duration::from_millis(100));
            // SAFETY: reading into our buffer from our non-blocking TUN descriptor.
            let read =
                unsafe { libc::read(from.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
            if read <= 0 {
                continue;
            }
            // SAFETY: writing what was read to our TUN descriptor; a full queue drops it.
            unsafe { libc::write(to.as_raw_fd(), buffer.as_ptr().cast(), read as usize) };
            bytes.fetch_add(read as u64, Ordering::Relaxed);
        }
    };
    let (rates, cpu) = thread::scope(|scope| {
        let before = own_cpu();
        scope.spawn(|| forward(&tuns[0], &tuns[1]));
        scope.spawn(|| forward(&tuns[1], &tuns[0]));
        let rates = iperf_both_ways(&namespaces.0[0], &namespaces.0[1], "10.75.0.2");
        let cpu = own_cpu() - before;
        stop.store(true, Ordering::Relaxed);
        (rates, cpu)
    });
    drop(tuns);
    drop(namespaces);
    (rates, cpu, bytes.into_inner())
}

/// TCP both ways through two adapters and the demo's router, with offloads and without, then
/// through a TUN pair and over a veth pair; every interface's MTU 1500.
fn tcp_rows() {
    let plain = through_router(Features::NONE, &[]);
    let offloads = through_router(Features::VNET_HDR, &OFFLOAD_KEYWORDS);
    let (tun_pair, tun_pair_cpu, tun_pair_bytes) = through_tun_pair();

    let namespaces = Namespaces::new(&["c", "d"]);
    let (c, d) = (&namespaces.0[0], &namespaces.0[1]);
    ip(
        Some(c),
        &[
            "link", "add", "veth-c", "type", "veth", "peer", "veth-d", "netns", d,
        ],
    );
    ip(
        Some(c),
        &["address", "add", "10.76.0.1/24", "dev", "veth-c"],
    );
    ip(
        Some(d),
        &["address", "add", "10.76.0.2/24", "dev", "veth-d"],
    );
    ip(Some(c), &["link", "set", "veth-c", "up"]);
    ip(Some(d), &["link", "set", "veth-d", "up"]);
    let veth = iperf_both_ways(c, d, "10.76.0.2");
    println!(
        "\nTCP, one stream each way at once (iperf3 --bidir, 3 s), MTU 1500; CPU in ms per GB \
         the router forwarded:"
    );
    for (name, row) in [
        ("two adapters and the router, no offloads", &plain),
        ("two adapters and the router, offloads", &offloads),
    ] {
        let per_gb = |cpu: Duration| cpu.as_secs_f64() * 1e3 / (row.bytes.max(1) as f64 / 1e9);
        println!(
            "{:<42} {:>6.2} Gbit/s a->b {:>6.2} Gbit/s b->a; {:.2}x and {:.2}x veth; {} packets \
             of {} B on average; CPU: router {:.0}, emulators {:.0}",
            name,
            row.rates.0,
            row.rates.1,
            row.rates.0 / veth.0,
            row.rates.1 / veth.1,
            row.packets,
            row.bytes / row.packets.max(1),
            per_gb(row.client_cpu),
            per_gb(row.emulator_cpu),
        );
    }
    println!(
        "{:<42} {:>6.2} Gbit/s e->f {:>6.2} Gbit/s f->e; {:.2}x and {:.2}x veth; CPU: forwarder \
         {:.0} (the floor of any path through TUN devices here)",
        "two TUN devices and a forwarder",
        tun_pair.0,
        tun_pair.1,
        tun_pair.0 / veth.0,
        tun_pair.1 / veth.1,
        tun_pair_cpu.as_secs_f64() * 1e3 / (tun_pair_bytes.max(1) as f64 / 1e9),
    );
    println!(
        "{:<42} {:>6.2} Gbit/s c->d {:>6.2} Gbit/s d->c",
        "a veth pair", veth.0, veth.1,
    );
}

/// The paths and sizes the command line names (cargo passes `--bench`), all when it names none.
struct Selection {
    words: Vec<String>,
}

impl Selection {
    fn from_arguments() -> Selection {
        let words = std::env::args()
            .skip(1)
            .filter(|word| !word.starts_with("--"));
        Selection {
            words: words.collect(),
        }
    }

    fn path(&self, path: &str) -> bool {
        let paths = ["reflect", "tun", "plain", "tcp", "stack"];
        !self.words.iter().any(|word| paths.contains(&word.as_str()))
            || self.words.iter().any(|word| word == path)
    }

    fn sizes(&self) -> Vec<usize> {
        let named: Vec<usize> = self
            .words
            .iter()
            .filter_map(|word| word.parse().ok())
            .collect();
        if named.is_empty() {
            SIZES.to_vec()
        } else {
            named
        }
    }
}

fn main() {
    let selection = Selection::from_arguments();
    own_network_namespace();
    // The stack forwards each packet back out of the interface it came in on, quietly.
    sysctl("net.ipv4.ip_forward", "1");
    for scope in ["all", "default"] {
        sysctl(&format!("net.ipv4.conf.{scope}.send_redirects"), "0");
        sysctl(&format!("net.ipv4.conf.{scope}.rp_filter"), "0");
    }
    println!(
        "client -> driver -> client; tun and plain TUN through the Linux stack's forwarding\n\
         CPU and events per packet received; events: the driver setting the client's event and \
         taking the client's;\nsleeps: the receiver's waits on its event (or in poll)\n\n\
         {:<9} {:>5} {:<9} {:>9} {:>7} {:>8} {:>7} {:>8} {:>7} {:>7}  drops",
        "path",
        "bytes",
        "receiver",
        "packets/s",
        "Gbit/s",
        "lost",
        "client",
        "emulator",
        "events",
        "sleeps"
    );
    println!("{:>59} {:>8}", "us/pkt", "us/pkt");
    let plain = tun::open("plain0", true).unwrap();
    tun::ip(&["link", "set", "dev", "plain0", "mtu", "65535", "up"]).unwrap();
    tun::ip(&["address", "add", "10.80.0.1/24", "dev", "plain0"]).unwrap();
    tun::ip(&["route", "add", "10.81.0.0/24", "dev", "plain0"]).unwrap();
    for size in selection.sizes() {
        let packet = udp_packet(size, [10, 79, 0, 2], [10, 79, 0, 3]);
        let reflect = selection.path("reflect").then(|| {
            three_runs("reflect", size, |mode| {
                through_emulator(&["--upper", "reflect"], None, &packet, mode)
            })
        });
        let tun_rate = selection.path("tun").then(|| {
            three_runs("tun", size, |mode| {
                let arguments = ["--name", "oxbench0", "--address", "10.78.0.1/24"];
                through_emulator(&arguments, Some("oxbench0"), &packet, mode)
            })
        });
        let plain_packet = udp_packet(size, [10, 81, 0, 2], [10, 81, 0, 3]);
        let plain_rate = selection.path("plain").then(|| {
            three_runs("plain TUN", size, |mode| {
                through_plain_tun(&plain, &plain_packet, mode)
            })
        });
        if let Some((_, plain_best)) = plain_rate {
            let ratio = |rate: Option<(f64, f64)>| {
                rate.map_or("-".to_owned(), |(waits, _)| {
                    format!("{:.2}x", waits / plain_best)
                })
            };
            println!(
                "{size} B: packets/s of the receivers that wait, as a ratio to the plain TUN \
                 program's better run: reflect {}, tun {}",
                ratio(reflect),
                ratio(tun_rate)
            );
        }
        println!();
    }
    drop(plain);
    if selection.path("tcp") {
        tcp_rows();
    }
    if !selection.path("stack") {
        return;
    }
    let emulator = Emulator::start(&["--upper", "reflect", "--stack-high-water"]);
    let session = Session::start(&emulator.adapter(), CAPACITY).unwrap();
    for size in selection.sizes() {
        let packet = udp_packet(size, [10, 79, 0, 2], [10, 79, 0, 3]);
        measure(
            Mode::Polls,
            || session.send(&packet).is_ok(),
            || match session.try_receive() {
                Ok(Some(received)) => {
                    drop(received);
                    true
                }
                _ => false,
            },
            |_| {},
        );
    }
    drop(session);
    let (status, log) = emulator.terminate();
    assert!(status.success(), "wintun-emu: {status}\n{log}");
    let table = log
        .find("kernel stack high-water")
        .expect("the emulator's table");
    print!("\n{}", &log[table..]);
}
