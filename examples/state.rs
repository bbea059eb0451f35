//! The state walkthrough: what each kind of tensor in a model is, and what stategrad does
//! with it. Run with `cargo run --example state`.
//!
//! A model holds a parameter `my_param`, a buffer `my_buffer`, a non-persistent buffer
//! `my_scratch` and a plain tensor `my_tensor` (the names of the well-known PyTorch forum
//! example). Parameters are trained and saved; buffers are saved (if persistent) and moved
//! but never trained; plain tensors are none of these.
//!
//! Then the module-state API research code reaches for next: typed access by path and
//! in-place replacement, gradient and forward hooks, `functional_call`, `freeze`, an EMA
//! copy and gradient clipping.
use stategrad::autograd::{grad, Conv2dParams, DType, Device, Error, Result, Tensor};
use stategrad::nn::functional::mse;
use stategrad::nn::optim::{Optimizer, Sgd, SgdConfig};
use stategrad::nn::{
    clip_grad_norm, functional_call, BatchNorm2d, Buffer, Conv2d, Dropout, Ema, EmaConfig, Forward, FrozenBatchNorm2d,
    Hooked, Linear, Module, Param, Relu, Sequential, SinusoidalPositionalEncoding, Warmup,
};

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

    typed_access_and_replacement()?;
    hooks()?;
    functional_calls()?;
    freezing()?;
    ema_and_clipping()?;
    Ok(())
}

/// Reach state by dotted path; walk the tree by type; replace every BatchNorm2d by a
/// FrozenBatchNorm2d carrying its statistics (a `Sequential` holds its layers in
/// `LayerSlot`s, the fields that can change type).
fn typed_access_and_replacement() -> Result<()> {
    let conv = |i, o| Conv2d::new(i, o, (3, 3), Conv2dParams { padding: (1, 1), ..Default::default() });
    let mut net = Sequential::new()
        .push(conv(3, 8)?)
        .push(BatchNorm2d::new(8)?)
        .push(Relu)
        .push(conv(8, 8)?)
        .push(BatchNorm2d::new(8)?);
    let w = net.get_parameter("0.weight")?;
    println!("\nget_parameter(\"0.weight\"): {w:?}");
    if let Err(e) = net.get_buffer("1.running_maen") {
        println!("a typo: {e}");
    }
    let x = Tensor::randn(&[4, 3, 6, 6], 0.0, 1.0, DType::F32, Device::Cpu)?;
    net.forward(&x)?; // running statistics move
    net.eval();
    let before = net.forward(&x)?;
    net.for_each_module_mut::<BatchNorm2d>(|path, bn| {
        println!("  found BatchNorm2d at {path:?} (momentum {})", bn.momentum);
        Ok(())
    })?;
    let n = net.replace_modules::<BatchNorm2d>(|_, bn| Ok(Box::new(FrozenBatchNorm2d::from_batch_norm(bn)?)))?;
    let same = before.to_vec::<f32>()? == net.forward(&x)?.to_vec::<f32>()?;
    println!(
        "replaced {n} BatchNorm2d by FrozenBatchNorm2d: {} parameters left, eval output identical: {same}",
        net.parameters().len()
    );
    let mut layers = Vec::new();
    net.apply(|path, m| layers.push(format!("{path:?}: {}", m.type_name())));
    println!("apply() visits children first: {layers:?}");
    Ok(())
}

/// Gradient hooks on tensors and parameters; forward hooks on a layer (never state).
fn hooks() -> Result<()> {
    let fc = Hooked::new(Linear::new(4, 2)?);
    let handle = fc.weight.register_hook(|g| Ok(Some(g.clamp(-0.01, 0.01)?)));
    let seen = fc.hooks.register_forward_hook(|input, output| {
        println!("  forward hook: input {:?} -> output {:?}", input.shape(), output.shape());
        Ok(None)
    });
    let x = Tensor::randn(&[3, 4], 0.0, 1.0, DType::F32, Device::Cpu)?;
    let grads = fc.forward(&x)?.sum_all()?.backward()?;
    let max = fc.weight.grad(&grads).map(|g| g.abs()?.max_all()?.item()).transpose()?;
    println!("weight gradient clamped by its hook: max |g| = {max:?}");
    println!("hooks are not state: state_dict {:?}", fc.state_dict().keys().collect::<Vec<_>>());
    handle.remove();
    seen.remove();
    Ok(())
}

