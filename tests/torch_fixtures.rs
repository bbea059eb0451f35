//! Acceptance: checkpoints written by PyTorch (`tests/fixtures/torch/`, see its README) load
//! into the same architectures built with stategrad, which reproduce PyTorch's outputs,
//! loss, gradients, running-statistic updates and SGD step. Tolerance: 1e-5 relative for
//! f32 (each element within 1e-5 of the expected tensor's largest magnitude, and within
//! 1e-5 relative of itself where it is not tiny).
use std::path::PathBuf;

use stategrad::autograd::{Conv2dParams, DType, Device, Result, Tensor};
use stategrad::nn::functional::cross_entropy;
use stategrad::nn::optim::{Optimizer, Sgd, SgdConfig};
use stategrad::nn::{
    load_safetensors, BatchNorm2d, Buffer, Conv2d, Embedding, Forward, FrozenBatchNorm2d, LayerNorm, Linear,
    LoadOptions, Module, SinusoidalPositionalEncoding, StateDict,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch").join(name)
}

#[track_caller]
fn assert_close(what: &str, got: &Tensor, expected: &Tensor) {
    check(what, got, expected, true)
}

#[track_caller]
fn assert_close_normwise(what: &str, got: &Tensor, expected: &Tensor) {
    check(what, got, expected, false)
}

#[track_caller]
fn check(what: &str, got: &Tensor, expected: &Tensor, elementwise: bool) {
    assert_eq!(got.shape(), expected.shape(), "{what}: shape");
    let (g, e) = (got.to_f64_vec().unwrap(), expected.to_f64_vec().unwrap());
    let scale = e.iter().fold(0f64, |m, x| m.max(x.abs()));
    for (i, (a, b)) in g.iter().zip(&e).enumerate() {
        let err = (a - b).abs();
        assert!(err <= 1e-5 * scale.max(1e-30), "{what}[{i}]: got {a}, expected {b} (scale {scale})");
        if elementwise && b.abs() > 1e-3 * scale {
            assert!(err <= 1e-5 * b.abs(), "{what}[{i}]: got {a}, expected {b} (relative)");
        }
    }
}

#[derive(Module)]
struct ConvNet {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    fbn2: FrozenBatchNorm2d,
    fc: Linear,
    scratch: Buffer,
}

impl ConvNet {
    fn new() -> Result<ConvNet> {
        Ok(ConvNet {
            conv1: Conv2d::new(1, 4, (3, 3), Conv2dParams { padding: (1, 1), ..Default::default() })?,
            bn1: BatchNorm2d::new(4)?,
            conv2: Conv2d::new(4, 6, (3, 3), Conv2dParams { stride: (2, 2), ..Default::default() })?,
            fbn2: FrozenBatchNorm2d::new(6)?,
            fc: Linear::new(6 * 4 * 4, 10)?,
            scratch: Buffer::non_persistent(Tensor::arange(0, 10, DType::F32, Device::Cpu)?),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.bn1.forward(&self.conv1.forward(x)?)?.relu()?;
        let x = self.fbn2.forward(&self.conv2.forward(&x)?)?.relu()?;
        self.fc.forward(&x.flatten(1, -1)?)
    }
}

#[derive(Module)]
struct SeqModel {
    emb: Embedding,
    pe: Buffer,
    norm: LayerNorm,
    proj: Linear,
    head: Linear,
}

impl SeqModel {
    fn new() -> Result<SeqModel> {
        Ok(SeqModel {
            emb: Embedding::new(20, 8)?,
            pe: Buffer::new(SinusoidalPositionalEncoding::table(16, 8)?),
            norm: LayerNorm::new(&[8])?,
            proj: Linear::new(8, 8)?,
            head: Linear::new(8, 3)?,
        })
    }

    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let seq = ids.shape()[1];
        let x = self.emb.forward(ids)?.add(&self.pe.tensor().narrow(0, 0, seq)?)?;
        let x = self.proj.forward(&self.norm.forward(&x)?)?.gelu()?;
        self.head.forward(&x.mean(1, false)?)
    }
}

fn io(name: &str) -> StateDict {
    load_safetensors(fixture(name)).unwrap()
}

fn get<'a>(sd: &'a StateDict, key: &str) -> &'a Tensor {
    sd.get(key).unwrap_or_else(|| panic!("fixture lacks {key}"))
}

