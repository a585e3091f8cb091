//! A user-space personality of the NT kernel and NDIS that runs the unchanged oxtun driver on
//! Linux.
//!
//! It exports, under their kernel names, the functions the driver's `src/sys` declares, so the
//! host build of the driver links against it. It plays both sides: NDIS (loading the driver,
//! adding adapters, OID requests, pause and restart, sends) and the I/O manager. Like Driver
//! Verifier it checks the contracts of each call and stops at the first violation
//! ([`verifier`]); any allocation-like call can be made to fail ([`faults`]); every driver
//! callback runs on a kernel stack of the size a driver gets on Windows ([`stack`]).
//!
//! It runs either build of the driver, as [`DriverBuild`] chooses: the host build linked into
//! this process, or the shipped kernel image, which [`loader`] maps and binds to the same exports.
//!
//! Its modules follow the kernel it imitates, each layer calling only the ones beneath it
//! (`sim/tests/layers.rs` checks): [`bookkeeping`] (violations, faults, what the driver holds)
//! beneath all, then [`ke`] (kernel stack, threads, IRQL, locks, dispatcher objects and waits),
//! [`ob`] (objects, handles, processes, system threads, access checks), [`mm`] (pool, MDLs),
//! [`io`] (the I/O manager), `ndis`, and [`image`] (the kernel image's loader and the export
//! table, which names every layer's exports); [`upper_edge`], above NDIS where tcpip sits, maps
//! the emulator's Linux offloads to NDIS's; this file, on top, drives them for tests.
//!
//! A driver has global state, so one process holds one simulated kernel at a time: a test of the
//! driver is an `#[oxtun_sim::test]`, which runs it in a process of its own under plain
//! `cargo test` too ([`isolation`]).

pub mod bookkeeping;
pub mod driver_build;
pub mod image;
pub mod io;
pub mod isolation;
pub mod ke;
pub mod mm;
mod ndis;
pub mod ob;
pub mod tun;
pub mod upper_edge;

// The paths the tests, the benchmarks and the emulator use.
pub use bookkeeping::{faults, verifier};
pub use image::{code_check, loader};
pub use ke::{dispatcher, irql, stack};
pub use mm::pool;
pub use ob::process;

use ke::sync;

use std::fmt;

use oxtun_driver::sys::*;

pub use driver_build::DriverBuild;
pub use image::loader::DriverEntryRoutine;
pub use io::DeviceHandle;
pub use ke::dispatcher::EventObject;
pub use ndis::{
    AdapterState, Checksums, Fragmentation, General, Indicated, NDIS_ALLOCATION_FLAG,
    OffloadRecord, OffloadedCompletion, Offloads, OidResult, PreparedSend, ReceiveSink, Received,
    ReceivedOffloads, Registry, RegistryValue, ReturnMode, Segmentation, SendOffload, SendTiming,
    Sender, TurnedOff, ndis_dispatched,
};
pub use oxtun_sim_macros::test;
pub use process::{Bitness, IntegrityLevel, Process, Token};

/// `IRP_MN_CANCEL_REMOVE_DEVICE`: PnP takes back a query-remove it vetoed.
const IRP_MN_CANCEL_REMOVE_DEVICE: u8 = 0x03;

/// The driver, loaded.
pub struct Driver {
    object: PDRIVER_OBJECT,
    /// The kernel image, when that is the build running.
    image: Option<loader::Image>,
}

/// What the driver still held when the driver unloaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leaks {
    pub pool: Vec<pool::Allocation>,
    pub nbl_pools: usize,
    pub mdls: usize,
    pub object_references: usize,
    pub resources: usize,
    pub notify_routines: usize,
    pub nbls: usize,
    pub threads: usize,
    pub configurations: usize,
}

impl Leaks {
    pub fn is_empty(&self) -> bool {
        *self == Leaks::default()
    }
}

impl fmt::Display for Leaks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} pool allocations, {} NBL pools, {} NBLs, {} MDLs, {} object references, \
             {} ERESOURCEs, {} process notify routines, {} system threads, {} configuration \
             handles",
            self.pool.len(),
            self.nbl_pools,
            self.nbls,
            self.mdls,
            self.object_references,
            self.resources,
            self.notify_routines,
            self.threads,
            self.configurations
        )
    }
}

