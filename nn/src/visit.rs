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

use crate::module::derive_support::{AsDynModule, FnModule};
use crate::{Buffer, Module, Param, Training, Visitor};

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
}

impl VisitState for Param {
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        v.param(name, self)
    }
}

impl VisitState for Buffer {
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        v.buffer(name, self)
    }
}

impl VisitState for Training {
    fn visit_state(&self, _name: &str, v: &mut dyn Visitor) {
        v.training(self)
    }
}

// Not recommended in diagnostics: an error then names the missing `VisitState` itself
// (with the note above) instead of listing every module type of the crate.
#[diagnostic::do_not_recommend]
impl<M: Module + ?Sized> VisitState for M {
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        v.module(name, &AsDynModule(self))
    }
}

impl<T: VisitState> VisitState for Option<T> {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        if let Some(x) = self {
            x.visit_state(name, v)
        }
    }
}

impl<T: VisitState + ?Sized> VisitState for Arc<T> {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        (**self).visit_state(name, v)
    }
}

impl<T: VisitState + ?Sized> VisitState for Rc<T> {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        (**self).visit_state(name, v)
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

impl<T: VisitState> VisitState for [T] {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        visit_list(name, v, self.iter().enumerate().map(|(i, x)| (i.to_string(), x)))
    }
}

impl<T: VisitState, const N: usize> VisitState for [T; N] {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        self[..].visit_state(name, v)
    }
}

impl<T: VisitState> VisitState for Vec<T> {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        self[..].visit_state(name, v)
    }
}

impl<T: VisitState> VisitState for VecDeque<T> {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        visit_list(name, v, self.iter().enumerate().map(|(i, x)| (i.to_string(), x)))
    }
}

impl<T: VisitState> VisitState for BTreeMap<String, T> {
    const PLAIN: bool = T::PLAIN;
    fn visit_state(&self, name: &str, v: &mut dyn Visitor) {
        visit_list(name, v, self.iter().map(|(k, x)| (k.clone(), x)))
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
}

macro_rules! plain {
    ($($t:ty),* $(,)?) => {$(
        impl VisitState for $t {
            const PLAIN: bool = true;
            fn visit_state(&self, _name: &str, _v: &mut dyn Visitor) {}
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
}

impl<T: ?Sized> VisitState for PhantomData<T> {
    const PLAIN: bool = true;
    fn visit_state(&self, _name: &str, _v: &mut dyn Visitor) {}
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
        }
    };
}

tuple!(A 0);
tuple!(A 0, B 1);
tuple!(A 0, B 1, C 2);
tuple!(A 0, B 1, C 2, D 3);