#[test]
fn convnet_loads_strictly_with_pytorch_names() {
    let net = ConvNet::new().unwrap();
    let report = net.load_safetensors(fixture("convnet.safetensors"), true).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.loaded.len(), 15);
    // The non-persistent buffer is not in the file and not expected there.
    assert!(!net.state_dict().contains_key("scratch"));
    assert_eq!(net.bn1.num_batches_tracked.dtype(), DType::I64);
}

#[test]
fn convnet_reproduces_eval_train_loss_grads_running_stats_and_sgd_step() {
    let net = ConvNet::new().unwrap();
    net.load_safetensors(fixture("convnet.safetensors"), true).unwrap();
    let io = io("convnet_io.safetensors");
    let x = get(&io, "input");

    net.eval();
    let running_before = net.bn1.running_mean.tensor();
    assert_close("output_eval", &net.forward(x).unwrap(), get(&io, "output_eval"));
    assert_eq!(net.bn1.running_mean.tensor().to_vec::<f32>().unwrap(), running_before.to_vec::<f32>().unwrap());

    net.train();
    let out = net.forward(x).unwrap();
    assert_close("output_train", &out, get(&io, "output_train"));
    let loss = cross_entropy(&out, get(&io, "target"), &Default::default()).unwrap();
    assert_close("loss_train", &loss.reshape(&[1]).unwrap(), get(&io, "loss_train"));
    for key in ["running_mean", "running_var"] {
        let b = net.named_buffers().into_iter().find(|(n, _)| n == &format!("bn1.{key}")).unwrap().1;
        assert!(!b.tensor().is_tracked());
        assert_close(key, &b.tensor(), get(&io, &format!("after_train_forward.bn1.{key}")));
    }
    assert_eq!(
        net.bn1.num_batches_tracked.tensor().to_vec::<i64>().unwrap(),
        get(&io, "after_train_forward.bn1.num_batches_tracked").to_vec::<i64>().unwrap()
    );

    let grads = loss.backward().unwrap();
    assert_close_normwise("grad conv1.weight", &net.conv1.weight.grad(&grads).unwrap(), get(&io, "grad.conv1.weight"));
    assert_close_normwise(
        "grad bn1.weight",
        &net.bn1.weight.as_ref().unwrap().grad(&grads).unwrap(),
        get(&io, "grad.bn1.weight"),
    );
    assert_close_normwise("grad fc.weight", &net.fc.weight.grad(&grads).unwrap(), get(&io, "grad.fc.weight"));

    let fbn_before = net.fbn2.weight.tensor().to_vec::<f32>().unwrap();
    let mut sgd = Sgd::new(net.parameters(), SgdConfig::new(0.1)).unwrap();
    sgd.step(&grads).unwrap();
    assert_close("after_sgd conv1.weight", &net.conv1.weight.data(), get(&io, "after_sgd.conv1.weight"));
    assert_eq!(net.fbn2.weight.tensor().to_vec::<f32>().unwrap(), fbn_before);
    assert_eq!(fbn_before, get(&io, "after_sgd.fbn2.weight").to_vec::<f32>().unwrap());
}

