//! `to_device`: a copy to another device; the gradient is copied back.
use crate::tape::{record, Backward};
use crate::{Device, Result, Tensor};

impl Tensor {
    /// This tensor copied to `device` (the same tensor when already there).
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let out = Tensor::fresh(self.storage().to_device(self.layout(), device)?, self.shape());
        Ok(record(&[self], out, |_| ToDevice { device: self.device() }))
    }
}

struct ToDevice {
    device: Device,
}

impl Backward for ToDevice {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(grad.to_device(self.device)?)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::{Device, Error};
    #[test]
    fn same_device_is_a_no_op_and_missing_devices_are_errors() {
        let a = t64(&[1.0], &[1]);
        assert!(a.to_device(Device::Cpu).unwrap().same_storage(&a));
        #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
        assert!(matches!(a.to_device(Device::Cuda(0)), Err(Error::DeviceUnavailable { .. })));
        let _ = std::any::type_name::<Error>();
    }
}
