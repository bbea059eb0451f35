//! Layer numerics against hand computations: BatchNorm in train and eval (biased variance
//! to normalise, unbiased for the running update, stats updated only in train and never
//! tracked), FrozenBatchNorm2d equal to an eval BatchNorm2d holding the same values,
//! LayerNorm, Dropout, Embedding, default initialisation bounds, cross-entropy.
use std::sync::Mutex;

use stategrad::autograd::{manual_seed, DType, Device, Tensor};
use stategrad::nn::functional::{cross_entropy, mse, nll, CrossEntropyOptions, NllOptions};
use stategrad::nn::{
    BatchNorm1d, BatchNorm2d, Conv2d, Dropout, Embedding, Forward, FrozenBatchNorm2d, LayerNorm, Linear, Module,
};

/// Tests that draw from the global seeded generator run one at a time.
static RNG: Mutex<()> = Mutex::new(());

fn t64(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, Device::Cpu).unwrap()
}

#[track_caller]
fn assert_near(got: &Tensor, want: &[f64], tol: f64) {
    let g = got.to_f64_vec().unwrap();
    assert_eq!(g.len(), want.len());
    for (a, b) in g.iter().zip(want) {
        assert!((a - b).abs() <= tol * b.abs().max(1.0), "got {g:?}, want {want:?}");
    }
}

#[test]
fn batch_norm_train_and_eval_match_hand_computation() {
    let bn = BatchNorm1d::new(2).unwrap();
    bn.to_dtype(DType::F64).unwrap();
    bn.weight.as_ref().unwrap().set(t64(&[2.0, 1.0], &[2])).unwrap();
    bn.bias.as_ref().unwrap().set(t64(&[0.5, 0.0], &[2])).unwrap();
    // Channel 0 sees 1, 2, 3, 6; channel 1 sees 0, 0, 4, 4.
    let x = t64(&[1.0, 0.0, 2.0, 0.0, 3.0, 4.0, 6.0, 4.0], &[4, 2]).requires_grad(true).unwrap();
    let y = bn.forward(&x).unwrap();
    let (m0, v0, m1, v1): (f64, f64, f64, f64) = (3.0, (4.0 + 1.0 + 0.0 + 9.0) / 4.0, 2.0, 4.0); // biased variances
    let eps = 1e-5f64;
    let want: Vec<f64> = [1.0, 2.0, 3.0, 6.0]
        .iter()
        .zip([0.0, 0.0, 4.0, 4.0])
        .flat_map(|(a, b)| [2.0 * (a - m0) / (v0 + eps).sqrt() + 0.5, (b - m1) / (v1 + eps).sqrt()])
        .collect();
    assert_near(&y, &want, 1e-12);
    assert!(y.is_tracked());
    // Running stats: momentum 0.1, unbiased variance (n = 4), never tracked.
    assert_near(&bn.running_mean.tensor(), &[0.1 * m0, 0.1 * m1], 1e-12);
    assert_near(&bn.running_var.tensor(), &[0.9 + 0.1 * v0 * 4.0 / 3.0, 0.9 + 0.1 * v1 * 4.0 / 3.0], 1e-12);
    assert!(!bn.running_mean.tensor().is_tracked() && !bn.running_var.tensor().is_tracked());
    assert_eq!(bn.num_batches_tracked.tensor().to_vec::<i64>().unwrap(), vec![1]);

    bn.eval();
    let (rm, rv) =
        (bn.running_mean.tensor().to_vec::<f64>().unwrap(), bn.running_var.tensor().to_vec::<f64>().unwrap());
    let y = bn.forward(&x).unwrap();
    let want: Vec<f64> = [1.0, 2.0, 3.0, 6.0]
        .iter()
        .zip([0.0, 0.0, 4.0, 4.0])
        .flat_map(|(a, b)| [2.0 * (a - rm[0]) / (rv[0] + eps).sqrt() + 0.5, (b - rm[1]) / (rv[1] + eps).sqrt()])
        .collect();
    assert_near(&y, &want, 1e-12);
    assert_eq!(bn.running_mean.tensor().to_vec::<f64>().unwrap(), rm, "eval must not update running stats");
    assert_eq!(bn.num_batches_tracked.tensor().to_vec::<i64>().unwrap(), vec![1]);
    // Gradients reach the input and the affine parameters, never the buffers.
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(bn.weight.as_ref().unwrap().grad(&grads).is_some());
    assert_eq!(grads.len(), 3);
}

