//! Layer: image, above every kernel layer. It calls the PE helpers, the unwind tables and ke's
//! thread (what GS holds).
//!
//! The kernel image's code, checked for instructions the simulator cannot run: it executes the
//! image in an ordinary user-mode process, where a privileged instruction (a CR8 read or write
//! for the IRQL on x64, `cli`, `rdmsr`, ...) faults, and GS points only at the little of the
//! processor control region (KPCR) the simulator models. The loader refuses an image that has
//! any, naming the function, so a change that brings one in fails every test on the image with
//! that name.
//!
//! Wine's kernel personality (wine-mirror/wine, dlls/ntoskrnl.exe/instr.c) checks nothing ahead:
//! it emulates a privileged instruction or a read of kernel-only memory when it faults. The
//! simulator checks ahead, for a clear refusal at load, and what it cannot foresee it catches when
//! it runs (`crate::ke::stack`'s fault handler). It follows Windows in what it lets through:
//! - only code is decoded: the instructions reachable from the image's functions (the exception
//!   directory, the exports, the PDB, the entry point, `__except` blocks and filters, and function
//!   pointers the base relocations fix up), following branches and `switch` jump tables. Data in
//!   `.text`, as the jump tables clang and MSVC place after a function, is not code, and an invalid
//!   instruction on a path ends the path: on Windows it is an exception only if it runs;
//! - `int 29h` (`__fastfail`, which the WDK's checked list macros such as RemoveEntryList reach
//!   only on a corrupt list) runs, and reports bug check 0x139 if it is ever reached;
//! - `mov r64, gs:[188h]` (the WDK's inline KeGetCurrentThread) reads the current thread
//!   (`crate::ke::thread::enter_kernel_mode`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, MemorySize, Mnemonic, OpKind, Register,
};
use object::LittleEndian as LE;
use object::Object;
use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, PeFile64};
use pdb::FallibleIterator;

/// An instruction the simulator cannot run, where it is and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rva: u32,
    /// The function it is in: its name, or `the function at RVA ...`.
    pub function: String,
    pub instruction: String,
    pub reason: &'static str,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` at RVA {:#x} in {} ({})",
            self.instruction, self.rva, self.function, self.reason
        )
    }
}

/// `__fastfail`'s software interrupt (the `int 29h` of the WDK's `__fastfail` intrinsic).
const FAST_FAIL_VECTOR: u64 = 0x29;
/// Most entries read from one jump table whose bound the code does not show.
const JUMP_TABLE_LIMIT: usize = 1024;

/// The image's executable sections: their RVA and bytes.
struct CodeSections<'data> {
    sections: Vec<(u32, &'data [u8])>,
}

impl CodeSections<'_> {
    /// The bytes from `rva` to the end of its section, if it lies in one.
    fn from(&self, rva: u32) -> Option<&[u8]> {
        self.sections.iter().find_map(|&(begin, bytes)| {
            let offset = rva.checked_sub(begin)? as usize;
            bytes.get(offset..).filter(|rest| !rest.is_empty())
        })
    }

    fn contains(&self, rva: u32) -> bool {
        self.from(rva).is_some()
    }
}