/// Everything the driver holds now. While the driver is loaded its lock and its process
/// notify routine are expected here; [`Driver::unload`] reports what is left after it.
pub fn outstanding() -> Leaks {
    Leaks {
        pool: pool::outstanding().into_values().collect(),
        nbl_pools: ndis::nbl_pools_outstanding(),
        mdls: mm::mdl::mdls_outstanding(),
        object_references: process::references_outstanding(),
        resources: sync::resources_outstanding(),
        notify_routines: process::notify_routines_registered(),
        nbls: ndis::nbls_outstanding(),
        threads: ob::threads::threads_outstanding(),
        configurations: ndis::configurations_outstanding(),
    }
}

/// How NDIS adds an adapter: its registry key as its INF and the administrator leave it, and
/// what the simulated TCP/IP asks of it when it binds.
#[derive(Clone, Debug)]
pub struct AdapterSetup {
    /// The adapter's registry values (standardized keywords such as `*LsoV2IPv4`), which
    /// NdisReadConfiguration reads.
    pub registry: Registry,
    /// The encapsulation TCP/IP activates the adapter's offloads for when it binds
    /// (OID_OFFLOAD_ENCAPSULATION), if the adapter reported any; `None`: it sets none.
    /// NDIS_ENCAPSULATION_IEEE_802_3 unless a test says otherwise: which one tcpip asks of an
    /// NdisMediumIP miniport is for Windows to show (docs/windows.md).
    pub bind_encapsulation: Option<u32>,
}

impl Default for AdapterSetup {
    fn default() -> Self {
        AdapterSetup {
            registry: Registry::default(),
            bind_encapsulation: Some(NDIS_ENCAPSULATION_IEEE_802_3),
        }
    }
}

impl AdapterSetup {
    /// With `keyword` set to `value` in the adapter's registry key.
    pub fn keyword(mut self, keyword: &str, value: impl Into<RegistryValue>) -> Self {
        self.registry.set(keyword, value.into());
        self
    }
}

impl Driver {
    /// Loads the build of the driver that `OXTUN_SIM_DRIVER` chooses ([`DriverBuild`]).
    pub fn load() -> Result<Driver, NTSTATUS> {
        Self::load_build(&DriverBuild::from_setting())
    }

    /// Loads `build`: maps the kernel image if that is the build, creates the driver object and
    /// calls DriverEntry at PASSIVE_LEVEL. An image that does not load fails with the status
    /// Windows would give, and the reason on stderr, as Windows logs it.
    pub fn load_build(build: &DriverBuild) -> Result<Driver, NTSTATUS> {
        let (entry, image) = match build {
            DriverBuild::Host => (oxtun_driver::DriverEntry as DriverEntryRoutine, None),
            DriverBuild::Image(path) => match loader::load_file(path) {
                Ok(image) => (image.entry(), Some(image)),
                Err(error) => {
                    eprintln!("simulated kernel: {} not loaded: {error}", path.display());
                    if !path.exists() {
                        eprintln!(
                            "simulated kernel: build the image with `cargo build -p oxtun \
                             --release --target x86_64-pc-windows-msvc`"
                        );
                    }
                    return Err(error.status());
                }
            },
        };
        Self::start(entry, image)
    }

    /// Loads a driver whose DriverEntry is `entry`, linked into this process: a miniport written
    /// for a test of the simulator itself.
    pub fn load_routine(entry: DriverEntryRoutine) -> Result<Driver, NTSTATUS> {
        Self::start(entry, None)
    }

    fn start(entry: DriverEntryRoutine, image: Option<loader::Image>) -> Result<Driver, NTSTATUS> {
        if ndis::driver_registered() {
            // A check on the test: one driver per simulated kernel.
            verifier::violation("loading the driver while it is loaded");
        }
        // The System process exists from boot (PsInitialSystemProcess names it).
        ob::process::system();
        let object = io::new_driver_object();
        let mut registry_path = UNICODE_STRING {
            Length: 0,
            MaximumLength: 0,
            Buffer: std::ptr::null_mut(),
        };
        let status = irql::call_at(PASSIVE_LEVEL, "DriverEntry", || {
            // SAFETY: DriverEntry with a fresh driver object and a registry path.
            unsafe { entry(object, &mut registry_path) }
        });
        if !NT_SUCCESS(status) {
            io::free_driver_object(object);
            return Err(status);
        }
        Ok(Driver { object, image })
    }

    /// The kernel image, when that is the build running.
    pub fn image(&self) -> Option<&loader::Image> {
        self.image.as_ref()
    }

    /// The driver object, as the driver left it after DriverEntry.
    pub fn object(&self) -> &DRIVER_OBJECT {
        // SAFETY: a live driver object until unload.
        unsafe { &*self.object }
    }