#[test]
fn frozen_batch_norm_equals_batch_norm_in_eval() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let bn = BatchNorm2d::new(3).unwrap();
    let fbn = FrozenBatchNorm2d::new(3).unwrap();
    let vals = |lo: f64| Tensor::rand(&[3], lo, lo + 1.0, DType::F32, Device::Cpu).unwrap();
    let (w, b, m, v) = (vals(0.5), vals(-0.5), vals(-1.0), vals(0.5));
    bn.weight.as_ref().unwrap().set(w.clone()).unwrap();
    bn.bias.as_ref().unwrap().set(b.clone()).unwrap();
    bn.running_mean.set(m.clone()).unwrap();
    bn.running_var.set(v.clone()).unwrap();
    for (buf, t) in [(&fbn.weight, w), (&fbn.bias, b), (&fbn.running_mean, m), (&fbn.running_var, v)] {
        buf.set(t).unwrap();
    }
    bn.eval();
    let x = Tensor::randn(&[2, 3, 4, 4], 0.0, 2.0, DType::F32, Device::Cpu).unwrap();
    assert_eq!(bn.forward(&x).unwrap().to_vec::<f32>().unwrap(), fbn.forward(&x).unwrap().to_vec::<f32>().unwrap());
    // Frozen: train mode changes nothing, and nothing is a parameter.
    fbn.train();
    assert_eq!(fbn.forward(&x).unwrap().to_vec::<f32>().unwrap(), bn.forward(&x).unwrap().to_vec::<f32>().unwrap());
    assert!(fbn.parameters().is_empty());
    assert!(bn.forward(&Tensor::zeros(&[2, 4, 4, 4], DType::F32, Device::Cpu).unwrap()).is_err());
}

#[test]
fn layer_norm_matches_hand_computation() {
    let ln = LayerNorm::new(&[3]).unwrap();
    ln.to_dtype(DType::F64).unwrap();
    let y = ln.forward(&t64(&[1.0, 2.0, 6.0, 0.0, 0.0, 3.0], &[2, 3])).unwrap();
    let norm = |v: [f64; 3]| {
        let m = v.iter().sum::<f64>() / 3.0;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 3.0;
        v.map(|x| (x - m) / (var + 1e-5).sqrt())
    };
    let want: Vec<f64> = norm([1.0, 2.0, 6.0]).into_iter().chain(norm([0.0, 0.0, 3.0])).collect();
    assert_near(&y, &want, 1e-12);
}

#[test]
fn dropout_is_seeded_scaled_and_identity_in_eval() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let drop = Dropout::new(0.25).unwrap();
    let x = Tensor::ones(&[4000], DType::F32, Device::Cpu).unwrap();
    manual_seed(7);
    let a = drop.forward(&x).unwrap().to_vec::<f32>().unwrap();
    manual_seed(7);
    let b = drop.forward(&x).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(a, b, "same seed, same mask");
    assert!(a.iter().all(|&v| v == 0.0 || v == 1.0 / 0.75));
    let dropped = a.iter().filter(|&&v| v == 0.0).count() as f64 / a.len() as f64;
    assert!((dropped - 0.25).abs() < 0.03, "dropped {dropped}");
    drop.eval();
    assert_eq!(drop.forward(&x).unwrap().to_vec::<f32>().unwrap(), vec![1.0; 4000]);
    assert!(Dropout::new(1.5).is_err());
}

#[test]
fn embedding_picks_rows_and_accumulates_repeated_gradients() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let emb = Embedding::new(4, 2).unwrap();
    emb.weight
        .set(Tensor::from_slice(&[0f32, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], &[4, 2], Device::Cpu).unwrap())
        .unwrap();
    let ids = Tensor::from_slice(&[3i64, 1, 3], &[1, 3], Device::Cpu).unwrap();
    let y = emb.forward(&ids).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), vec![6.0, 7.0, 2.0, 3.0, 6.0, 7.0]);
    let g = emb.weight.grad(&y.sum_all().unwrap().backward().unwrap()).unwrap();
    assert_eq!(g.to_vec::<f32>().unwrap(), vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 2.0, 2.0]);
    assert!(emb.forward(&Tensor::from_slice(&[4i64], &[1], Device::Cpu).unwrap()).is_err());
}

