//! The kernel image's code, checked for instructions the simulator cannot run: it executes the
//! image in an ordinary user-mode process, where a privileged instruction (a CR8 read or write
//! for the IRQL on x64, `cli`, `rdmsr`, ...) faults, and GS does not point at a processor
//! control region (KPCR) as it does in kernel mode. The image as built today has none: it reaches
//! the kernel only through its imports. The loader refuses an image that has any, naming the
//! function, so a change that brings one in fails every test on the image with that name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, Register};
use object::LittleEndian as LE;
use object::Object;
use object::pe;
use object::read::pe::PeFile64;
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

/// Every instruction of `file`'s executable sections the simulator cannot run. The code is
/// decoded linearly, starting again at each function the exception directory or the export
/// table names, so padding between functions cannot put the decoder out of step; `names` are
/// function names by RVA.
pub fn unrunnable_instructions(
    file: &PeFile64,
    data: &[u8],
    names: &BTreeMap<u32, String>,
) -> Result<Vec<Finding>, String> {
    let mut starts: Vec<u32> = names.keys().copied().collect();
    let functions = crate::loader::runtime_functions(file, data)?;
    starts.extend(functions.iter().map(|entry| entry.begin_address.get(LE)));
    starts.sort_unstable();
    starts.dedup();
    let function_of = |rva: u32| {
        let start = starts.iter().rev().find(|&&start| start <= rva);
        match start {
            Some(start) => names
                .get(start)
                .cloned()
                .unwrap_or_else(|| format!("the function at RVA {start:#x}")),
            None => "code before the first function".to_string(),
        }
    };
    let mut findings = Vec::new();
    for section in file.section_table().iter() {
        if !section
            .characteristics
            .get(LE)
            .contains(pe::IMAGE_SCN_MEM_EXECUTE)
        {
            continue;
        }
        let begin = section.virtual_address.get(LE);
        let code = section
            .pe_data(data)
            .map_err(|error| format!("code section: {error}"))?;
        let code = &code[..code.len().min(crate::loader::virtual_size(section))];
        let end = begin + code.len() as u32;
        let mut cuts: Vec<u32> = starts
            .iter()
            .copied()
            .filter(|&start| start > begin && start < end)
            .collect();
        cuts.insert(0, begin);
        cuts.push(end);
        for piece in cuts.windows(2) {
            let bytes = &code[(piece[0] - begin) as usize..(piece[1] - begin) as usize];
            let mut decoder =
                Decoder::with_ip(64, bytes, u64::from(piece[0]), DecoderOptions::NONE);
            for instruction in &mut decoder {
                if let Some(reason) = unrunnable(&instruction) {
                    let rva = instruction.ip() as u32;
                    findings.push(Finding {
                        rva,
                        function: function_of(rva),
                        instruction: instruction.to_string(),
                        reason,
                    });
                }
            }
        }
    }
    Ok(findings)
}

/// Why the simulator cannot run `instruction`, if it cannot.
fn unrunnable(instruction: &Instruction) -> Option<&'static str> {
    if instruction.is_invalid() {
        Some("not a valid instruction")
    } else if instruction.is_privileged() {
        Some("privileged: it runs only in kernel mode")
    } else if matches!(instruction.segment_prefix(), Register::GS | Register::FS) {
        Some("a GS or FS access: the processor control region in kernel mode, not here")
    } else if instruction.flow_control() == FlowControl::Interrupt
        && instruction.mnemonic() != Mnemonic::Int3
    {
        // int3 pads between functions. The others: `int 29h` is __fastfail.
        Some("a software interrupt the simulator does not handle")
    } else {
        None
    }
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
