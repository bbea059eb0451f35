//! Typed access to a module tree: lookups by dotted path (with "did you mean" on a miss),
//! walks over every module (immutable, and mutable by type through `Any` downcasting), and
//! in-place replacement of submodules held in a [`crate::LayerSlot`].
//!
//! The mutable walk is [`Module::visit_mut`] (written by `#[derive(Module)]` through
//! [`crate::VisitState::visit_state_mut`]), which names the same children as
//! [`Module::visit`]. Each typed mutable walk first lists, through the immutable walk, every
//! path where a module of the asked type sits, and fails (naming the paths) when the mutable
//! walk did not reach them all (a module behind a shared `Arc`, a hand-written `visit_mut`
//! that skips a child): a submodule is never silently left out.
use std::any::Any;
use std::collections::BTreeSet;

use stategrad_autograd::{Error, Result};

use crate::module::{Module, Visitor, VisitorMut};
use crate::state_graph::StateNode;
use crate::{Buffer, Layer, Param};

pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Edit distance (Levenshtein) between two names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// `" (did you mean `x`?)"` for the closest of `candidates`, when one is close enough; else
/// a short list of what exists.
pub(crate) fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let best = candidates.iter().map(|c| (distance(name, c), *c)).min();
    match best {
        Some((d, c)) if d <= (name.len() / 3).max(2) => format!("; did you mean `{c}`?"),
        _ if candidates.is_empty() => "; the module has none".to_string(),
        _ => {
            let shown: Vec<&str> = candidates.iter().take(8).copied().collect();
            let more = if candidates.len() > 8 { ", ..." } else { "" };
            format!("; it has {}{more}", shown.join(", "))
        }
    }
}

/// The parameter reachable under `path` (first names and aliases).
pub(crate) fn get_parameter(m: &(impl Module + ?Sized), path: &str) -> Result<Param> {
    lookup(m, path, "get_parameter", "parameter", |n| match n {
        StateNode::Param { param, .. } => Some(param.clone()),
        _ => None,
    })
}

/// The buffer reachable under `path`.
pub(crate) fn get_buffer(m: &(impl Module + ?Sized), path: &str) -> Result<Buffer> {
    lookup(m, path, "get_buffer", "buffer", |n| match n {
        StateNode::Buffer { buffer, .. } => Some(buffer.clone()),
        _ => None,
    })
}

fn lookup<T>(
    m: &(impl Module + ?Sized),
    path: &str,
    op: &'static str,
    kind: &str,
    pick: impl Fn(&StateNode) -> Option<T>,
) -> Result<T> {
    let g = m.state_graph();
    let graph = g.graph();
    if let Some((_, idx)) = g.names().iter().find(|(n, _)| n == path) {
        let node = &graph[*idx];
        return pick(node).ok_or_else(|| Error::argument(op, format!("`{path}` is a {}, not a {kind}", node.kind())));
    }
    let names: Vec<&str> =
        g.names().iter().filter(|(_, i)| pick(&graph[*i]).is_some()).map(|(n, _)| n.as_str()).collect();
    Err(Error::argument(op, format!("no {kind} `{path}` in {}{}", m.type_name(), did_you_mean(path, names))))
}

/// Calls `f(path, module)` for every module of the tree, `root` first (pre-order), through
/// the immutable walk.
pub(crate) fn walk(root: &dyn Module, f: &mut dyn FnMut(&str, &dyn Module)) {
    walk_ordered(root, false, f)
}

/// Like [`walk`], children before their parent (post-order, as PyTorch's `apply`).
pub(crate) fn walk_post(root: &dyn Module, f: &mut dyn FnMut(&str, &dyn Module)) {
    walk_ordered(root, true, f)
}

/// The one immutable walk behind [`walk`] and [`walk_post`]: `post` puts a module after
/// its children.
fn walk_ordered(root: &dyn Module, post: bool, f: &mut dyn FnMut(&str, &dyn Module)) {
    struct Kids<'a> {
        prefix: String,
        post: bool,
        f: &'a mut dyn FnMut(&str, &dyn Module),
    }
    impl Visitor for Kids<'_> {
        fn param(&mut self, _: &str, _: &Param) {}
        fn buffer(&mut self, _: &str, _: &Buffer) {}
        fn module(&mut self, name: &str, module: &dyn Module) {
            let path = join(&self.prefix, name);
            if !self.post {
                (self.f)(&path, module);
            }
            module.visit(&mut Kids { prefix: path.clone(), post: self.post, f: &mut *self.f });
            if self.post {
                (self.f)(&path, module);
            }
        }
    }
    if !post {
        f("", root);
    }
    root.visit(&mut Kids { prefix: String::new(), post, f: &mut *f });
    if post {
        f("", root);
    }
}

