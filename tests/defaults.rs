//! The process-wide default dtype and device (one test: it changes global state, so it has
//! this binary to itself), and the scoped override on top of it.
use stategrad::autograd::{default_device, default_dtype, set_default_device, set_default_dtype};
use stategrad::nn::{BatchNorm2d, Embedding, LayerNorm, Linear, Module, SinusoidalPositionalEncoding};
use stategrad::prelude::*;

#[test]
fn defaults_reach_constructors_and_layers() {
    assert_eq!((default_dtype(), default_device()), (DType::F32, Device::Cpu), "PyTorch's initial defaults");
    // torch.set_default_dtype(torch.float64)
    set_default_dtype(DType::F64).unwrap();
    assert_eq!(Tensor::zeros(&[2], None, None).unwrap().dtype(), DType::F64);
    assert_eq!(Tensor::randn(&[2], 0.0, 1.0, None, None).unwrap().dtype(), DType::F64);
    assert_eq!(Tensor::new(&[1.0, 2.0], &[2]).unwrap().dtype(), DType::F64);
    assert_eq!(Tensor::arange(0, 3, None, None).unwrap().dtype(), DType::I64, "integer arange stays int64");
    let lin = Linear::new(3, 2).unwrap();
    assert_eq!(lin.weight.dtype(), DType::F64);
    let bn = BatchNorm2d::new(4).unwrap();
    let dtypes: Vec<(String, DType)> = bn.state_dict().iter().map(|(k, t)| (k.to_string(), t.dtype())).collect();
    assert!(
        dtypes.iter().all(|(k, d)| *d == if k == "num_batches_tracked" { DType::I64 } else { DType::F64 }),
        "{dtypes:?}"
    );
    assert_eq!(LayerNorm::new(&[4]).unwrap().weight.dtype(), DType::F64);
    assert_eq!(Embedding::new(5, 3).unwrap().weight.dtype(), DType::F64);
    assert_eq!(SinusoidalPositionalEncoding::new(4, 2).unwrap().pe.dtype(), DType::F64);
    // an explicit dtype still wins, and a scope overrides the process-wide default
    assert_eq!(Tensor::zeros(&[2], DType::F32, None).unwrap().dtype(), DType::F32);
    let f32_lin = TensorOptions::new().dtype(DType::F32).scope(|| Linear::new(3, 2)).unwrap();
    assert_eq!(f32_lin.weight.dtype(), DType::F32);
    assert_eq!(default_dtype(), DType::F64, "the scope ended");
    // other threads see the process-wide default, not this thread's scope
    TensorOptions::new()
        .dtype(DType::F32)
        .scope(|| {
            let other = std::thread::spawn(default_dtype).join().unwrap();
            assert_eq!((default_dtype(), other), (DType::F32, DType::F64));
            Ok(())
        })
        .unwrap();
    // integer defaults are refused (torch.set_default_dtype accepts floats only)
    assert!(matches!(set_default_dtype(DType::I64), Err(Error::DType { .. })));
    set_default_dtype(DType::F32).unwrap();

    // torch.set_default_device(...): constructors and layers build there; a device that is
    // not compiled in (or absent) makes them fail with an error naming it, not build on the CPU
    let gpu = Device::Wgpu(0);
    set_default_device(gpu);
    let made = Tensor::zeros(&[2], None, None);
    let layer = Linear::new(3, 2);
    set_default_device(Device::Cpu);
    match made {
        Ok(t) => {
            assert_eq!(t.device(), gpu);
            assert_eq!(layer.unwrap().weight.device(), gpu);
        }
        Err(e) => {
            assert!(matches!(e, Error::DeviceUnavailable { device, .. } if device == gpu), "{e}");
            assert!(layer.is_err());
        }
    }
    let scoped = TensorOptions::new().device(gpu).scope(|| Tensor::ones(&[1], None, None));
    assert!(scoped.map(|t| t.device() == gpu).unwrap_or(true));
    assert_eq!(Tensor::ones(&[1], None, None).unwrap().device(), Device::Cpu);
}
