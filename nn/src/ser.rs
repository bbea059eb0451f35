//! serde for state dicts: an ordered map from names to tensors (each in the
//! [`SerTensor`] form of the autograd crate: dtype, shape, exact element bits), so a state
//! goes into any serde format (JSON for a tiny model, a binary format for speed).
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use stategrad_autograd::{Device, SerTensor};

use crate::StateDict;

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