/// Every instruction of `file`'s code the simulator cannot run; `names` are function names by
/// RVA.
pub fn unrunnable_instructions(
    file: &PeFile64,
    data: &[u8],
    names: &BTreeMap<u32, String>,
) -> Result<Vec<Finding>, String> {
    let mut sections = Vec::new();
    for section in file.section_table().iter() {
        if !section
            .characteristics
            .get(LE)
            .contains(pe::IMAGE_SCN_MEM_EXECUTE)
        {
            continue;
        }
        let bytes = section
            .pe_data(data)
            .map_err(|error| format!("code section: {error}"))?;
        let bytes = &bytes[..bytes.len().min(crate::image::pe::virtual_size(section))];
        sections.push((section.virtual_address.get(LE), bytes));
    }
    let code = CodeSections { sections };
    let functions: Vec<(u32, u32)> = crate::image::pe::runtime_functions(file, data)?
        .iter()
        .map(|entry| (entry.begin_address.get(LE), entry.end_address.get(LE)))
        .collect();
    let mut starts: BTreeSet<u32> = names.keys().copied().collect();
    starts.extend(functions.iter().map(|&(begin, _)| begin));
    let function_of = |rva: u32| {
        let start = starts.range(..=rva).next_back();
        match start {
            Some(start) => names
                .get(start)
                .cloned()
                .unwrap_or_else(|| format!("the function at RVA {start:#x}")),
            None => "code before the first function".to_string(),
        }
    };
    let mut roots: Vec<u32> = starts.iter().copied().collect();
    roots.push(file.nt_headers().optional_header().address_of_entry_point());
    roots.extend(exception_handler_code(file, data)?);
    roots.extend(relocated_code_pointers(file, data, &code)?);
    let mut walk = Walk {
        code: &code,
        functions: &functions,
        decoded: BTreeSet::new(),
        pending: roots
            .into_iter()
            .filter(|&rva| code.contains(rva))
            .collect(),
        findings: Vec::new(),
    };
    while let Some(rva) = walk.pending.pop() {
        walk.path_from(rva);
    }
    let mut findings: Vec<Finding> = walk
        .findings
        .into_iter()
        .map(|(rva, instruction, reason)| Finding {
            rva,
            function: function_of(rva),
            instruction,
            reason,
        })
        .collect();
    findings.sort_by_key(|finding| finding.rva);
    Ok(findings)
}

/// The decoding of the image's code along its control flow.
struct Walk<'a> {
    code: &'a CodeSections<'a>,
    /// The exception directory's `[begin, end)` ranges, to bound jump tables.
    functions: &'a [(u32, u32)],
    /// Instructions decoded, by RVA.
    decoded: BTreeSet<u32>,
    /// Where paths still to follow begin.
    pending: Vec<u32>,
    findings: Vec<(u32, String, &'static str)>,
}

