//! [`VisitState`]: how a value held in a module's field names its state. `#[derive(Module)]`
//! calls it once per field, so what a field holds is decided by its type's trait
//! implementation, never by the spelling of the type: `type P = Param`, a `[Linear; 2]`
//! or a `HashMap<String, Conv2d>` are all found, and a type that implements nothing is a
//! compile error naming the field instead of silently dropped state.
//!
//! | type | what it visits |
//! | --- | --- |
//! | [`Param`], [`Buffer`], [`Training`] | itself |
//! | any [`Module`] (`Box<dyn Layer>` too) | a child module under the field's name |
//! | `Option<T>` | `T` when `Some` |
//! | `Vec<T>`, `[T; N]`, `Box<[T]>`, `VecDeque<T>` | a child named by the field, entries `0`, `1`, ... |
//! | `BTreeMap<String, T>`, `HashMap<String, T>` | a child named by the field, entries by key (sorted) |
//! | `Arc<T>`, `Rc<T>` | `T` |
//! | numbers, `bool`, `char`, `String`, `&'static str`, `Device`, `DType`, `Tensor`, `PhantomData`, `()` | nothing: not state |
//!
//! A container whose items are plain data (a `Vec<usize>`, an `Option<f64>`) visits nothing:
//! [`VisitState::PLAIN`] propagates through containers, so no empty child module appears.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use stategrad_autograd::{DType, Device, Tensor};

use crate::module::derive_support::{AsDynModule, AsDynModuleMut, Entries, FnModule, VisitEntries};
use crate::{Buffer, Module, Param, Training, Visitor, VisitorMut};

/// A value that can sit in a field of a `#[derive(Module)]` struct: it names the state it
/// holds (parameters, buffers, child modules, a training flag) to a [`Visitor`], or
/// nothing when it is plain data.
///
/// Implemented for the state handles, every [`Module`], the standard containers of those and
/// plain data (see the module docs). Implement it for a plain type of your own with
/// `const PLAIN: bool = true;` and an empty `visit_state`, or mark the field
/// `#[module(skip)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not module state: `#[derive(Module)]` cannot tell what this field holds",
    label = "`{Self}` implements neither `Module` nor `VisitState`",
    note = "derive `Module` on the type (on its items, for a container) if it holds parameters or buffers, or mark the field `#[module(skip)]` if it is plain data"
)]
pub trait VisitState {
    /// True for plain data (no state at any depth); containers of plain items are plain too.
    const PLAIN: bool = false;

    /// Names this value's state to `v` under `name` (a field name or a container index).
    fn visit_state(&self, name: &str, v: &mut dyn Visitor);

    /// Names the child modules this value holds to `v`, mutably, under the names
    /// [`VisitState::visit_state`] gives them (handles need no `&mut`: nothing to visit).
    /// The default reaches nothing, right for plain data; for a value that holds modules it
    /// is never a silent skip: a typed mutable walk compares what it reached with
    /// `visit_state` and fails naming any module it could not reach.
    fn visit_state_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        let _ = (name, v);
    }
}

impl VisitState for Param {
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        v.param(name, self)
    }
    fn visit_state_mut(&mut self, _name: &str, _v: &mut dyn VisitorMut) {}
}

impl VisitState for Buffer {
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        v.buffer(name, self)
    }
    fn visit_state_mut(&mut self, _name: &str, _v: &mut dyn VisitorMut) {}
}

impl VisitState for Training {
    fn visit_state(&self, _name: &str, v: &mut dyn Visitor) {
        v.training(self)
    }
    fn visit_state_mut(&mut self, _name: &str, _v: &mut dyn VisitorMut) {}
}

// Not recommended in diagnostics: an error then names the missing `VisitState` itself
// (with the note above) instead of listing every module type of the crate.
#[diagnostic::do_not_recommend]
impl<M: Module + ?Sized> VisitState for M {
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        v.module(name, &AsDynModule(self))
    }
    fn visit_state_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        v.module(name, &mut AsDynModuleMut(self))
    }
}

