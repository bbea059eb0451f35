//! The tape's contract, tested by behaviour: what is recorded (counted in live nodes),
//! what is freed, where gradients go, and that gradcheck itself can fail.
//!
//! Every test takes `LOCK`: the live-node counter is process-wide and tests run on
//! parallel threads.
use std::sync::Mutex;

use stategrad::autograd::{
    apply_custom, enable_grad, grad, gradcheck, is_grad_enabled, live_nodes, no_grad, set_anomaly_enabled,
    with_no_grad, BackwardOptions, CustomOp, DType, Device, Error, Grads, Result, Tensor,
};

static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, Device::Cpu).unwrap()
}

fn leaf(v: &[f64], shape: &[usize]) -> Tensor {
    t(v, shape).requires_grad(true).unwrap()
}

#[test]
fn only_ops_touching_tracked_data_are_recorded() {
    let _l = lock();
    let w = leaf(&[0.5, -1.0, 2.0], &[3]); // a parameter
    let buffer = t(&[1.0, 2.0, 3.0], &[3]); // a buffer / plain tensor
    let before = live_nodes();
    // three ops on untracked data: none recorded
    let scaled = buffer.mul_scalar(2.0).unwrap().exp().unwrap().log().unwrap();
    assert!(!scaled.is_tracked());
    assert_eq!(live_nodes(), before);
    // two ops that touch w: recorded
    let y = scaled.mul(&w).unwrap().sum_all().unwrap();
    assert!(y.is_tracked());
    assert_eq!(live_nodes(), before + 2);
    let g = y.backward().unwrap();
    assert_eq!(g.len(), 1, "gradients never reach untracked tensors");
    let gw = g.get(&w).unwrap().to_vec::<f64>().unwrap();
    assert!(gw.iter().zip([2.0, 4.0, 6.0]).all(|(a, b)| (a - b).abs() < 1e-12), "{gw:?}");
    assert!(g.get(&buffer).is_none());
    drop((y, scaled));
    assert_eq!(live_nodes(), before, "the graph dies with its outputs");
}

#[test]
fn no_grad_records_nothing_and_enable_grad_reenables() {
    let _l = lock();
    let w = leaf(&[1.0, 2.0], &[2]);
    let before = live_nodes();
    let y = {
        let _g = no_grad();
        assert!(!is_grad_enabled());
        w.mul(&w).unwrap().sum_all().unwrap()
    };
    assert!(is_grad_enabled());
    assert!(!y.is_tracked());
    assert_eq!(live_nodes(), before);
    let z = with_no_grad(|| w.exp().unwrap());
    assert!(!z.is_tracked());
    let inner = with_no_grad(|| {
        let _e = enable_grad();
        w.exp().unwrap()
    });
    assert!(inner.is_tracked());
    assert_eq!(live_nodes(), before + 1);
    let err = y.backward().unwrap_err();
    assert!(matches!(err, Error::NotDifferentiable { .. }), "{err}");
}

#[test]
fn detach_cuts_the_graph() {
    let _l = lock();
    let w = leaf(&[3.0], &[1]);
    let v = leaf(&[2.0], &[1]);
    let y = w.mul(&w).unwrap().detach().mul(&v).unwrap().sum_all().unwrap();
    let g = y.backward().unwrap();
    assert!(g.get(&w).is_none(), "no gradient through detach");
    assert_eq!(g.get(&v).unwrap().to_vec::<f64>().unwrap(), vec![9.0]);
}

#[test]
fn integer_tensors_and_non_differentiable_ops_stay_off_the_tape() {
    let _l = lock();
    let labels = Tensor::from_slice(&[1i64, 0, 2], &[3], Device::Cpu).unwrap();
    assert!(matches!(labels.requires_grad(true), Err(Error::DType { op: "requires_grad", .. })));
    let w = leaf(&[0.1, 0.9, 0.3, 0.7, 0.2, 0.5], &[3, 2]);
    let before = live_nodes();
    let am = w.argmax(1, false).unwrap();
    let hot = labels.one_hot(3, DType::F64).unwrap();
    let cmp = w.gt(&t(&[0.5], &[1])).unwrap();
    assert!(!am.is_tracked() && !hot.is_tracked() && !cmp.is_tracked());
    assert_eq!(live_nodes(), before);
    assert!(matches!(cmp.sum_all().unwrap().backward(), Err(Error::NotDifferentiable { .. })));
}