impl Walk<'_> {
    /// Decodes from `rva` until the path ends (a return, an unconditional jump, an instruction
    /// that does not come back, an invalid one, or code decoded already), queueing every branch
    /// target on the way.
    fn path_from(&mut self, rva: u32) {
        let Some(bytes) = self.code.from(rva) else {
            return;
        };
        let mut decoder = Decoder::with_ip(64, bytes, u64::from(rva), DecoderOptions::NONE);
        // The straight-line run so far, for a jump table's setup.
        let mut block: Vec<Instruction> = Vec::new();
        for instruction in &mut decoder {
            let at = instruction.ip() as u32;
            if instruction.is_invalid() || !self.decoded.insert(at) {
                return;
            }
            if let Some(reason) = unrunnable(&instruction) {
                self.findings.push((at, instruction.to_string(), reason));
            }
            let target = instruction.near_branch_target() as u32;
            match instruction.flow_control() {
                FlowControl::Next | FlowControl::IndirectCall | FlowControl::XbeginXabortXend => {}
                FlowControl::Call => self.queue(target),
                FlowControl::ConditionalBranch => {
                    self.queue(target);
                    block.clear();
                }
                FlowControl::UnconditionalBranch => {
                    self.queue(target);
                    return;
                }
                FlowControl::IndirectBranch => {
                    self.jump_table(&block, &instruction);
                    return;
                }
                FlowControl::Return | FlowControl::Exception => return,
                // int3, __fastfail and the rest: none comes back to the next instruction.
                FlowControl::Interrupt => return,
            }
            block.push(instruction);
        }
    }

    fn queue(&mut self, rva: u32) {
        if self.code.contains(rva) && !self.decoded.contains(&rva) {
            self.pending.push(rva);
        }
    }

    /// Queues the cases of the `switch` whose indirect jump is `jump`, if `block` sets up a jump
    /// table the way clang or MSVC do for x64 Windows: `lea base, [rip + table]`, an entry loaded
    /// as `[base + index*4]` and added to the table's address (clang), or `lea base, [__ImageBase]`
    /// and the entry at `[base + index*4 + table]` added to the image base (MSVC: an RVA).
    fn jump_table(&mut self, block: &[Instruction], jump: &Instruction) {
        if jump.op0_kind() != OpKind::Register {
            return;
        }
        let lea_of = |register: Register| {
            block.iter().rev().find_map(|instruction| {
                (instruction.mnemonic() == Mnemonic::Lea
                    && instruction.op0_register() == register
                    && instruction.is_ip_rel_memory_operand())
                .then(|| instruction.ip_rel_memory_address() as u32)
            })
        };
        let load = block.iter().rev().find(|instruction| {
            matches!(
                instruction.code(),
                Code::Movsxd_r64_rm32 | Code::Mov_r32_rm32 | Code::Movsxd_r32_rm32
            ) && instruction.op1_kind() == OpKind::Memory
                && instruction.memory_index_scale() == 4
        });
        let Some(load) = load else {
            return;
        };
        let Some(base) = lea_of(load.memory_base()) else {
            return;
        };
        let (table, relative_to) = if base == 0 {
            // MSVC: the table's RVA is the displacement; entries are RVAs.
            (load.memory_displacement32(), 0)
        } else {
            // clang: the table is where the lea points; entries are relative to it.
            (base, base)
        };
        let bound = self.case_count(block);
        let function = self
            .functions
            .iter()
            .find(|&&(begin, end)| (begin..end).contains(&(jump.ip() as u32)))
            .copied();
        for index in 0..bound.unwrap_or(JUMP_TABLE_LIMIT) {
            let Some(entry) = self
                .code
                .from(table + 4 * index as u32)
                .and_then(|bytes| bytes.get(..4))
            else {
                return;
            };
            let entry = i32::from_le_bytes(entry.try_into().unwrap());
            let target = relative_to.wrapping_add_signed(entry);
            // Without the switch's bound, entries are read while they point into the function.
            let inside = match function {
                Some((begin, end)) => (begin..end).contains(&target),
                None => self.code.contains(target) && target < table,
            };
            if bound.is_none() && !inside {
                return;
            }
            self.queue(target);
        }
    }

    /// How many cases the switch has, from its bounds check (`cmp index, last` and `ja default`)
    /// if the block shows one.
    fn case_count(&self, block: &[Instruction]) -> Option<usize> {
        let compare = block
            .iter()
            .rev()
            .find(|instruction| instruction.mnemonic() == Mnemonic::Cmp)?;
        match compare.op1_kind() {
            OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32
            | OpKind::Immediate32to64
            | OpKind::Immediate8 => usize::try_from(compare.immediate(1)).ok()?.checked_add(1),
            _ => None,
        }
        .filter(|&count| count <= JUMP_TABLE_LIMIT)
    }
}

/// Why the simulator cannot run `instruction`, if it cannot.
fn unrunnable(instruction: &Instruction) -> Option<&'static str> {
    if instruction.is_privileged() {
        Some("privileged: it runs only in kernel mode")
    } else if instruction.segment_prefix() == Register::GS {
        (!reads_current_thread(instruction)).then_some(
            "a GS access: of the processor control region, the simulator models only the \
             current thread (gs:[188h])",
        )
    } else if instruction.segment_prefix() == Register::FS {
        Some("an FS access: nothing of FS is modelled in kernel mode")
    } else if instruction.flow_control() == FlowControl::Interrupt
        && instruction.mnemonic() != Mnemonic::Int3
        && !(instruction.mnemonic() == Mnemonic::Int
            && instruction.immediate(0) == FAST_FAIL_VECTOR)
    {
        Some("a software interrupt the simulator does not handle")
    } else {
        None
    }
}

/// `mov r64, qword ptr gs:[188h]`: the WDK's inline KeGetCurrentThread.
fn reads_current_thread(instruction: &Instruction) -> bool {
    instruction.code() == Code::Mov_r64_rm64
        && instruction.op1_kind() == OpKind::Memory
        && instruction.memory_base() == Register::None
        && instruction.memory_index() == Register::None
        && instruction.memory_size() == MemorySize::UInt64
        && instruction.memory_displacement64() == crate::ke::thread::KPCR_CURRENT_THREAD as u64
}