impl<T: VisitState> VisitState for Option<T> {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        if let Some(x) = self {
            x.visit_state(name, v)
        }
    }
    fn visit_state_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        if let Some(x) = self {
            x.visit_state_mut(name, v)
        }
    }
}

// A shared `Arc`/`Rc` cannot be borrowed mutably: a mutable walk reaches its contents only
// while this is the one handle. Typed walks compare what they reached with the immutable walk
// and fail, naming the path, when a module of the asked type was out of reach.
impl<T: VisitState + ?Sized> VisitState for Arc<T> {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        (**self).visit_state(name, v)
    }
    fn visit_state_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        if let Some(x) = Arc::get_mut(self) {
            x.visit_state_mut(name, v)
        }
    }
}

impl<T: VisitState + ?Sized> VisitState for Rc<T> {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        (**self).visit_state(name, v)
    }
    fn visit_state_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        if let Some(x) = Rc::get_mut(self) {
            x.visit_state_mut(name, v)
        }
    }
}

/// Visits `items` as one child module `name` whose entries are named by `key`, unless the
/// items are plain data.
fn visit_list<'a, T: VisitState + 'a>(
    name: &str,
    v: &mut dyn Visitor,
    items: impl Iterator<Item = (String, &'a T)> + Clone,
) {
    if T::PLAIN {
        return;
    }
    v.module(
        name,
        &FnModule(|v: &mut dyn Visitor| {
            for (key, item) in items.clone() {
                item.visit_state(&key, v)
            }
        }),
    )
}

/// Visits the entries of `c` mutably, as one child module `name`, unless they are plain.
fn visit_list_mut<C: VisitEntries + ?Sized>(plain: bool, name: &str, v: &mut dyn VisitorMut, c: &mut C) {
    if !plain {
        v.module(name, &mut Entries(c))
    }
}

impl<T: VisitState> VisitEntries for [T] {
    fn visit_entries(&self, v: &mut dyn Visitor) {
        for (i, x) in self.iter().enumerate() {
            x.visit_state(&i.to_string(), v)
        }
    }
    fn visit_entries_mut(&mut self, v: &mut dyn VisitorMut) {
        for (i, x) in self.iter_mut().enumerate() {
            x.visit_state_mut(&i.to_string(), v)
        }
    }
}

impl<T: VisitState> VisitState for [T] {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        visit_list(name, v, self.iter().enumerate().map(|(i, x)| (i.to_string(), x)))
    }
    fn visit_state_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        visit_list_mut(T::PLAIN, name, v, self)
    }
}

impl<T: VisitState, const N: usize> VisitState for [T; N] {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        self[..].visit_state(name, v)
    }
    fn visit_state_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        self[..].visit_state_mut(name, v)
    }
}

impl<T: VisitState> VisitState for Vec<T> {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        self[..].visit_state(name, v)
    }
    fn visit_state_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        self[..].visit_state_mut(name, v)
    }
}

impl<T: VisitState> VisitEntries for VecDeque<T> {
    fn visit_entries(&self, v: &mut dyn Visitor) {
        for (i, x) in self.iter().enumerate() {
            x.visit_state(&i.to_string(), v)
        }
    }
    fn visit_entries_mut(&mut self, v: &mut dyn VisitorMut) {
        for (i, x) in self.iter_mut().enumerate() {
            x.visit_state_mut(&i.to_string(), v)
        }
    }
}

impl<T: VisitState> VisitState for VecDeque<T> {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        visit_list(name, v, self.iter().enumerate().map(|(i, x)| (i.to_string(), x)))
    }
    fn visit_state_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        visit_list_mut(T::PLAIN, name, v, self)
    }
}

