//! Structured reports carried by errors: what a state-dict load found ([`LoadReport`]) and
//! where a gradient check failed ([`GradcheckFailure`]). They live here, beside the one
//! [`crate::Error`] enum, so that callers can match on them (`Error::Load { report, .. }`)
//! instead of parsing prose; `nn` and `autograd` re-export them.
use std::fmt;

use crate::DType;

/// A key whose tensor does not fit the module's: expected and found shape and dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// The dotted name.
    pub key: String,
    /// The module's shape.
    pub expected_shape: Vec<usize>,
    /// The state dict's shape.
    pub found_shape: Vec<usize>,
    /// The module's dtype.
    pub expected_dtype: DType,
    /// The state dict's dtype.
    pub found_dtype: DType,
}

/// A key present on one side only, with the closest key of the other side (by edit
/// distance), if one is close.
#[derive(Clone, Debug, PartialEq)]
pub struct UnmatchedKey {
    /// The dotted name.
    pub key: String,
    /// "Did you mean ...?"
    pub suggestion: Option<String>,
}

/// A key renamed on the way in (a prefix stripped or added, a tied alias resolved).
#[derive(Clone, Debug, PartialEq)]
pub struct Renamed {
    /// The key in the state dict or file.
    pub from: String,
    /// The module's key it was loaded as.
    pub to: String,
}

/// A tensor converted to the module's dtype (with `LoadOptions::cast`).
#[derive(Clone, Debug, PartialEq)]
pub struct Cast {
    /// The dotted name.
    pub key: String,
    /// The state dict's dtype.
    pub from: DType,
    /// The module's dtype, which the tensor was converted to.
    pub to: DType,
}

/// A change a module's state migration (`Module::upgrade_state`) made to the incoming state.
#[derive(Clone, Debug, PartialEq)]
pub struct Migrated {
    /// The key changed, added or dropped.
    pub key: String,
    /// What was done and why (`dropped: ...`, `renamed from ...`).
    pub action: String,
}

/// What a `load_state_dict` did and found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// Keys loaded, in the module's order.
    pub loaded: Vec<String>,
    /// Module keys absent from the state dict.
    pub missing: Vec<UnmatchedKey>,
    /// State dict keys the module does not have.
    pub unexpected: Vec<UnmatchedKey>,
    /// Keys whose shape differs (not loaded).
    pub shape_mismatches: Vec<Mismatch>,
    /// Keys whose dtype differs, same shape (not loaded).
    pub dtype_mismatches: Vec<Mismatch>,
    /// Keys renamed on the way in: prefixes stripped or added, tied aliases resolved.
    pub renamed: Vec<Renamed>,
    /// Tensors converted to the module's dtype.
    pub cast: Vec<Cast>,
    /// Shape mismatches skipped by policy: the module kept its own tensor.
    pub skipped: Vec<Mismatch>,
    /// Shape mismatches kept by policy: the module took the state dict's tensor and shape.
    pub resized: Vec<Mismatch>,
    /// Changes made by module migrations (old versions, foreign layouts).
    pub migrated: Vec<Migrated>,
    /// Non-persistent buffers recomputed by their module after materialisation.
    pub recomputed: Vec<String>,
}

impl LoadReport {
    /// True when every key matched and loaded.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.shape_mismatches.is_empty()
            && self.dtype_mismatches.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} keys loaded", self.loaded.len())?;
        self.fmt_actions(f)?;
        self.fmt_problems(f)
    }
}

impl LoadReport {
    /// Writes the actions taken (renamed, cast, skipped, resized, migrated, recomputed).
    pub fn fmt_actions(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T>(f: &mut fmt::Formatter<'_>, what: &str, items: &[T], one: impl Fn(&T) -> String) -> fmt::Result {
            if items.is_empty() {
                return Ok(());
            }
            write!(f, "\n  {what} ({}):", items.len())?;
            items.iter().try_for_each(|i| write!(f, " {};", one(i)))
        }
        list(f, "renamed", &self.renamed, |r| format!("{:?} -> {:?}", r.from, r.to))?;
        list(f, "cast", &self.cast, |c| format!("{:?} {} -> {}", c.key, c.from, c.to))?;
        let shapes = |m: &Mismatch| format!("{:?} {:?} vs {:?}", m.key, m.expected_shape, m.found_shape);
        list(f, "skipped (shape)", &self.skipped, shapes)?;
        list(f, "resized", &self.resized, shapes)?;
        list(f, "migrated", &self.migrated, |m| format!("{:?}: {}", m.key, m.action))?;
        list(f, "recomputed", &self.recomputed, |k| format!("{k:?}"))
    }

    /// Writes the problems only (missing, unexpected, mismatched keys), one list a line.
    pub fn fmt_problems(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = |f: &mut fmt::Formatter<'_>, what: &str, list: &[UnmatchedKey]| -> fmt::Result {
            if list.is_empty() {
                return Ok(());
            }
            write!(f, "\n  {what} ({}):", list.len())?;
            for k in list {
                write!(f, " {:?}", k.key)?;
                if let Some(s) = &k.suggestion {
                    write!(f, " (did you mean {s:?}?)")?;
                }
                write!(f, ";")?;
            }
            Ok(())
        };
        let mismatches = |f: &mut fmt::Formatter<'_>, what: &str, list: &[Mismatch]| -> fmt::Result {
            if list.is_empty() {
                return Ok(());
            }
            write!(f, "\n  {what} ({}):", list.len())?;
            for m in list {
                write!(
                    f,
                    " {:?}: module has {:?} {}, state dict has {:?} {};",
                    m.key, m.expected_shape, m.expected_dtype, m.found_shape, m.found_dtype
                )?;
            }
            Ok(())
        };
        keys(f, "missing keys", &self.missing)?;
        keys(f, "unexpected keys", &self.unexpected)?;
        mismatches(f, "shape mismatches", &self.shape_mismatches)?;
        mismatches(f, "dtype mismatches", &self.dtype_mismatches)
    }
}

/// The worst element of a failed gradient check.
#[derive(Clone, Debug, PartialEq)]
pub struct GradcheckFailure {
    /// Index of the input (among all inputs) whose element failed.
    pub input: usize,
    /// Flat index of the element in that input.
    pub element: usize,
    /// That input's shape.
    pub shape: Vec<usize>,
    /// Which random projection `v` of the output showed it.
    pub projection: usize,
    /// `v^T J` from the backward pass.
    pub analytical: f64,
    /// The central difference.
    pub numerical: f64,
    /// Absolute tolerance used.
    pub atol: f64,
    /// Relative tolerance used.
    pub rtol: f64,
}

impl fmt::Display for GradcheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "input {}, element {} (of shape {:?}), projection {}: analytical {:.10e} vs numerical {:.10e} (atol {}, rtol {})",
            self.input, self.element, self.shape, self.projection, self.analytical, self.numerical, self.atol, self.rtol
        )
    }
}
