//! `#[backend_test]`: an async test, generated once per relay backend.
//!
//! ```ignore
//! #[backend_test]
//! async fn messages_survive_a_restart() { let relay = Relay::start().await; … }
//! ```
//! expands to `messages_survive_a_restart_sqlite` and
//! `messages_survive_a_restart_postgres`, each a `#[tokio::test]` whose body
//! runs inside [`obscura_testkit::backends::Backend::run`], so every server
//! the test starts uses that backend. The PostgreSQL variant skips with a
//! printed reason when the services are missing, or fails when
//! `OBSCURA_REQUIRE_BACKENDS=1` (CI).

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{ItemFn, parse_macro_input};

#[proc_macro_attribute]
pub fn backend_test(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[backend_test] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let test = parse_macro_input!(item as ItemFn);
    if test.sig.asyncness.is_none() || !test.sig.inputs.is_empty() {
        return syn::Error::new_spanned(
            &test.sig,
            "#[backend_test] needs an `async fn` without arguments",
        )
        .to_compile_error()
        .into();
    }
    let attrs = &test.attrs;
    let vis = &test.vis;
    let body = &test.block;
    let output = &test.sig.output;
    let name = &test.sig.ident;
    let sqlite = format_ident!("{}_sqlite", name);
    let postgres = format_ident!("{}_postgres", name);
    quote! {
        #(#attrs)*
        #[::tokio::test]
        #vis async fn #sqlite() #output {
            ::obscura_testkit::backends::Backend::Sqlite
                .run(async move #body)
                .await
        }

        #(#attrs)*
        #[::tokio::test]
        #vis async fn #postgres() #output {
            match ::obscura_testkit::backends::Backend::postgres(concat!(module_path!(), "::", stringify!(#postgres))) {
                Some(backend) => backend.run(async move #body).await,
                None => ::core::default::Default::default(),
            }
        }
    }
    .into()
}