#[test]
fn seqmodel_reproduces_eval_output_and_its_positional_table() {
    let model = SeqModel::new().unwrap();
    let report = model.load_safetensors(fixture("seqmodel.safetensors"), true).unwrap();
    assert!(report.is_clean(), "{report}");
    let keys: Vec<String> = model.state_dict().keys().map(String::from).collect();
    assert_eq!(
        keys,
        ["pe", "emb.weight", "norm.weight", "norm.bias", "proj.weight", "proj.bias", "head.weight", "head.bias"]
    );
    assert_close("pe", &SinusoidalPositionalEncoding::table(16, 8).unwrap(), &model.pe.tensor());
    model.eval();
    let io = io("seqmodel_io.safetensors");
    assert_close("output_eval", &model.forward(get(&io, "input_ids")).unwrap(), get(&io, "output_eval"));
}

#[test]
fn half_precision_convnets_load_with_the_cast_option_and_reproduce_their_outputs() {
    let io = io("convnet_half_io.safetensors");
    for (file, half, expected) in [
        ("convnet_f16.safetensors", DType::F16, "output_eval_f16_weights"),
        ("convnet_bf16.safetensors", DType::BF16, "output_eval_bf16_weights"),
    ] {
        let net = ConvNet::new().unwrap();
        // Without the cast option a half file does not fit an f32 model, and nothing changes.
        let before = net.conv1.weight.data().to_vec::<f32>().unwrap();
        let err = net.load_safetensors(fixture(file), true).unwrap_err();
        match &err {
            stategrad::autograd::Error::Load { report, .. } => assert_eq!(report.dtype_mismatches.len(), 14, "{err}"),
            other => panic!("expected a load error, got {other}"),
        }
        assert_eq!(net.conv1.weight.data().to_vec::<f32>().unwrap(), before);

        let report = net.load_safetensors_with(fixture(file), &LoadOptions::default().cast(true)).unwrap();
        assert!(report.is_clean(), "{report}");
        assert_eq!(report.cast.len(), 14, "every float tensor; num_batches_tracked stays int64");
        assert!(report.cast.iter().all(|c| c.from == half && c.to == DType::F32));
        assert_eq!(net.conv1.weight.dtype(), DType::F32);
        net.eval();
        assert_close(expected, &net.forward(get(&io, "input")).unwrap(), get(&io, expected));
    }
}

#[derive(Module)]
struct Layer1 {
    bn1: FrozenBatchNorm2d,
}

#[derive(Module)]
struct Backbone {
    layer1: Layer1,
}

#[test]
fn batchnorm_state_loads_strictly_into_frozen_batchnorm_and_reproduces_its_output() {
    let model = Backbone { layer1: Layer1 { bn1: FrozenBatchNorm2d::new(6).unwrap() } };
    let report = model.load_safetensors(fixture("bn_state.safetensors"), true).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.loaded.len(), 4);
    assert_eq!(report.migrated.len(), 1, "{report}");
    assert_eq!(report.migrated[0].key, "layer1.bn1.num_batches_tracked");
    assert!(report.unexpected.is_empty(), "migrated, not unexpected");
    let io = io("bn_state_io.safetensors");
    let out = model.layer1.bn1.forward(get(&io, "input")).unwrap();
    assert_close("output_frozen", &out, get(&io, "output_frozen"));
}

#[test]
fn data_parallel_prefixed_convnet_loads_with_the_prefix_option() {
    let net = ConvNet::new().unwrap();
    let err = net.load_safetensors(fixture("convnet_ddp_prefixed.safetensors"), true).unwrap_err();
    assert!(err.to_string().contains("module.conv1.weight"), "{err}");
    let opts = LoadOptions::default().strip_prefix("module.");
    let report = net.load_safetensors_with(fixture("convnet_ddp_prefixed.safetensors"), &opts).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.renamed.len(), 15);
    assert!(report.renamed.iter().all(|r| r.from == format!("module.{}", r.to)));
    // The same weights as the unprefixed file: the same eval output.
    let io = io("convnet_io.safetensors");
    net.eval();
    assert_close("output_eval", &net.forward(get(&io, "input")).unwrap(), get(&io, "output_eval"));
}
