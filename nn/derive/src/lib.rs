//! `#[derive(Module)]`: writes a module's `visit` from its fields.
//!
//! Each named field becomes one call of `stategrad_nn::VisitState::visit_state` under the
//! field's name, exactly the calls a hand-written `visit` (or a run-time `ModuleDict`)
//! makes. What a field holds is decided by its type's `VisitState` implementation, never by
//! how the type is spelled: `Param`, `Buffer` and `Training` visit themselves, any `Module`
//! is a child, `Option`/`Vec`/arrays/maps/`Arc` visit their contents, plain data (numbers,
//! `String`, `Device`, `DType`, a plain `Tensor`) visits nothing.
//!
//! It also writes `visit_mut` (the same fields through `VisitState::visit_state_mut`: the
//! mutable walk behind typed access and in-place replacement) and `as_any`/`as_any_mut`
//! (`Some(self)`; type parameters get a `'static` bound, a struct with lifetime parameters
//! keeps the default `None` and is invisible to typed walks).
//!
//! A field whose type implements none of it is a compile error at that field, naming it
//! (`required by a bound in field_<name>`) and saying to derive `Module` on the type or to
//! mark the field `#[module(skip)]`. Nothing is dropped silently.
use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{parse_macro_input, parse_quote, Data, DeriveInput, Fields};

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

/// The path of `stategrad_nn` as the calling crate sees it: `::stategrad_nn` when it
/// depends on `stategrad-nn` (or is it), `::stategrad::nn` when it depends only on the
/// `stategrad` facade.
fn nn_path(span: proc_macro2::Span) -> Tokens {
    use proc_macro_crate::{crate_name, FoundCrate};
    match crate_name("stategrad-nn") {
        // Inside stategrad-nn itself, `extern crate self as stategrad_nn` makes this resolve.
        Ok(FoundCrate::Itself) => quote_spanned!(span=> ::stategrad_nn),
        Ok(FoundCrate::Name(name)) => {
            let ident = syn::Ident::new(&name, span);
            quote_spanned!(span=> ::#ident)
        }
        Err(_) => match crate_name("stategrad") {
            Ok(FoundCrate::Name(name)) => {
                let ident = syn::Ident::new(&name, span);
                quote_spanned!(span=> ::#ident::nn)
            }
            Ok(FoundCrate::Itself) => quote_spanned!(span=> crate::nn),
            Err(_) => quote_spanned!(span=> ::stategrad_nn),
        },
    }
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let nn = nn_path(proc_macro2::Span::call_site());
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
    let type_params: Vec<syn::Ident> = input.generics.type_params().map(|p| p.ident.clone()).collect();
    let mut generics = input.generics.clone();
    let mut calls = Vec::new();
    let mut calls_mut = Vec::new();
    let mut checks = Vec::new();
    let helpers = format_ident!("__stategrad_fields_{}", input.ident);
    for field in fields {
        if is_skipped(field)? {
            continue;
        }
        let Some(ident) = field.ident.as_ref() else { continue };
        let name = ident.to_string();
        let ty = &field.ty;
        // The field's own span on every path, so errors point at the field.
        let fnn = nn_path(ty.span());
        // A field whose type mentions a type parameter needs the bound on the impl.
        if mentions_any(ty, &type_params) {
            generics.make_where_clause().predicates.push(parse_quote!(#ty: #nn::VisitState));
        }
        // One checking function per field, so that a type without `VisitState` is an error
        // at this field that names it ("required by a bound in `field_<name>`"). It lives in
        // a module beside the impl and hands out both walks, so `visit` and `visit_mut` make
        // the same obligation at the same span and rustc reports it once.
        let check = format_ident!("field_{}", name.trim_start_matches("r#"));
        checks.push(quote_spanned! {ty.span()=>
            pub(super) fn #check<T: #fnn::VisitState + ?Sized>() -> #fnn::derive_support::FieldFns<T> {
                #fnn::derive_support::FieldFns::new()
            }
        });
        calls.push(quote_spanned! {ty.span()=>
            (#helpers::#check::<#ty>().visit)(&self.#ident, #name, v);
        });
        calls_mut.push(quote_spanned! {ty.span()=>
            (#helpers::#check::<#ty>().visit_mut)(&mut self.#ident, #name, v);
        });
    }
    // Typed access needs `Any`, so `'static`: a module with lifetime parameters is left
    // out of typed walks (the default `None`); type parameters get a `'static` bound.
    let any = if input.generics.lifetimes().next().is_none() {
        for p in &type_params {
            generics.make_where_clause().predicates.push(parse_quote!(#p: 'static));
        }
        quote! {
            fn as_any(&self) -> ::core::option::Option<&dyn ::core::any::Any> {
                ::core::option::Option::Some(self)
            }
            fn as_any_mut(&mut self) -> ::core::option::Option<&mut dyn ::core::any::Any> {
                ::core::option::Option::Some(self)
            }
        }
    } else {
        quote! {}
    };
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    Ok(quote! {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        mod #helpers {
            #(#checks)*
        }
        impl #impl_generics #nn::Module for #ident #ty_generics #where_clause {
            fn visit(&self, v: &mut dyn #nn::Visitor) {
                #(#calls)*
            }
            #[allow(unused_variables)]
            fn visit_mut(&mut self, v: &mut dyn #nn::VisitorMut) {
                #(#calls_mut)*
            }
            #any
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

/// True when `ty` names one of `params` anywhere (`T`, `Vec<T>`, `Option<Box<T>>`, ...).
fn mentions_any(ty: &syn::Type, params: &[syn::Ident]) -> bool {
    struct Finder<'a> {
        params: &'a [syn::Ident],
        found: bool,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_path(&mut self, p: &'ast syn::Path) {
            if p.segments.first().is_some_and(|s| self.params.contains(&s.ident)) {
                self.found = true;
            }
            syn::visit::visit_path(self, p);
        }
    }
    let mut f = Finder { params, found: false };
    f.visit_type(ty);
    f.found
}