    /// Adds an adapter: MiniportInitializeEx, then MiniportRestartEx as NDIS does, then the
    /// simulated TCP/IP binds.
    pub fn add_adapter(&self) -> Result<Adapter, NDIS_STATUS> {
        self.add_adapter_with(AdapterSetup::default())
    }

    /// [`Driver::add_adapter`], with the registry and the binding `setup` says.
    pub fn add_adapter_with(&self, setup: AdapterSetup) -> Result<Adapter, NDIS_STATUS> {
        let handlers = ndis::handlers().expect("a registered driver");
        let handle = ndis::new_adapter(setup.registry);
        let status = ndis::initialize(handle, &handlers);
        if status != NDIS_STATUS_SUCCESS {
            ndis::free_adapter(handle);
            return Err(status);
        }
        let adapter = Adapter { handle };
        let restarted = adapter.restart();
        if restarted != NDIS_STATUS_SUCCESS {
            // MiniportRestartEx returns NDIS_STATUS_SUCCESS, NDIS_STATUS_PENDING or a failure
            // (MINIPORT_RESTART); after initialize, this driver has no reason to fail it.
            verifier::violation(format!(
                "MiniportRestartEx after initialize failed: {restarted:#x}"
            ));
        }
        if let Some(encapsulation) = setup.bind_encapsulation {
            ndis::bind_protocol(handle, encapsulation);
        }
        Ok(adapter)
    }

    /// Unloads the driver through the unload routine in its driver object, and reports what it
    /// left allocated.
    pub fn unload(self) -> Leaks {
        let unload = self.object().DriverUnload;
        match unload {
            Some(unload) => irql::call_at(PASSIVE_LEVEL, "DriverUnload", || {
                // SAFETY: the unload routine installed in the driver object, called once.
                unsafe { unload(self.object) }
            }),
            // NDIS installs its unload routine in the driver object at registration, and the
            // miniport gives it one to call ("Unloading a Miniport Driver": MiniportDriverUnload).
            None => verifier::violation("the driver object has no unload routine"),
        }
        if ndis::driver_registered() {
            // MiniportDriverUnload calls NdisMDeregisterMiniportDriver ("Unloading a Miniport
            // Driver"; MINIPORT_DRIVER_UNLOAD).
            verifier::violation("the driver unloaded without deregistering its miniport");
        }
        io::free_driver_object(self.object);
        let leaks = outstanding();
        if let Some(image) = self.image {
            if leaks.threads == 0 && leaks.notify_routines == 0 {
                // SAFETY: no thread of the driver runs and no notify routine of it is
                // registered; its miniport is deregistered and its driver object freed.
                unsafe { image.unmap() };
            }
            // Otherwise the image stays mapped, so the leak is reported rather than a thread
            // faulting in freed code.
        }
        leaks
    }
}

/// An adapter NDIS added.
pub struct Adapter {
    handle: NDIS_HANDLE,
}

// SAFETY: the handle names NDIS's adapter block, which NDIS uses from any thread; its mutable
// state is behind mutexes.
unsafe impl Send for Adapter {}
// SAFETY: as for Send.
unsafe impl Sync for Adapter {}

impl Adapter {
    pub fn state(&self) -> AdapterState {
        ndis::state(self.handle)
    }

    /// The general attributes the driver set.
    pub fn general(&self) -> General {
        let block = ndis::adapter_block(self.handle);
        let attributes = block.attributes.lock().unwrap();
        attributes.general.clone().expect("set during initialize")
    }

    /// What NDIS knows of the adapter's task offloads: the capabilities and the current
    /// configuration the miniport reported, and what TCP/IP activated.
    pub fn offloads(&self) -> OffloadRecord {
        ndis::adapter_block(self.handle)
            .offloads
            .lock()
            .unwrap()
            .clone()
    }

    /// A value of the adapter's registry key.
    pub fn registry_value(&self, name: &str) -> Option<RegistryValue> {
        ndis::adapter_block(self.handle)
            .registry
            .lock()
            .unwrap()
            .get(name)
            .cloned()
    }

    /// The registration attribute flags the driver set.
    pub fn attribute_flags(&self) -> u32 {
        ndis::adapter_block(self.handle)
            .attributes
            .lock()
            .unwrap()
            .attribute_flags
    }

    /// The media connect state last indicated, if any.
    pub fn link_state(&self) -> Option<NDIS_MEDIA_CONNECT_STATE> {
        let block = ndis::adapter_block(self.handle);
        let link = *block.link_state.lock().unwrap();
        link.map(|link| link.MediaConnectState)
    }