#[test]
fn default_init_is_pytorch_kaiming_uniform_and_seeded() {
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    manual_seed(3);
    let a = Linear::new(50, 40).unwrap();
    manual_seed(3);
    let b = Linear::new(50, 40).unwrap();
    assert_eq!(a.weight.data().to_vec::<f32>().unwrap(), b.weight.data().to_vec::<f32>().unwrap());
    let bound = 1.0 / 50f32.sqrt();
    let w = a.weight.data().to_vec::<f32>().unwrap();
    assert!(w.iter().all(|x| x.abs() <= bound));
    assert!(w.iter().fold(0f32, |m, x| m.max(x.abs())) > 0.95 * bound, "uses the whole range");
    assert!(a.bias.as_ref().unwrap().data().to_vec::<f32>().unwrap().iter().all(|x| x.abs() <= bound));
    let conv = Conv2d::new(3, 8, (3, 3), Default::default()).unwrap();
    let bound = 1.0 / 27f32.sqrt();
    assert!(conv.weight.data().to_vec::<f32>().unwrap().iter().all(|x| x.abs() <= bound));
    assert_eq!(conv.state_dict().keys().collect::<Vec<_>>(), ["weight", "bias"]);
}

#[test]
fn losses_match_hand_computation() {
    let logits = t64(&[1.0, 2.0, 0.5, -1.0, 0.0, 3.0], &[2, 3]);
    let target = Tensor::from_slice(&[1i64, 2], &[2], Device::Cpu).unwrap();
    let log_softmax = |r: [f64; 3]| {
        let lse = r.iter().map(|x| x.exp()).sum::<f64>().ln();
        r.map(|x| x - lse)
    };
    let (l0, l1) = (log_softmax([1.0, 2.0, 0.5]), log_softmax([-1.0, 0.0, 3.0]));
    let plain = -(l0[1] + l1[2]) / 2.0;
    assert_near(&cross_entropy(&logits, &target, &CrossEntropyOptions::default()).unwrap(), &[plain], 1e-12);
    let smooth = -(l0.iter().sum::<f64>() + l1.iter().sum::<f64>()) / 6.0;
    assert_near(
        &cross_entropy(&logits, &target, &CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() }).unwrap(),
        &[0.9 * plain + 0.1 * smooth],
        1e-12,
    );
    assert_near(&nll(&logits.log_softmax(-1).unwrap(), &target, &NllOptions::default()).unwrap(), &[plain], 1e-12);
    assert_near(&mse(&t64(&[1.0, 2.0], &[2]), &t64(&[0.0, 4.0], &[2])).unwrap(), &[2.5], 1e-12);
    // float targets are probabilities and need the logits' shape
    assert!(cross_entropy(&logits, &t64(&[0.0; 3], &[3]), &CrossEntropyOptions::default()).is_err());
}

#[test]
fn layer_constructors_take_pytorchs_device_and_dtype_arguments() {
    use stategrad::autograd::TensorOptions;
    use stategrad::nn::{BatchNorm2d, Conv2d, Embedding, LayerNorm, Linear, Module};
    let f64_cpu = TensorOptions::new().dtype(DType::F64).device(Device::Cpu);
    let dtypes = |m: &dyn Module| m.state_dict().iter().map(|(_, t)| t.dtype()).collect::<Vec<_>>();
    // nn.Linear(3, 2, dtype=torch.float64): every float tensor in f64, whatever the default.
    let fc = Linear::new_in(3, 2, f64_cpu).unwrap();
    assert_eq!(dtypes(&fc), [DType::F64, DType::F64]);
    let conv = Conv2d::new_in(1, 2, (3, 3), Default::default(), f64_cpu).unwrap();
    assert!(dtypes(&conv).iter().all(|&d| d == DType::F64));
    let bn = BatchNorm2d::new_in(4, f64_cpu).unwrap();
    // num_batches_tracked stays an integer, as in PyTorch.
    assert_eq!(dtypes(&bn), [DType::F64, DType::F64, DType::F64, DType::F64, DType::I64]);
    assert_eq!(dtypes(&Embedding::new_in(5, 2, f64_cpu).unwrap()), [DType::F64]);
    assert_eq!(dtypes(&LayerNorm::new_in(&[4], f64_cpu).unwrap()), [DType::F64, DType::F64]);
    // The argument applies to that layer only: the next one is built in the default again.
    assert_eq!(dtypes(&Linear::new(3, 2).unwrap()), [DType::F32, DType::F32]); // this binary keeps the f32 default
                                                                               // A non-float dtype is an error, as torch's is for float layers.
    assert!(Linear::new_in(3, 2, TensorOptions::new().dtype(DType::I64)).is_err());
}
