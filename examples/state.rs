//! The state walkthrough: what each kind of tensor in a model is, and what stategrad does
//! with it. Run with `cargo run --example state`.
//!
//! A model holds a parameter `my_param`, a buffer `my_buffer`, a non-persistent buffer
//! `my_scratch` and a plain tensor `my_tensor` (the names of the well-known PyTorch forum
//! example). Parameters are trained and saved; buffers are saved (if persistent) and moved
//! but never trained; plain tensors are none of these.
use stategrad::autograd::{DType, Device, Result, Tensor};
use stategrad::nn::optim::{Optimizer, Sgd, SgdConfig};
use stategrad::nn::{BatchNorm2d, Buffer, FrozenBatchNorm2d, Linear, Module, Param, SinusoidalPositionalEncoding};

#[derive(Module)]
struct MyModel {
    my_param: Param,
    my_buffer: Buffer,
    my_scratch: Buffer,
    my_tensor: Tensor,
}

fn main() -> Result<()> {
    let cpu = Device::Cpu;
    let model = MyModel {
        my_param: Param::new(Tensor::randn(&[1], 0.0, 1.0, DType::F32, cpu)?),
        my_buffer: Buffer::new(Tensor::randn(&[1], 0.0, 1.0, DType::F32, cpu)?),
        my_scratch: Buffer::non_persistent(Tensor::randn(&[1], 0.0, 1.0, DType::F32, cpu)?),
        my_tensor: Tensor::randn(&[1], 0.0, 1.0, DType::F32, cpu)?,
    };

    let names = |v: Vec<(String, Param)>| v.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    println!("parameters():        {:?}", names(model.named_parameters()));
    println!("buffers():           {:?}", model.named_buffers().iter().map(|(n, _)| n).collect::<Vec<_>>());
    println!("state_dict keys:     {:?}", model.state_dict().keys().collect::<Vec<_>>());

    // The optimizer is built from parameters(): it never sees buffers or plain tensors.
    let opt = Sgd::new(model.parameters(), SgdConfig::new(0.1))?;
    let seen: Vec<_> = opt.param_groups()[0].params.iter().map(|p| format!("{p:?}")).collect();
    println!("the optimizer sees:  {seen:?}");

    // to_dtype / to_device move every parameter and buffer in place, nothing else.
    model.to_dtype(DType::F64)?;
    model.to_device(Device::Cpu)?;
    println!(
        "after to_dtype(f64): my_param {}, my_buffer {}, my_scratch {}, my_tensor {} (a plain tensor is not moved)",
        model.my_param.dtype(),
        model.my_buffer.dtype(),
        model.my_scratch.dtype(),
        model.my_tensor.dtype()
    );
    println!("state graph:\n{}", model.state_graph().to_dot());

    // A frozen BatchNorm: every tensor is a buffer, so nothing is trained.
    let frozen = FrozenBatchNorm2d::new(4)?;
    let bn = BatchNorm2d::new(4)?;
    println!(
        "FrozenBatchNorm2d: {} parameters, state_dict {:?} (BatchNorm2d has {} parameters)",
        frozen.parameters().len(),
        frozen.state_dict().keys().collect::<Vec<_>>(),
        bn.parameters().len()
    );

    // A positional encoding: a fixed table, a persistent buffer (saved, never trained).
    let pe = SinusoidalPositionalEncoding::new(16, 8)?;
    println!("positional encoding: {} parameters, buffer {:?}", pe.parameters().len(), pe.pe);

    // Weight tying: two modules share one Param handle; it is listed and saved once.
    #[derive(Module)]
    struct Tied {
        encoder: Linear,
        decoder: Linear,
    }
    let encoder = Linear::with_bias(8, 8, false)?;
    let decoder = Linear { weight: encoder.weight.clone(), bias: None };
    let tied = Tied { encoder, decoder };
    println!(
        "weight tying: parameters {:?}, state_dict {:?}",
        names(tied.named_parameters()),
        tied.state_dict().keys().collect::<Vec<_>>()
    );
    Ok(())
}