#[test]
fn forward_passes_without_backward_do_not_leak() {
    let _l = lock();
    let w1 = Tensor::randn(&[8, 16], 0.0, 0.3, DType::F32, Device::Cpu).unwrap().requires_grad(true).unwrap();
    let w2 = Tensor::randn(&[16, 4], 0.0, 0.3, DType::F32, Device::Cpu).unwrap().requires_grad(true).unwrap();
    let x = Tensor::randn(&[5, 8], 0.0, 1.0, DType::F32, Device::Cpu).unwrap();
    let before = live_nodes();
    for _ in 0..10_000 {
        let h = x.matmul(&w1).unwrap().relu().unwrap();
        let y = h.matmul(&w2).unwrap().log_softmax(1).unwrap().mean_all().unwrap();
        assert!(y.is_tracked());
    }
    assert_eq!(live_nodes(), before);
}

#[test]
fn backward_frees_saved_tensors_unless_retained() {
    let _l = lock();
    let w = leaf(&[1.0, 2.0], &[2]);
    let y = w.exp().unwrap().sum_all().unwrap();
    let g1 = y.backward_opts(&t(&[1.0], &[]), BackwardOptions { retain_graph: true, create_graph: false }).unwrap();
    let g2 = y.backward().unwrap();
    assert_eq!(g1.get(&w).unwrap().to_vec::<f64>().unwrap(), g2.get(&w).unwrap().to_vec::<f64>().unwrap());
    let err = y.backward().unwrap_err().to_string();
    assert!(err.contains("already freed") && err.contains("retain_graph"), "{err}");
}

#[test]
fn a_100k_op_chain_backpropagates_and_drops_without_recursion() {
    let _l = lock();
    let before = live_nodes();
    let x = leaf(&[1.0], &[1]);
    let mut y = x.clone();
    for _ in 0..100_000 {
        y = y.affine(1.0001, 0.0001).unwrap();
    }
    assert_eq!(live_nodes(), before + 100_000);
    let g = y.sum_all().unwrap().backward().unwrap();
    let expected = 1.0001f64.powi(100_000);
    let got = g.get(&x).unwrap().item().unwrap();
    assert!((got / expected - 1.0).abs() < 1e-9, "{got} vs {expected}");
    drop(y);
    assert_eq!(live_nodes(), before);
}

#[test]
fn gradients_of_broadcast_inputs_have_the_input_shape() {
    let _l = lock();
    let a = leaf(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let b = leaf(&[10.0, 20.0, 30.0], &[3]);
    let c = leaf(&[1.0, 2.0], &[2, 1]);
    let g = a.mul(&b).unwrap().add(&c).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&b).unwrap().shape(), &[3]);
    assert_eq!(g.get(&b).unwrap().to_vec::<f64>().unwrap(), vec![5.0, 7.0, 9.0]);
    assert_eq!(g.get(&c).unwrap().shape(), &[2, 1]);
    assert_eq!(g.get(&c).unwrap().to_vec::<f64>().unwrap(), vec![3.0, 3.0]);
}

#[test]
fn grad_reaches_intermediate_tensors_and_double_backward_works() {
    let _l = lock();
    let x = leaf(&[2.0, -1.0], &[2]);
    let h = x.mul_scalar(3.0).unwrap();
    let y = h.square().unwrap().sum_all().unwrap();
    let gh = grad(&[&y], None, &[&h], false).unwrap();
    assert_eq!(gh[0].as_ref().unwrap().to_vec::<f64>().unwrap(), vec![12.0, -6.0]); // 2h
                                                                                    // d/dx of x^3 = 3x^2, d2/dx2 = 6x
    let y = x.powf(3.0).unwrap().sum_all().unwrap();
    let g = grad(&[&y], None, &[&x], true).unwrap().remove(0).unwrap();
    assert!(g.is_tracked());
    assert_eq!(g.to_vec::<f64>().unwrap(), vec![12.0, 3.0]);
    let gg = g.sum_all().unwrap().backward().unwrap();
    assert_eq!(gg.get(&x).unwrap().to_vec::<f64>().unwrap(), vec![12.0, -6.0]);
}

#[test]
fn non_scalar_backward_needs_an_explicit_gradient() {
    let _l = lock();
    let x = leaf(&[1.0, 2.0], &[2]);
    let y = x.mul_scalar(2.0).unwrap();
    let err = y.backward().unwrap_err().to_string();
    assert!(err.contains("backward_with") && err.contains("[2]"), "{err}");
    let g = y.backward_with(&t(&[1.0, 10.0], &[2])).unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec::<f64>().unwrap(), vec![2.0, 20.0]);
}

