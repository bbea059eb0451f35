//! `#[derive(Module)]`: writes a module's `visit` from its fields.
//!
//! Each named field becomes one call on the visitor, under the field's name, exactly the
//! calls a hand-written `visit` (or a run-time `ModuleDict`) makes:
//!
//! | field type | call |
//! | --- | --- |
//! | `Param` | `v.param("name", &self.name)` |
//! | `Buffer` | `v.buffer("name", &self.name)` |
//! | `Training` | `v.training(&self.name)` (the module's train/eval flag) |
//! | `Option<T>` | as `T` when `Some`, nothing when `None` |
//! | `Vec<T>` | a child module `name` whose entries are named `0`, `1`, ... |
//! | any type implementing `Module` | `v.module("name", &self.name)` |
//! | anything else (`Tensor`, `f64`, ...) | nothing: not state |
//!
//! `Param`, `Buffer`, `Training`, `Option` and `Vec` are recognised by the last segment of
//! the field's type path; whether any other type is a module is decided by the compiler
//! (a field whose type implements `Module` is visited, any other is skipped). Mark a field
//! `#[module(skip)]` to leave it out explicitly.
use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote};
use syn::{parse_macro_input, Data, DeriveInput, Fields, GenericArgument, PathArguments, Type};

/// Derives `stategrad_nn::Module` for a struct with named fields (see the crate docs for
/// how each field type is visited).
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => named.named.iter().collect::<Vec<_>>(),
            Fields::Unit => Vec::new(),
            Fields::Unnamed(_) => {
                return Err(syn::Error::new_spanned(
                    &input.ident,
                    "derive(Module) needs named fields (state is named by field)",
                ))
            }
        },
        _ => return Err(syn::Error::new_spanned(&input.ident, "derive(Module) supports structs only")),
    };
    let mut calls = Vec::new();
    for field in fields {
        if is_skipped(field)? {
            continue;
        }
        let ident = field.ident.as_ref().expect("named field");
        let name = ident.to_string();
        let access = quote!(&self.#ident);
        calls.push(visit_value(&field.ty, quote!(#name), access, 0));
    }
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::stategrad_nn::Module for #ident #ty_generics #where_clause {
            fn visit(&self, v: &mut dyn ::stategrad_nn::Visitor) {
                #[allow(unused_imports)]
                use ::stategrad_nn::derive_support::{ModuleField as _, PlainField as _};
                #(#calls)*
            }
        }
    })
}

fn is_skipped(field: &syn::Field) -> syn::Result<bool> {
    let mut skip = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else {
                Err(meta.error("expected `#[module(skip)]`"))
            }
        })?;
    }
    Ok(skip)
}

/// The last path segment of `ty` and its single generic type argument, if any.
fn last_segment(ty: &Type) -> Option<(String, Option<&Type>)> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    let arg = match &seg.arguments {
        PathArguments::AngleBracketed(args) => args.args.iter().find_map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    };
    Some((seg.ident.to_string(), arg))
}

/// The visitor call for one value of type `ty`, reached by the expression `access` (a
/// reference), named by the expression `name` (a `&str`).
fn visit_value(ty: &Type, name: Tokens, access: Tokens, depth: usize) -> Tokens {
    let kind = last_segment(ty);
    match kind.as_ref().map(|(s, arg)| (s.as_str(), *arg)) {
        Some(("Param", None)) => quote!(v.param(#name, #access);),
        Some(("Buffer", None)) => quote!(v.buffer(#name, #access);),
        Some(("Training", None)) => quote!(v.training(#access);),
        Some(("Option", Some(inner))) => {
            let item = format_ident!("__item{}", depth);
            let body = visit_value(inner, name, quote!(#item), depth + 1);
            quote!(if let ::core::option::Option::Some(#item) = #access { #body })
        }
        Some(("Vec", Some(inner))) => {
            let item = format_ident!("__item{}", depth);
            let index = format_ident!("__index{}", depth);
            let body = visit_value(inner, quote!(&#index.to_string()), quote!(#item), depth + 1);
            quote! {
                v.module(#name, &::stategrad_nn::derive_support::FnModule(|v: &mut dyn ::stategrad_nn::Visitor| {
                    for (#index, #item) in (#access).iter().enumerate() { #body }
                }));
            }
        }
        _ => quote!((&::stategrad_nn::derive_support::FieldProbe(#access)).visit_field(#name, v);),
    }
}
