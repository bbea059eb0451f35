//! serde for tensors and state dicts. `Tensor` lives in autograd and has no serde impl, so
//! tensors travel as [`SerTensor`] `{ dtype, shape, data }`; float data is stored as IEEE
//! bit patterns, so every value (NaN payloads, -0.0, subnormals) round-trips exactly in any
//! format, JSON included. Use [`tensor_serde`] with `#[serde(with = ...)]` on a `Tensor` field.
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use stategrad_autograd::{DType, Device, Error, Result, Tensor};

use crate::StateDict;

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
            _ => return Err(bad(format!("dtype {} does not match the data's element type", self.dtype))),
        };
        t.map_err(|e| bad(e.to_string()))
    }
}

/// `#[serde(with = "stategrad_nn::tensor_serde")]` for a `Tensor` field (loaded on the CPU).
pub mod tensor_serde {
    use super::*;

    /// Serializes a tensor as a [`SerTensor`].
    pub fn serialize<S: Serializer>(t: &Tensor, s: S) -> std::result::Result<S::Ok, S::Error> {
        SerTensor::from_tensor(t).map_err(serde::ser::Error::custom)?.serialize(s)
    }

    /// Deserializes a [`SerTensor`] into a CPU tensor.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Tensor, D::Error> {
        SerTensor::deserialize(d)?.to_tensor(Device::Cpu).map_err(de::Error::custom)
    }
}

/// A map from name to [`SerTensor`], in order.
impl Serialize for StateDict {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, t) in self.iter() {
            map.serialize_entry(k, &SerTensor::from_tensor(t).map_err(serde::ser::Error::custom)?)?;
        }
        map.end()
    }
}

/// Reads the map [`Serialize`] writes, keeping its order; tensors land on the CPU.
impl<'de> Deserialize<'de> for StateDict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = StateDict;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map from names to tensors")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<StateDict, A::Error> {
                let mut sd = StateDict::new();
                while let Some((k, t)) = map.next_entry::<String, SerTensor>()? {
                    if sd.contains_key(&k) {
                        return Err(de::Error::custom(format!("duplicate key {k:?}")));
                    }
                    sd.insert(k, t.to_tensor(Device::Cpu).map_err(de::Error::custom)?);
                }
                Ok(sd)
            }
        }
        d.deserialize_map(MapVisitor)
    }
}