/// Calls `f(path, module)` for every module reached by the mutable walk, pre-order.
fn walk_mut(root: &mut dyn Module, f: &mut dyn FnMut(&str, &mut dyn Module) -> Descend) {
    struct Kids<'a> {
        prefix: String,
        f: &'a mut dyn FnMut(&str, &mut dyn Module) -> Descend,
    }
    impl VisitorMut for Kids<'_> {
        fn module(&mut self, name: &str, module: &mut dyn Module) {
            let path = join(&self.prefix, name);
            if (self.f)(&path, module) == Descend::Yes {
                module.visit_mut(&mut Kids { prefix: path, f: &mut *self.f });
            }
        }
    }
    if f("", root) == Descend::Yes {
        root.visit_mut(&mut Kids { prefix: String::new(), f });
    }
}

#[derive(PartialEq, Eq)]
enum Descend {
    Yes,
    No,
}

fn is<T: 'static>(m: &dyn Module) -> bool {
    m.as_any().is_some_and(|a| a.is::<T>())
}

fn short<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// Every path where the immutable walk finds a `T`.
fn paths_of<T: 'static>(root: &dyn Module) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    walk(root, &mut |path, m| {
        if is::<T>(m) {
            out.insert(path.to_string());
        }
    });
    out
}

/// Fails naming every path of `all` that the mutable walk did not reach, except those
/// inside a reached one when `inside_ok` (a replaced module is not searched).
fn check_reached<T: 'static>(
    op: &'static str,
    all: &BTreeSet<String>,
    reached: &BTreeSet<String>,
    inside_ok: bool,
) -> Result<()> {
    let inside = |p: &str| {
        reached.iter().any(|r| r.is_empty() || p.strip_prefix(r.as_str()).is_some_and(|rest| rest.starts_with('.')))
    };
    let missed: Vec<&str> = all.difference(reached).map(String::as_str).filter(|p| !(inside_ok && inside(p))).collect();
    if missed.is_empty() {
        return Ok(());
    }
    Err(Error::State {
        op,
        msg: format!(
            "the {} at {missed:?} cannot be reached mutably (held behind a shared Arc/Rc, or by a \
             module whose visit_mut does not name it)",
            short::<T>()
        ),
    })
}

/// `f(path, &mut T)` for every `T` in the tree (pre-order; a `T` inside a `T` is visited
/// too). Fails before calling `f` when some `T` cannot be reached mutably.
pub(crate) fn for_each_module_mut<T: 'static>(
    root: &mut dyn Module,
    f: &mut dyn FnMut(&str, &mut T) -> Result<()>,
) -> Result<usize> {
    let all = paths_of::<T>(root);
    let mut reached = BTreeSet::new();
    walk_mut(root, &mut |path, m| {
        if is::<T>(m) {
            reached.insert(path.to_string());
        }
        Descend::Yes
    });
    check_reached::<T>("for_each_module_mut", &all, &reached, false)?;
    let mut result = Ok(());
    let mut n = 0;
    walk_mut(root, &mut |path, m| {
        if result.is_err() {
            return Descend::No;
        }
        if let Some(t) = m.as_any_mut().and_then(|a| a.downcast_mut::<T>()) {
            n += 1;
            result = f(path, t);
        }
        Descend::Yes
    });
    result.map(|()| n)
}

/// `f(&mut T)` for the `T` at `path`.
pub(crate) fn with_submodule_mut<T: 'static, R>(
    root: &mut dyn Module,
    path: &str,
    f: impl FnOnce(&mut T) -> R,
) -> Result<R> {
    let mut found: Option<&'static str> = None;
    walk(root, &mut |p, m| {
        if p == path && found.is_none() {
            found = Some(m.type_name());
        }
    });
    let Some(type_name) = found else {
        return Err(missing_module(root, "with_submodule_mut", path));
    };
    let mut f = Some(f);
    let mut out = None;
    walk_mut(root, &mut |p, m| {
        if p != path || out.is_some() {
            let above = p.is_empty() || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('.'));
            return if above && out.is_none() { Descend::Yes } else { Descend::No };
        }
        if let Some(t) = m.as_any_mut().and_then(|a| a.downcast_mut::<T>()) {
            if let Some(f) = f.take() {
                out = Some(f(t));
            }
        }
        Descend::No
    });
    out.ok_or_else(|| {
        Error::argument(
            "with_submodule_mut",
            format!("`{path}` is a {type_name}, not a {} (or cannot be reached mutably)", short::<T>()),
        )
    })
}

