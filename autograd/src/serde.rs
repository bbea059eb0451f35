//! serde for tensors: a tensor travels as [`SerTensor`] `{ dtype, shape, data }`, with
//! float data stored as IEEE bit patterns, so every value (NaN payloads, -0.0, subnormals)
//! round-trips exactly in any format, JSON included. Deserialized tensors land on the CPU,
//! untracked.
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use stategrad_backends::half::{bf16, f16};
use stategrad_backends::{DType, Device, Error, Result};

use crate::Tensor;

/// The element data of a [`SerTensor`], row-major.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SerData {
    /// f32 values as `f32::to_bits`.
    F32(Vec<u32>),
    /// f64 values as `f64::to_bits`.
    F64(Vec<u64>),
    /// i64 values.
    I64(Vec<i64>),
    /// f16 values as `f16::to_bits`.
    F16(Vec<u16>),
    /// bf16 values as `bf16::to_bits`.
    BF16(Vec<u16>),
}

/// A tensor in serde form: dtype, shape and the exact element data (on the host).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SerTensor {
    /// The element type.
    pub dtype: DType,
    /// The shape.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: SerData,
}

impl SerTensor {
    /// Copies `t` to the host in serde form.
    pub fn from_tensor(t: &Tensor) -> Result<SerTensor> {
        let data = match t.dtype() {
            DType::F32 => SerData::F32(t.to_vec::<f32>()?.into_iter().map(f32::to_bits).collect()),
            DType::F64 => SerData::F64(t.to_vec::<f64>()?.into_iter().map(f64::to_bits).collect()),
            DType::I64 => SerData::I64(t.to_vec::<i64>()?),
            DType::F16 => SerData::F16(t.to_vec::<f16>()?.into_iter().map(f16::to_bits).collect()),
            DType::BF16 => SerData::BF16(t.to_vec::<bf16>()?.into_iter().map(bf16::to_bits).collect()),
        };
        Ok(SerTensor { dtype: t.dtype(), shape: t.shape().to_vec(), data })
    }

    /// The tensor on `device`; fails when dtype, shape and data disagree.
    pub fn to_tensor(&self, device: Device) -> Result<Tensor> {
        let bad = |msg: String| Error::Format { path: "<serde tensor>".into(), msg };
        let t = match (&self.data, self.dtype) {
            (SerData::F32(v), DType::F32) => {
                Tensor::from_vec(v.iter().map(|&b| f32::from_bits(b)).collect::<Vec<_>>(), &self.shape, device)
            }
            (SerData::F64(v), DType::F64) => {
                Tensor::from_vec(v.iter().map(|&b| f64::from_bits(b)).collect::<Vec<_>>(), &self.shape, device)
            }
            (SerData::I64(v), DType::I64) => Tensor::from_vec(v.clone(), &self.shape, device),
            (SerData::F16(v), DType::F16) => {
                Tensor::from_vec(v.iter().map(|&b| f16::from_bits(b)).collect::<Vec<_>>(), &self.shape, device)
            }
            (SerData::BF16(v), DType::BF16) => {
                Tensor::from_vec(v.iter().map(|&b| bf16::from_bits(b)).collect::<Vec<_>>(), &self.shape, device)
            }
            _ => return Err(bad(format!("dtype {} does not match the data's element type", self.dtype))),
        };
        t.map_err(|e| bad(e.to_string()))
    }
}

/// Serializes the tensor's dtype, shape and exact data (copied to the host; the tape is not
/// serialized).
impl Serialize for Tensor {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        SerTensor::from_tensor(self).map_err(serde::ser::Error::custom)?.serialize(s)
    }
}

/// Reads what [`Serialize`] wrote into an untracked CPU tensor; inconsistent dtype, shape
/// and data are an error.
impl<'de> Deserialize<'de> for Tensor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Tensor, D::Error> {
        SerTensor::deserialize(d)?.to_tensor(Device::Cpu).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use crate::{DType, Device, Tensor};

    #[test]
    fn json_round_trip_is_exact() {
        let odd = [0.1f64, -0.0, f64::MIN_POSITIVE / 3.0, f64::MAX, 1.0 / 3.0, f64::NAN];
        let t = Tensor::from_slice(&odd, &[2, 3], Device::Cpu).unwrap().t().unwrap(); // strided
        let back: Tensor = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back.shape(), &[3, 2]);
        let (a, b) = (t.to_vec::<f64>().unwrap(), back.to_vec::<f64>().unwrap());
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        let i = Tensor::from_slice(&[i64::MIN, 7], &[2], Device::Cpu).unwrap();
        let back: Tensor = serde_json::from_str(&serde_json::to_string(&i).unwrap()).unwrap();
        assert_eq!(back.to_vec::<i64>().unwrap(), vec![i64::MIN, 7]);
        let f = Tensor::full(&[], 1.5, DType::F32, Device::Cpu).unwrap();
        let back: Tensor = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!((back.dtype(), back.shape().len(), back.item().unwrap()), (DType::F32, 0, 1.5));
    }

    #[test]
    fn inconsistent_input_is_an_error() {
        let bad = r#"{"dtype":"F32","shape":[3],"data":{"f32":[0,0]}}"#;
        assert!(serde_json::from_str::<Tensor>(bad).is_err());
        let bad = r#"{"dtype":"F64","shape":[1],"data":{"f32":[0]}}"#;
        assert!(serde_json::from_str::<Tensor>(bad).is_err());
    }
}
