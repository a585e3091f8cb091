//! Layer: image, above every kernel layer. It calls the PE helpers.
//!
//! The unwind information of an image's functions that have an exception handler: for
//! `__C_specific_handler`, the scope table of their `__try` blocks.

use object::LittleEndian as LE;
use object::read::pe::PeFile64;

const UNW_FLAG_EHANDLER: u8 = 0x1;
const UNW_FLAG_UHANDLER: u8 = 0x2;

/// A function of the image whose unwind information names an exception handler.
#[derive(Clone, Debug)]
pub struct GuardedFunction {
    pub begin: u32,
    pub end: u32,
    /// The frame register and its offset from the stack pointer after the prolog, in 16-byte
    /// units (`UNWIND_INFO.FrameRegister` and `FrameOffset`), if the function has one.
    pub frame: Option<(u8, u8)>,
    pub handler: Handler,
}

#[derive(Clone, Debug)]
pub enum Handler {
    /// `__C_specific_handler`, with the function's scope table.
    CSpecific(Vec<Scope>),
    /// Another language handler, at this RVA: not simulated.
    Other(u32),
}

/// A `C_SCOPE_TABLE` entry: `[begin, end)` guarded, the filter (or the constant
/// EXCEPTION_EXECUTE_HANDLER), and the `__except` block (0 for a `__finally`).
#[derive(Clone, Copy, Debug)]
pub struct Scope {
    pub begin: u32,
    pub end: u32,
    pub filter: u32,
    pub target: u32,
}

/// The functions of `file` that have an exception handler, read from its exception directory;
/// `c_specific_handler_slot` is the RVA of the import address table's slot for
/// `ntoskrnl.exe!__C_specific_handler`, if the image imports it.
pub fn guarded_functions(
    file: &PeFile64,
    data: &[u8],
    c_specific_handler_slot: Option<u32>,
) -> Result<Vec<GuardedFunction>, String> {
    let sections = file.section_table();
    let at = |rva: u32, len: usize| {
        sections
            .pe_data_at(data, rva)
            .and_then(|bytes| bytes.get(..len))
            .ok_or(format!(
                "unwind information at RVA {rva:#x} is outside the image"
            ))
    };
    let mut functions = Vec::new();
    for entry in crate::image::pe::runtime_functions(file, data)? {
        let unwind = entry.unwind_info_address_or_data.get(LE);
        let header = at(unwind, 4)?;
        let flags = header[0] >> 3;
        if flags & (UNW_FLAG_EHANDLER | UNW_FLAG_UHANDLER) == 0 {
            continue;
        }
        // The unwind codes (two bytes each, padded to an even count), then the handler's RVA
        // and its data.
        let codes = usize::from(header[2]).next_multiple_of(2);
        let handler_at = unwind + 4 + 2 * codes as u32;
        let handler = u32_at(at(handler_at, 4)?, 0);
        let thunk_slot = at(handler, 6)
            .ok()
            .filter(|thunk| thunk[..2] == [0xFF, 0x25])
            .map(|thunk| (handler + 6).wrapping_add(u32_at(thunk, 2)));
        let handler = if thunk_slot.is_some() && thunk_slot == c_specific_handler_slot {
            let count = u32_at(at(handler_at + 4, 4)?, 0) as usize;
            let table = at(handler_at + 8, count * 16)?;
            Handler::CSpecific(
                table
                    .chunks(16)
                    .map(|scope| Scope {
                        begin: u32_at(scope, 0),
                        end: u32_at(scope, 4),
                        filter: u32_at(scope, 8),
                        target: u32_at(scope, 12),
                    })
                    .collect(),
            )
        } else {
            Handler::Other(handler)
        };
        let frame = (header[3] & 0xF != 0).then_some((header[3] & 0xF, header[3] >> 4));
        functions.push(GuardedFunction {
            begin: entry.begin_address.get(LE),
            end: entry.end_address.get(LE),
            frame,
            handler,
        });
    }
    Ok(functions)
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}