/// `f(&module)` for the module at `path`.
pub(crate) fn with_submodule<R>(root: &dyn Module, path: &str, f: impl FnOnce(&dyn Module) -> R) -> Result<R> {
    let mut f = Some(f);
    let mut out = None;
    walk(root, &mut |p, m| {
        if p == path {
            if let Some(f) = f.take() {
                out = Some(f(m));
            }
        }
    });
    out.ok_or_else(|| missing_module(root, "get_submodule", path))
}

/// A clone of the `T` at `path` (state handles are shared with the tree).
pub(crate) fn get_submodule<T: Module + Clone + 'static>(root: &dyn Module, path: &str) -> Result<T> {
    with_submodule(root, path, |m| {
        m.as_any().and_then(|a| a.downcast_ref::<T>()).cloned().ok_or_else(|| {
            Error::argument("get_submodule", format!("`{path}` is a {}, not a {}", m.type_name(), short::<T>()))
        })
    })?
}

fn missing_module(root: &dyn Module, op: &'static str, path: &str) -> Error {
    let mut paths = Vec::new();
    walk(root, &mut |p, _| paths.push(p.to_string()));
    let candidates = paths.iter().filter(|p| !p.is_empty()).map(String::as_str);
    Error::argument(op, format!("no submodule `{path}` in {}{}", root.type_name(), did_you_mean(path, candidates)))
}

/// What [`replace_modules`] calls for each `T`: its path and the module, to the replacement.
pub(crate) type Replacer<'a, T> = dyn FnMut(&str, &T) -> Result<Box<dyn Layer>> + 'a;

/// Replaces every `T` held in a [`LayerSlot`] by `f(path, &T)`. Atomic: every `T` must sit in
/// a slot and every `f` must succeed before anything is replaced.
pub(crate) fn replace_modules<T: 'static>(root: &mut dyn Module, f: &mut Replacer<'_, T>) -> Result<usize> {
    let all = paths_of::<T>(root);
    let mut reached = BTreeSet::new();
    let mut fixed = Vec::new();
    let mut new: Vec<(String, Box<dyn Layer>)> = Vec::new();
    let mut failed = Ok(());
    walk_mut(root, &mut |path, m| {
        if !is::<T>(m) {
            return Descend::Yes;
        }
        reached.insert(path.to_string());
        if m.as_layer_slot().is_none() {
            fixed.push(path.to_string());
            return Descend::No;
        }
        if failed.is_ok() {
            let t = m.as_any().and_then(|a| a.downcast_ref::<T>());
            match t.map(|t| f(path, t)) {
                Some(Ok(layer)) => new.push((path.to_string(), layer)),
                Some(Err(e)) => failed = Err(e),
                None => {}
            }
        }
        Descend::No // what is replaced is not searched
    });
    check_reached::<T>("replace_modules", &all, &reached, true)?;
    if !fixed.is_empty() {
        return Err(Error::State {
            op: "replace_modules",
            msg: format!(
                "the {} at {fixed:?} sit in fields of their own type and cannot hold another; declare \
                 those fields `LayerSlot` (or hold the layers in a Sequential)",
                short::<T>()
            ),
        });
    }
    failed?;
    let n = new.len();
    let mut new = new.into_iter().peekable();
    walk_mut(root, &mut |path, m| {
        if new.peek().is_some_and(|(p, _)| p == path) {
            if let (Some((_, layer)), Some(slot)) = (new.next(), m.as_layer_slot()) {
                slot.replace(layer);
            }
            return Descend::No;
        }
        Descend::Yes
    });
    Ok(n)
}

/// `m` as `&dyn Any` when it is a `T` (used by [`Module::for_each_module`]).
pub(crate) fn downcast<T: 'static>(m: &dyn Module) -> Option<&T> {
    m.as_any().and_then(<dyn Any>::downcast_ref)
}