    /// The adapter's functional device object.
    pub fn device(&self) -> PDEVICE_OBJECT {
        ndis::adapter_block(self.handle).device
    }

    /// A PnP request (IRP_MJ_PNP with `minor`) to the adapter's device.
    pub fn pnp(&self, minor: u8) -> NTSTATUS {
        io::pnp(self.device(), minor)
    }

    /// A query OID request with a buffer of `len` bytes.
    pub fn query(&self, oid: NDIS_OID, len: usize) -> OidResult {
        ndis::oid_request(
            self.handle,
            NdisRequestQueryInformation,
            oid,
            vec![0xCC; len],
        )
    }

    /// A set OID request carrying `data`.
    pub fn set(&self, oid: NDIS_OID, data: &[u8]) -> OidResult {
        ndis::oid_request(self.handle, NdisRequestSetInformation, oid, data.to_vec())
    }

    /// Sets `oid` to `data` from within the adapter's next NDIS_STATUS_TASK_OFFLOAD_CURRENT_CONFIG,
    /// on the thread that indicates it, as a filter's status handler may before it passes the
    /// indication on ([`ndis::within_next_offload_report`]); the answer is put in the slot
    /// returned.
    pub fn set_within_next_offload_report(
        &self,
        oid: NDIS_OID,
        data: &[u8],
    ) -> std::sync::Arc<std::sync::Mutex<Option<OidResult>>> {
        let answer = std::sync::Arc::new(std::sync::Mutex::new(None));
        let (handle, data, slot) = (self.handle as usize, data.to_vec(), answer.clone());
        ndis::within_next_offload_report(move || {
            let result =
                ndis::oid_request(handle as NDIS_HANDLE, NdisRequestSetInformation, oid, data);
            *slot.lock().unwrap() = Some(result);
        });
        answer
    }

    /// Sends one NBL per entry of `nbls` (each a list of packets, one NET_BUFFER each), laid
    /// out in MDLs as `layout` says, at `irql`; returns each NBL's completion status.
    pub fn send(
        &self,
        nbls: &[Vec<Vec<u8>>],
        layout: Fragmentation,
        irql: KIRQL,
    ) -> Vec<NDIS_STATUS> {
        ndis::send(self.handle, nbls, layout, irql)
    }

    /// Sends one NBL of one packet per entry of `sends`, each offloaded as it says, as the
    /// simulated TCP/IP does: the packet (complete and well formed) rewritten as tcpip hands
    /// such a send over and its NBL information written, a segmentation offload's headers in its
    /// first MDL. With [`SendTiming::InForce`] the offload must be in force (a violation
    /// otherwise, and the send is not made: `None`); [`SendTiming::Late`] sends what an earlier
    /// configuration allowed.
    pub fn send_offloaded(
        &self,
        sends: &[(Vec<u8>, SendOffload)],
        layout: Fragmentation,
        timing: SendTiming,
        irql: KIRQL,
    ) -> Vec<Option<OffloadedCompletion>> {
        ndis::send_offloaded(self.handle, sends, layout, timing, irql)
    }

    /// MiniportPause; the adapter is paused when it returns success, or pausing when it
    /// returns NDIS_STATUS_PENDING (until NdisMPauseComplete: see [`Adapter::wait_paused`]).
    pub fn pause(&self) -> NDIS_STATUS {
        self.transition(AdapterState::Running, AdapterState::Paused)
    }

    /// A sender of packets where they lie, in NBLs it reuses (the emulator's upper edge).
    pub fn sender(&self) -> Sender {
        Sender::new(self.handle)
    }

    /// Sends NBLs prepared once (for benchmarks); returns how many completed with success.
    pub fn send_prepared(&self, prepared: &mut PreparedSend, irql: KIRQL) -> usize {
        ndis::send_prepared(self.handle, prepared, irql)
    }

    /// Whether indicated packets are read and kept for [`Adapter::take_received`] (and the NBLs
    /// per indication for [`Adapter::indications`]), or only counted
    /// ([`Adapter::packets_received`]); for benchmarks and the emulator.
    pub fn set_recording(&self, recording: bool) {
        ndis::adapter_block(self.handle)
            .receive
            .lock()
            .unwrap()
            .recording = recording;
    }

