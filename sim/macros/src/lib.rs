//! The simulated kernel's attributes: `#[kernel_export]` on every function it exports to the
//! driver, and `#[oxtun_sim::test]` on every test of the driver.

use proc_macro::{Delimiter, Group, Ident, TokenStream, TokenTree};

/// Exports the function under its own name, as `#[unsafe(no_mangle)]` does, and runs its body on
/// the calling thread's own stack (`crate::ke::stack::on_host_stack`) instead of the kernel stack
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
    let mut hop: TokenStream = "crate::ke::stack::on_host_stack".parse().unwrap();
    hop.extend([TokenTree::Group(Group::new(
        Delimiter::Parenthesis,
        closure,
    ))]);
    let mut export: TokenStream = "#[unsafe(no_mangle)]".parse().unwrap();
    export.extend(signature);
    export.extend([TokenTree::Group(Group::new(Delimiter::Brace, hop))]);
    export
}

/// A test of the driver on the simulated kernel: `#[test]`, with the body run in a process of its
/// own (`oxtun_sim::isolation::in_own_process`), so that plain `cargo test` runs a binary's tests
/// as cargo-nextest does.
#[proc_macro_attribute]
pub fn test(arguments: TokenStream, function: TokenStream) -> TokenStream {
    assert!(
        arguments.is_empty(),
        "#[oxtun_sim::test] takes no arguments"
    );
    let mut signature: Vec<TokenTree> = function.into_iter().collect();
    let body = match signature.pop() {
        Some(TokenTree::Group(body)) if body.delimiter() == Delimiter::Brace => body,
        _ => panic!("#[oxtun_sim::test] goes on a function with a body"),
    };
    let name = signature
        .windows(2)
        .find_map(|pair| match pair {
            [TokenTree::Ident(keyword), TokenTree::Ident(name)] if keyword.to_string() == "fn" => {
                Some(name.clone())
            }
            _ => None,
        })
        .expect("#[oxtun_sim::test] goes on a function");
    let mut test: TokenStream = "#[test]".parse().unwrap();
    test.extend(signature);
    test.extend([TokenTree::Group(Group::new(
        Delimiter::Brace,
        isolated_call(&name, body),
    ))]);
    test
}

/// `::oxtun_sim::isolation::in_own_process(concat!(module_path!(), "::", "NAME"), || BODY)`
fn isolated_call(name: &Ident, body: Group) -> TokenStream {
    let path = format!(r#"::core::concat!(::core::module_path!(), "::", "{name}")"#);
    let mut arguments: TokenStream = format!("{path}, ||").parse().unwrap();
    arguments.extend([TokenTree::Group(body)]);
    let mut call: TokenStream = "::oxtun_sim::isolation::in_own_process".parse().unwrap();
    call.extend([TokenTree::Group(Group::new(
        Delimiter::Parenthesis,
        arguments,
    ))]);
    call
}