/// Run a model with other weights, differentiably (a MAML step), without touching it.
fn functional_calls() -> Result<()> {
    let model = Linear::new(3, 1)?;
    model.to_dtype(DType::F64)?;
    let x = Tensor::randn(&[8, 3], 0.0, 1.0, DType::F64, Device::Cpu)?;
    let y = Tensor::randn(&[8, 1], 0.0, 1.0, DType::F64, Device::Cpu)?;
    let w = model.weight.tensor()?;
    let b = model.bias.as_ref().ok_or_else(|| Error::argument("example", "Linear::new has a bias"))?.tensor()?;
    let inner = functional_call(&model, [("weight", w.clone()), ("bias", b.clone())], |m| mse(&m.forward(&x)?, &y))?;
    let g = grad(&[&inner.output], None, &[&w, &b], true)?; // create_graph: second order
    let step = |t: &Tensor, g: &Option<Tensor>| match g {
        Some(g) => t.sub(&g.mul_scalar(0.1)?),
        None => Ok(t.clone()),
    };
    let adapted = [("weight", step(&w, &g[0])?), ("bias", step(&b, &g[1])?)];
    let outer = functional_call(&model, adapted, |m| mse(&m.forward(&x)?, &y))?;
    let meta = outer.output.backward()?;
    println!(
        "\nMAML: inner loss {:.4}, adapted loss {:.4}, meta-gradient reaches the model's weight: {}",
        inner.output.item()?,
        outer.output.item()?,
        model.weight.grad(&meta).is_some()
    );
    let bn = BatchNorm2d::new(2)?;
    let none: [(&str, Tensor); 0] = [];
    let out =
        functional_call(&bn, none, |m| m.forward(&Tensor::randn(&[4, 2, 3, 3], 1.0, 1.0, DType::F32, Device::Cpu)?))?;
    println!(
        "BatchNorm statistics come back, not applied: {:?}; the module still counts {} batches",
        out.buffers.keys().collect::<Vec<_>>(),
        bn.num_batches_tracked.tensor().item()?
    );
    Ok(())
}

/// `freeze()` stops gradients *and* statistics; `unfreeze()` restores the flags.
fn freezing() -> Result<()> {
    #[derive(Module)]
    struct FineTune {
        backbone: Sequential,
        head: Linear,
    }
    let m = FineTune {
        backbone: Sequential::new()
            .push(Linear::new(4, 4)?)
            .push(stategrad::nn::BatchNorm1d::new(4)?)
            .push(Dropout::new(0.5)?),
        head: Linear::new(4, 1)?,
    };
    m.backbone.freeze();
    let x = Tensor::randn(&[6, 4], 0.0, 1.0, DType::F32, Device::Cpu)?;
    let stats = m.backbone.get_buffer("1.running_mean")?.tensor().to_vec::<f32>()?;
    let loss = m.head.forward(&m.backbone.forward(&x)?)?.sum_all()?;
    let grads = loss.backward()?;
    let moved = m.backbone.get_buffer("1.running_mean")?.tensor().to_vec::<f32>()? != stats;
    println!(
        "\nfrozen backbone: {} of {} parameters get gradients, BN statistics moved: {moved}, model in train mode: {}",
        m.parameters().iter().filter(|p| p.grad(&grads).is_some()).count(),
        m.parameters().len(),
        m.is_training()
    );
    m.backbone.unfreeze()?;
    println!("after unfreeze(): every parameter trains again: {}", m.parameters().iter().all(Param::needs_grad));
    Ok(())
}

/// An EMA copy (buffers only, saved under the model's names) and gradient clipping.
fn ema_and_clipping() -> Result<()> {
    let model = Linear::new(4, 2)?;
    let mut ema = Ema::new(&model, EmaConfig::new(0.999).warmup(Warmup::NumUpdates))?;
    let mut opt = Sgd::new(model.parameters(), SgdConfig::new(0.1))?;
    let x = Tensor::randn(&[8, 4], 0.0, 1.0, DType::F32, Device::Cpu)?;
    for _ in 0..3 {
        let mut grads = model.forward(&x)?.square()?.mean_all()?.backward()?;
        let norm = clip_grad_norm(&mut grads, &model.parameters(), 0.5, 2.0)?;
        opt.step(&grads)?;
        ema.update(&model)?;
        println!("  step: gradient norm {norm:.4} (clipped to 0.5), next EMA decay {:.4}", ema.current_decay());
    }
    println!(
        "EMA: {} parameters, state_dict {:?} (the model's names)",
        ema.parameters().len(),
        ema.state_dict().keys().collect::<Vec<_>>()
    );
    ema.copy_to(&model)?;
    Ok(())
}
