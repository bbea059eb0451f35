//! `DType`: the element types a storage can hold, and the `Element` trait tying each to Rust.
use std::fmt;

/// The element type of a tensor. Mixing dtypes in one op is an error, never a silent cast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DType {
    /// 32-bit float: training.
    F32,
    /// 64-bit float: gradient checks.
    F64,
    /// 64-bit signed integer: labels and indices (PyTorch's `int64`).
    I64,
    /// IEEE 754 half precision (PyTorch's `float16`): a storage dtype for checkpoints,
    /// casts and `to_dtype`; CPU kernels compute through f32.
    F16,
    /// bfloat16 (PyTorch's `bfloat16`): as [`DType::F16`].
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    /// True for floating-point dtypes (the only ones that can require grad).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// True for the half-precision storage dtypes ([`DType::F16`], [`DType::BF16`]).
    pub fn is_half(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }

    /// The lower-case name PyTorch prints (`float32`, `float64`, `int64`, `float16`, `bfloat16`).
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Rust type that a storage can hold: `f32`, `f64`, `i64`, `half::f16`, `half::bf16`.
pub trait Element: Copy + Send + Sync + PartialOrd + fmt::Debug + Default + 'static {
    /// The matching dtype.
    const DTYPE: DType;
    /// Converts from f64 (truncating toward zero for integers).
    fn from_f64(v: f64) -> Self;
    /// Converts to f64.
    fn to_f64(self) -> f64;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}

impl Element for i64 {
    const DTYPE: DType = DType::I64;
    fn from_f64(v: f64) -> Self {
        v as i64
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
    fn from_f64(v: f64) -> Self {
        half::f16::from_f64(v)
    }
    fn to_f64(self) -> f64 {
        half::f16::to_f64(self)
    }
}

impl Element for half::bf16 {
    const DTYPE: DType = DType::BF16;
    fn from_f64(v: f64) -> Self {
        half::bf16::from_f64(v)
    }
    fn to_f64(self) -> f64 {
        half::bf16::to_f64(self)
    }
}

/// Moving typed vectors in and out of a [`crate::CpuStorage`].
pub trait HostElement: Element + crate::Pod {
    /// Wraps a vector.
    fn into_storage(v: Vec<Self>) -> crate::CpuStorage;
    /// The slice, when the storage holds this type.
    fn slice(s: &crate::CpuStorage) -> Option<&[Self]>;
    /// The writable slice, when the storage holds this type in memory it owns (not a view
    /// of a mapped file).
    fn slice_mut(s: &mut crate::CpuStorage) -> Option<&mut [Self]>;
}

macro_rules! host_element {
    ($($t:ty => $v:ident),*) => {$(
        impl HostElement for $t {
            fn into_storage(v: Vec<Self>) -> crate::CpuStorage {
                crate::CpuStorage::$v(v.into())
            }
            fn slice(s: &crate::CpuStorage) -> Option<&[Self]> {
                match s {
                    crate::CpuStorage::$v(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(s: &mut crate::CpuStorage) -> Option<&mut [Self]> {
                match s {
                    crate::CpuStorage::$v(v) => v.as_mut_slice(),
                    _ => None,
                }
            }
        }
    )*};
}
host_element!(f32 => F32, f64 => F64, i64 => I64, half::f16 => F16, half::bf16 => BF16);