fn train_linear(seed: u64, target: f64) -> Vec<f64> {
    // y = w * x fit by hand-written SGD; each thread has its own graph and grad mode
    let x = Tensor::rand_seeded(
        &[64, 1],
        stategrad::backends::Distribution::Uniform { lo: -1.0, hi: 1.0 },
        DType::F64,
        Device::Cpu,
        seed,
    )
    .unwrap();
    let y = x.mul_scalar(target).unwrap();
    let mut w = Tensor::zeros(&[1, 1], DType::F64, Device::Cpu).unwrap();
    for step in 0..200 {
        let wl = w.requires_grad(true).unwrap();
        let loss = x.matmul(&wl).unwrap().sub(&y).unwrap().square().unwrap().mean_all().unwrap();
        let g: Grads = loss.backward().unwrap();
        if step % 2 == 0 {
            // the other thread's no_grad scopes must not leak into this one
            let _ng = no_grad();
            assert!(!is_grad_enabled());
        }
        w = with_no_grad(|| w.sub(&g.get(&wl).unwrap().mul_scalar(0.5).unwrap()).unwrap());
    }
    w.to_vec::<f64>().unwrap()
}

#[test]
fn two_threads_train_two_models_independently() {
    let _l = lock();
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tensor>();
    assert_send_sync::<Grads>();
    let a = std::thread::spawn(|| train_linear(1, 3.0));
    let b = std::thread::spawn(|| train_linear(2, -2.0));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    assert!((a[0] - 3.0).abs() < 1e-6, "{a:?}");
    assert!((b[0] + 2.0).abs() < 1e-6, "{b:?}");
}

/// squash(s) = |s|^2 / (1 + |s|^2) * s / |s| over the last dim, with a hand-written backward.
struct Squash {
    wrong: bool,
}

impl CustomOp for Squash {
    fn name(&self) -> &'static str {
        "squash"
    }
    fn forward(&self, x: &[Tensor]) -> Result<Tensor> {
        let n2 = x[0].square()?.sum(-1, true)?;
        x[0].mul(&n2.sqrt()?.div(&n2.add_scalar(1.0)?)?)
    }
    fn backward(&self, x: &[Tensor], _out: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
        // y = f(n) s with f(n) = n / (1 + n^2), n = |s|: dy/ds = f I + f'(n) s s^T / n
        let s = &x[0];
        let n = s.square()?.sum(-1, true)?.sqrt()?;
        let f = n.div(&n.square()?.add_scalar(1.0)?)?;
        let fp = n.square()?.affine(-1.0, 1.0)?.div(&n.square()?.add_scalar(1.0)?.square()?)?;
        let sg = s.mul(g)?.sum(-1, true)?;
        let scale = if self.wrong { 2.0 } else { 1.0 };
        let gx = g.mul(&f)?.mul_scalar(scale)?.add(&s.mul(&fp.mul(&sg)?.div(&n)?)?)?;
        Ok(vec![Some(gx)])
    }
}

#[test]
fn custom_ops_pass_gradcheck_and_a_wrong_backward_fails_it() {
    let _l = lock();
    let x = Tensor::randn(&[3, 4], 0.0, 1.0, DType::F64, Device::Cpu).unwrap().requires_grad(true).unwrap();
    let report = gradcheck(|x| apply_custom(Squash { wrong: false }, &[&x[0]]), std::slice::from_ref(&x)).unwrap();
    assert_eq!(report.elements, 12);
    let err = gradcheck(|x| apply_custom(Squash { wrong: true }, &[&x[0]]), &[x]).unwrap_err().to_string();
    assert!(err.contains("analytical") && err.contains("numerical") && err.contains("element"), "{err}");
}

#[test]
fn anomaly_mode_names_the_op_that_produced_a_nan() {
    let _l = lock();
    let x = leaf(&[0.0, 4.0], &[2]);
    let y = x.sqrt().unwrap().sum_all().unwrap();
    set_anomaly_enabled(true);
    let err = y.backward();
    set_anomaly_enabled(false);
    let err = err.unwrap_err();
    assert!(matches!(&err, Error::Anomaly { op: "Sqrt", .. }), "{err}");
    // off: the same backward returns the infinite gradient
    let y = x.sqrt().unwrap().sum_all().unwrap();
    assert!(y.backward().unwrap().get(&x).unwrap().to_vec::<f64>().unwrap()[0].is_infinite());
}