impl<T: VisitState> VisitEntries for BTreeMap<String, T> {
    fn visit_entries(&self, v: &mut dyn Visitor) {
        for (k, x) in self {
            x.visit_state(k, v)
        }
    }
    fn visit_entries_mut(&mut self, v: &mut dyn VisitorMut) {
        for (k, x) in self.iter_mut() {
            x.visit_state_mut(k, v)
        }
    }
}

impl<T: VisitState> VisitState for BTreeMap<String, T> {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        visit_list(name, v, self.iter().map(|(k, x)| (k.clone(), x)))
    }
    fn visit_state_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        visit_list_mut(T::PLAIN, name, v, self)
    }
}

impl<T: VisitState, S> VisitEntries for HashMap<String, T, S> {
    fn visit_entries(&self, v: &mut dyn Visitor) {
        let mut entries: Vec<(&String, &T)> = self.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (k, x) in entries {
            x.visit_state(k, v)
        }
    }
    fn visit_entries_mut(&mut self, v: &mut dyn VisitorMut) {
        let mut entries: Vec<(&String, &mut T)> = self.iter_mut().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (k, x) in entries {
            x.visit_state_mut(k, v)
        }
    }
}

impl<T: VisitState, S> VisitState for HashMap<String, T, S> {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        // Sorted by key: a HashMap's iteration order changes from run to run, state names
        // and their order must not.
        let mut entries: Vec<(&String, &T)> = self.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        visit_list(name, v, entries.into_iter().map(|(k, x)| (k.clone(), x)))
    }
    fn visit_state_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
        visit_list_mut(T::PLAIN, name, v, self)
    }
}

macro_rules! plain {
    ($($t:ty),* $(,)?) => {$(
        impl VisitState for $t {
            const PLAIN: bool = true;
            fn visit_state(&self, _name: &str, _v: &mut dyn Visitor) {}
            fn visit_state_mut(&mut self, _name: &str, _v: &mut dyn VisitorMut) {}
        }
    )*};
}

plain!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    String,
    str,
    (),
    Device,
    DType,
    Tensor,
    stategrad_autograd::Conv2dParams,
    std::path::PathBuf,
    std::time::Duration,
);

impl VisitState for &'static str {
    const PLAIN: bool = true;
    fn visit_state(&self, _name: &str, _v: &mut dyn Visitor) {}
    fn visit_state_mut(&mut self, _name: &str, _v: &mut dyn VisitorMut) {}
}

impl<T: ?Sized> VisitState for PhantomData<T> {
    const PLAIN: bool = true;
    fn visit_state(&self, _name: &str, _v: &mut dyn Visitor) {}
    fn visit_state_mut(&mut self, _name: &str, _v: &mut dyn VisitorMut) {}
}

macro_rules! tuple {
    ($($t:ident $i:tt),+) => {
        /// Tuples of plain data are plain; a tuple holding state is a child whose entries
        /// are named `0`, `1`, ... by position.
        impl<$($t: VisitState),+> VisitState for ($($t,)+) {
            const PLAIN: bool = $($t::PLAIN)&&+;
            fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
                if Self::PLAIN {
                    return;
                }
                v.module(name, &FnModule(|v: &mut dyn Visitor| {
                    $(self.$i.visit_state(stringify!($i), v);)+
                }))
            }
            fn visit_state_mut(&mut self, name: &str, v: &mut dyn VisitorMut) {
                visit_list_mut(Self::PLAIN, name, v, self)
            }
        }

        impl<$($t: VisitState),+> VisitEntries for ($($t,)+) {
            fn visit_entries(&self, v: &mut dyn Visitor) {
                $(self.$i.visit_state(stringify!($i), v);)+
            }
            fn visit_entries_mut(&mut self, v: &mut dyn VisitorMut) {
                $(self.$i.visit_state_mut(stringify!($i), v);)+
            }
        }
    };
}

tuple!(A 0);
tuple!(A 0, B 1);
tuple!(A 0, B 1, C 2);
tuple!(A 0, B 1, C 2, D 3);
