//! `#[kernel_export]`, the attribute of every function the simulated kernel exports to the
//! driver.

use proc_macro::{Delimiter, Group, TokenStream, TokenTree};

/// Exports the function under its own name, as `#[unsafe(no_mangle)]` does, and runs its body on
/// the calling thread's own stack (`crate::stack::on_host_stack`) instead of the kernel stack
/// the driver calls it on: the simulator's code is not the kernel's, and its stack use must not
/// count against the driver's.
#[proc_macro_attribute]
pub fn kernel_export(arguments: TokenStream, function: TokenStream) -> TokenStream {
    assert!(arguments.is_empty(), "#[kernel_export] takes no arguments");
    let mut signature: Vec<TokenTree> = function.into_iter().collect();
    let body = match signature.pop() {
        Some(TokenTree::Group(body)) if body.delimiter() == Delimiter::Brace => body,
        _ => panic!("#[kernel_export] goes on a function with a body"),
    };
    let mut closure: TokenStream = "||".parse().unwrap();
    closure.extend([TokenTree::Group(body)]);
    let mut hop: TokenStream = "crate::stack::on_host_stack".parse().unwrap();
    hop.extend([TokenTree::Group(Group::new(
        Delimiter::Parenthesis,
        closure,
    ))]);
    let mut export: TokenStream = "#[unsafe(no_mangle)]".parse().unwrap();
    export.extend(signature);
    export.extend([TokenTree::Group(Group::new(Delimiter::Brace, hop))]);
    export
}