    /// Hands the packets of every indication to `sink` instead of recording them (the
    /// emulator's upper edge: a TUN interface, or the send path again).
    pub fn set_receive_sink(&self, sink: Option<ndis::ReceiveSink>) {
        ndis::adapter_block(self.handle)
            .receive
            .lock()
            .unwrap()
            .sink = sink;
    }

    /// Packets indicated so far, recorded or not.
    pub fn packets_received(&self) -> u64 {
        ndis::adapter_block(self.handle)
            .receive
            .lock()
            .unwrap()
            .packets
    }

    /// Waits for a pending pause to complete.
    pub fn wait_paused(&self) {
        ndis::wait_paused(self.handle);
    }

    /// NDIS pauses the adapter from another thread during the next send call's completion
    /// (see `AdapterBlock::pause_during_send_completion`).
    pub fn pause_during_next_send(&self) {
        ndis::adapter_block(self.handle)
            .pause_during_send_completion
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// How the simulated stack returns indicated NBLs from now on.
    pub fn set_return_mode(&self, mode: ReturnMode) {
        ndis::adapter_block(self.handle)
            .receive
            .lock()
            .unwrap()
            .mode = mode;
    }

    /// The packets received so far, oldest first, taken out.
    pub fn take_received(&self) -> Vec<Received> {
        let block = ndis::adapter_block(self.handle);
        block.receive.lock().unwrap().received.drain(..).collect()
    }

    /// Waits until at least `count` packets wait to be taken (or `timeout` passes), and takes
    /// them all.
    pub fn wait_received(&self, count: usize, timeout: std::time::Duration) -> Vec<Received> {
        let block = ndis::adapter_block(self.handle);
        let receive = block.receive.lock().unwrap();
        let (mut receive, _) = block
            .received_changed
            .wait_timeout_while(receive, timeout, |receive| receive.received.len() < count)
            .unwrap();
        receive.received.drain(..).collect()
    }

    /// Indications so far, recorded or not.
    pub fn indication_count(&self) -> u64 {
        ndis::adapter_block(self.handle)
            .receive
            .lock()
            .unwrap()
            .indication_count
    }

    /// NBLs per indication so far, while recording.
    pub fn indications(&self) -> Vec<u32> {
        ndis::adapter_block(self.handle)
            .receive
            .lock()
            .unwrap()
            .indications
            .clone()
    }

    /// NBLs the stack holds.
    pub fn held(&self) -> usize {
        ndis::adapter_block(self.handle)
            .receive
            .lock()
            .unwrap()
            .held
            .len()
    }

    /// Returns held NBLs: `choose` gets them oldest first and leaves those to return, in the
    /// order to return them; they go back `per_call` at a time. The rest stay held.
    pub fn return_held(&self, choose: impl FnOnce(&mut Vec<usize>), per_call: usize) {
        let held = ndis::adapter_block(self.handle)
            .receive
            .lock()
            .unwrap()
            .held
            .clone();
        let mut chosen = held.clone();
        choose(&mut chosen);
        assert!(
            chosen.iter().all(|nbl| held.contains(nbl)),
            "returning NBLs not held"
        );
        for chunk in chosen.chunks(per_call.max(1)) {
            ndis::return_nbls(self.handle, chunk);
        }
    }

    /// Waits for a pause that pended to complete; nothing if it did not pend.
    pub fn wait_paused_if_pending(&self) {
        if self.state() == AdapterState::Pausing {
            self.wait_paused();
        }
    }

    /// MiniportRestartEx; the adapter runs when it returns success.
    pub fn restart(&self) -> NDIS_STATUS {
        self.transition(AdapterState::Paused, AdapterState::Running)
    }

    fn transition(&self, from: AdapterState, to: AdapterState) -> NDIS_STATUS {
        ndis::transition(self.handle, from, to)
    }

    /// MiniportShutdownEx, as when the system powers off.
    pub fn shutdown(&self) {
        let handlers = ndis::handlers().expect("a registered driver");
        let context = ndis::adapter_context(self.handle);
        irql::call_at(PASSIVE_LEVEL, "MiniportShutdownEx", || {
            // SAFETY: the driver's handler with its context.
            unsafe { (handlers.shutdown)(context, 0) }
        });
    }

    /// MiniportCancelSend and MiniportCancelOidRequest for identifiers nothing carries.
    pub fn cancel(&self, id: usize) {
        let handlers = ndis::handlers().expect("a registered driver");
        let context = ndis::adapter_context(self.handle);
        irql::at_dispatch("MiniportCancelSend", || {
            // SAFETY: the driver's handler with its context and an opaque identifier.
            unsafe { (handlers.cancel_send)(context, id as PVOID) }
        });
        irql::at_dispatch("MiniportCancelOidRequest", || {
            // SAFETY: as above.
            unsafe { (handlers.cancel_oid_request)(context, id as PVOID) }
        });
    }

    /// Halts the adapter (pausing it first if it runs), as NDIS does once its device is
    /// being removed.
    pub fn halt(self) {
        self.halt_with(0, false);
    }

    /// Disabling or uninstalling the adapter, as PnP does it: IRP_MN_QUERY_REMOVE_DEVICE, then,
    /// unless a handle to the device is still open (PnP vetoes the removal then, and sends
    /// IRP_MN_CANCEL_REMOVE_DEVICE), the halt that removal brings.
    pub fn disable(self) -> Result<(), Vetoed> {
        let status = self.pnp(IRP_MN_QUERY_REMOVE_DEVICE);
        let open_handles = io::handles_to_device(self.device());
        if status != STATUS_SUCCESS || open_handles != 0 {
            self.pnp(IRP_MN_CANCEL_REMOVE_DEVICE);
            return Err(Vetoed {
                adapter: self,
                status,
                open_handles,
            });
        }
        self.halt();
        Ok(())
    }

    /// Surprise removal: IRP_MN_SURPRISE_REMOVAL, the PnP notification, then pause and halt.
    /// Returns the handles still open to the device, which PnP waits for before the device
    /// object may go (IRP_MN_REMOVE_DEVICE).
    pub fn surprise_remove(self) -> usize {
        let status = self.pnp(IRP_MN_SURPRISE_REMOVAL);
        if status != STATUS_SUCCESS {
            // A driver may not fail IRP_MN_SURPRISE_REMOVAL (IRP_MN_SURPRISE_REMOVAL).
            verifier::violation(format!("IRP_MN_SURPRISE_REMOVAL failed: {status:#x}"));
        }
        let open_handles = io::handles_to_device(self.device());
        self.halt_with(NdisHaltDeviceSurpriseRemoved, true);
        open_handles
    }

    fn halt_with(self, action: NDIS_HALT_ACTION, surprise: bool) {
        let handlers = ndis::handlers().expect("a registered driver");
        let context = ndis::adapter_context(self.handle);
        if surprise {
            let mut event = NET_DEVICE_PNP_EVENT {
                Header: NDIS_OBJECT_HEADER {
                    Type: NDIS_OBJECT_TYPE_DEFAULT,
                    Revision: 1,
                    Size: 0x2C,
                },
                PortNumber: 0,
                DevicePnPEvent: NdisDevicePnPEventSurpriseRemoved,
                InformationBuffer: std::ptr::null_mut(),
                InformationBufferLength: 0,
                NdisReserved: [0; 16],
            };
            irql::call_at(PASSIVE_LEVEL, "MiniportDevicePnPEventNotify", || {
                // SAFETY: the driver's handler with its context and a live event.
                unsafe { (handlers.device_pnp_event_notify)(context, &mut event) }
            });
        }
        // The stack gives back what it holds, then NDIS pauses the adapter before halting it.
        self.return_held(|_| {}, usize::MAX);
        if self.state() == AdapterState::Running {
            match self.pause() {
                NDIS_STATUS_SUCCESS => {}
                NDIS_STATUS_PENDING => self.wait_paused(),
                other => {
                    // MiniportPause returns NDIS_STATUS_SUCCESS or NDIS_STATUS_PENDING (MINIPORT_PAUSE).
                    verifier::violation(format!("MiniportPause failed before halt: {other:#x}"))
                }
            }
        }
        if self.held() != 0 {
            // A check on the test: NDIS returns every NBL before it halts the adapter.
            verifier::violation("halting an adapter whose NBLs the stack still holds");
        }
        irql::call_at(PASSIVE_LEVEL, "MiniportHaltEx", || {
            // SAFETY: the driver's handler with its context; the adapter is paused.
            unsafe { (handlers.halt)(context, action) }
        });
        ndis::set_state(self.handle, AdapterState::Halted);
        ndis::free_adapter(self.handle);
    }
}

/// A removal PnP refused.
pub struct Vetoed {
    /// The adapter, still there.
    pub adapter: Adapter,
    /// What the driver answered IRP_MN_QUERY_REMOVE_DEVICE.
    pub status: NTSTATUS,
    /// The handles to the device that were still open (PNP_VetoOutstandingOpen).
    pub open_handles: usize,
}
