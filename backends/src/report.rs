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
        self.fmt_problems(f)
    }
}

impl LoadReport {
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