/// The `__except` blocks and filters of the image's functions: code that only an exception
/// reaches.
fn exception_handler_code(file: &PeFile64, data: &[u8]) -> Result<Vec<u32>, String> {
    let slot = crate::image::pe::import_slot(file, "ntoskrnl.exe", "__C_specific_handler")?;
    let mut code = Vec::new();
    for function in crate::image::unwind::guarded_functions(file, data, slot)? {
        if let crate::image::unwind::Handler::CSpecific(scopes) = function.handler {
            for scope in scopes {
                // A filter of 1 is the constant EXCEPTION_EXECUTE_HANDLER, not code.
                code.extend(
                    [scope.filter, scope.target]
                        .into_iter()
                        .filter(|&rva| rva > 1),
                );
            }
        }
    }
    Ok(code)
}

/// Addresses of code that the image holds in its data and the base relocations fix up: function
/// pointers (dispatch routines, callbacks), which may name functions nothing else lists.
fn relocated_code_pointers(
    file: &PeFile64,
    data: &[u8],
    code: &CodeSections,
) -> Result<Vec<u32>, String> {
    let preferred = file.nt_headers().optional_header().image_base();
    let sections = file.section_table();
    let Some(mut blocks) = file
        .data_directories()
        .relocation_blocks(data, &sections)
        .map_err(|error| format!("base relocations: {error}"))?
    else {
        return Ok(Vec::new());
    };
    let mut pointers = Vec::new();
    while let Some(block) = blocks
        .next()
        .map_err(|error| format!("base relocations: {error}"))?
    {
        for relocation in block {
            if relocation.typ != pe::IMAGE_REL_BASED_DIR64 {
                continue;
            }
            let Some(bytes) = sections
                .pe_data_at(data, relocation.virtual_address)
                .and_then(|bytes| bytes.get(..8))
            else {
                continue;
            };
            let value = u64::from_le_bytes(bytes.try_into().unwrap());
            if let Some(rva) = value
                .checked_sub(preferred)
                .and_then(|rva| u32::try_from(rva).ok())
                .filter(|&rva| code.contains(rva))
            {
                pointers.push(rva);
            }
        }
    }
    Ok(pointers)
}

/// Function names by RVA from the PDB at `path`, if it is the one `file` was linked with (its
/// GUID matches the image's CodeView record and its age is no lower); none otherwise. A
/// function's procedure record names it by its path (`oxtun_driver::driver::DriverEntry`); one
/// without debug information (the C shim) has only its public symbol. Names are only for
/// messages, so a PDB that cannot be read gives none.
pub fn pdb_function_names(file: &PeFile64, path: &Path) -> BTreeMap<u32, String> {
    let Ok(Some(codeview)) = file.pdb_info() else {
        return BTreeMap::new();
    };
    let Ok(source) = std::fs::File::open(path) else {
        return BTreeMap::new();
    };
    let read = || -> pdb::Result<BTreeMap<u32, String>> {
        let mut pdb = pdb::PDB::open(source)?;
        let information = pdb.pdb_information()?;
        let debug = pdb.debug_information()?;
        let age = debug.age().unwrap_or(information.age);
        let mut names = BTreeMap::new();
        if information.guid.to_bytes_le() != codeview.guid() || age < codeview.age() {
            return Ok(names);
        }
        let addresses = pdb.address_map()?;
        let publics = pdb.global_symbols()?;
        let mut publics = publics.iter();
        while let Some(symbol) = publics.next()? {
            if let Ok(pdb::SymbolData::Public(public)) = symbol.parse() {
                if let (true, Some(rva)) = (public.function, public.offset.to_rva(&addresses)) {
                    names.insert(rva.0, public.name.to_string().into_owned());
                }
            }
        }
        let mut modules = debug.modules()?;
        while let Some(module) = modules.next()? {
            let Some(module) = pdb.module_info(&module)? else {
                continue;
            };
            let mut symbols = module.symbols()?;
            while let Some(symbol) = symbols.next()? {
                if let Ok(pdb::SymbolData::Procedure(procedure)) = symbol.parse() {
                    if let Some(rva) = procedure.offset.to_rva(&addresses) {
                        names.insert(rva.0, procedure.name.to_string().into_owned());
                    }
                }
            }
        }
        Ok(names)
    };
    read().unwrap_or_default()
}
