//! The GPU path without host round-trips: index ops check their indices on the device and
//! report through the device's error flag (a deferred, typed, recoverable `Error::Index` at
//! the next read-back), and a CapsNet training step moves nothing between host and device
//! but the loss, when it is read.
//!
//! The error flag is per device, so a test that sets it would fail another test's read on
//! the same device: the tests here hold one lock. The transfer counter is per thread.
//! Skips (or fails with `STATEGRAD_REQUIRE_GPU=1`) without a GPU, see `gpu_common`.
mod gpu_common;

use std::sync::Mutex;

use gpu_common::gpu_devices;
use stategrad::autograd::{manual_seed, DType, Device, Error, Tensor};
use stategrad::backends::Storage;
use stategrad::nn::capsule::{CapsNet, CapsNetConfig};
use stategrad::nn::functional::{cross_entropy, CrossEntropyOptions};
use stategrad::nn::optim::{Adam, AdamConfig, Optimizer};
use stategrad::nn::{Embedding, Forward, Module};

#[cfg(any(feature = "wgpu", feature = "cuda"))]
use stategrad::backends::cube::{transfers, Transfers, ERROR_FLAG_BYTES};

static FLAG: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    FLAG.lock().unwrap_or_else(|e| e.into_inner())
}

fn ints(v: &[i64], shape: &[usize], d: Device) -> Tensor {
    Tensor::from_slice(v, shape, Device::Cpu).unwrap().to_device(d).unwrap()
}

#[test]
fn out_of_range_indices_are_deferred_index_errors_and_the_device_recovers() {
    let _one = serial();
    for d in gpu_devices() {
        let x =
            Tensor::from_slice(&[0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0], &[3, 2], Device::Cpu).unwrap().to_device(d).unwrap();
        // gather: the call succeeds (nothing is read back), the next read names the op.
        let neg = ints(&[-1, 0], &[1, 2], d);
        let g = x.gather(0, &neg).expect("the launch itself does not fail");
        let e = g.to_vec::<f32>().unwrap_err();
        assert!(matches!(e, Error::Index { op: "gather", index: -1, dim: 0, size: 3 }), "{d}: {e}");
        // The flag was cleared: the device is usable, the same tensor now reads (0 where bad).
        assert_eq!(g.to_vec::<f32>().unwrap(), vec![0.0, 1.0], "{d}");
        assert_eq!(x.gather(0, &ints(&[2, 1], &[1, 2], d)).unwrap().to_vec::<f32>().unwrap(), vec![4.0, 3.0]);

        // index_select: reported at the next read of *any* tensor on the device, or at
        // an explicit synchronize; an index past 32 bits comes back whole.
        let big = (1i64 << 33) + 5;
        let s = x.index_select(0, &ints(&[0, big], &[2], d)).unwrap();
        let e = Storage::synchronize(d).unwrap_err();
        assert!(matches!(e, Error::Index { op: "index_select", index, dim: 0, size: 3 } if index == big), "{d}: {e}");
        Storage::synchronize(d).expect("cleared");
        assert_eq!(s.to_vec::<f32>().unwrap(), vec![0.0, 1.0, 0.0, 0.0], "{d}");

        let base = Tensor::zeros(&[4], DType::F32, d).unwrap();
        let src = Tensor::ones(&[3], DType::F32, d).unwrap();
        let _sa = base.scatter_add(0, &ints(&[1, 4, 1], &[3], d), &src).unwrap();
        let e = x.to_vec::<f32>().unwrap_err();
        assert!(matches!(e, Error::Index { op: "scatter_add", index: 4, dim: 0, size: 4 }), "{d}: {e}");
        assert_eq!(x.to_vec::<f32>().unwrap(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);

        // one_hot on a GPU is a scatter_add: a bad label is its deferred error.
        let oh = ints(&[2, 7], &[2], d).one_hot(3, DType::F32).unwrap();
        let e = oh.to_vec::<f32>().unwrap_err();
        assert!(matches!(e, Error::Index { op: "scatter_add", index: 7, size: 3, .. }), "{d}: {e}");

        // An embedding lookup past the table (index_select inside).
        manual_seed(3);
        let emb = Embedding::new(5, 2).unwrap();
        emb.to_device(d).unwrap();
        let out = emb.forward(&ints(&[4, 5], &[2], d)).unwrap();
        let e = out.sum_all().unwrap().item().unwrap_err();
        assert!(matches!(e, Error::Index { op: "index_select", index: 5, size: 5, .. }), "{d}: {e}");
        Storage::synchronize(d).expect("cleared");
    }
}

#[test]
fn in_range_index_ops_equal_the_cpu_and_never_synchronise() {
    let _one = serial();
    for d in gpu_devices() {
        manual_seed(11);
        let x_cpu = Tensor::randn(&[4, 6], 0.0, 1.0, DType::F32, Device::Cpu).unwrap();
        let emb_cpu = Embedding::new(7, 3).unwrap();
        let emb = Embedding::new(7, 3).unwrap();
        emb.load_state_dict(&emb_cpu.state_dict(), true).unwrap();
        emb.to_device(d).unwrap();
        let (labels, rows, picks, ids) =
            (vec![3i64, 0, 5, 5], vec![2i64, 0, 2], vec![1i64, 5, 0, 3], vec![6i64, 0, 6, 2]);
        let run = |dev: Device, emb: &Embedding| {
            let x = x_cpu.to_device(dev).unwrap().requires_grad(true).unwrap();
            let (labels, rows) = (ints(&labels, &[4], dev), ints(&rows, &[3], dev));
            let (picks, ids) = (ints(&picks, &[4, 1], dev), ints(&ids, &[2, 2], dev));
            let w = emb.weight.tensor().unwrap();
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            let before = transfers();
            let a = x.index_select(0, &rows).unwrap();
            let b = x.gather(1, &picks).unwrap();
            let c = Tensor::zeros(&[4, 6], DType::F32, dev).unwrap().scatter_add(1, &picks, &b).unwrap();
            let oh = labels.one_hot(6, DType::F32).unwrap();
            let e = emb.forward(&ids).unwrap();
            let loss = a.sum_all().unwrap().add(&c.mul(&oh).unwrap().sum_all().unwrap()).unwrap();
            let loss = loss.add(&e.square().unwrap().sum_all().unwrap()).unwrap();
            // cross_entropy (gather inside; default ignore_index -100, a fill, not an upload)
            let ce = cross_entropy(&x, &labels, &CrossEntropyOptions::default()).unwrap();
            let loss = loss.add(&ce).unwrap();
            let grads = loss.backward().unwrap();
            let gx = grads.get(&x).unwrap().clone();
            let gw = grads.get(&w).unwrap().clone();
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            if dev != Device::Cpu {
                assert_eq!(transfers().since(&before), Transfers::default(), "{dev}: index ops forward and backward");
            }
            [a, b, c, oh, e, ce, gx, gw].map(|t| t.to_vec::<f32>().unwrap())
        };
        let cpu = run(Device::Cpu, &emb_cpu);
        let gpu = run(d, &emb);
        for (k, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
            assert!(
                c.iter().zip(g).all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + a.abs())),
                "{d}: output {k}: {c:?} vs {g:?}"
            );
        }
    }
}

#[test]
fn a_capsnet_training_step_moves_nothing_but_the_loss() {
    let _one = serial();
    for d in gpu_devices() {
        manual_seed(5);
        let model = CapsNet::new(CapsNetConfig::small()).unwrap();
        model.to_device(d).unwrap();
        let mut opt = Adam::new(model.parameters(), AdamConfig::new(1e-3)).unwrap();
        let x = Tensor::rand(&[4, 1, 28, 28], 0.0, 1.0, DType::F32, Device::Cpu).unwrap().to_device(d).unwrap();
        let y = ints(&[3, 1, 4, 1], &[4], d);
        let step = |opt: &mut Adam| {
            let (losses, _) = model.losses(&x, &y).unwrap();
            opt.step(&losses.total.backward().unwrap()).unwrap();
            losses.total
        };
        let first = step(&mut opt).item().unwrap(); // Adam's state is created here
        assert!(first.is_finite(), "{d}: first loss {first}");
        let w = model.named_parameters().into_iter().next().unwrap().1;
        let w_before = w.tensor().unwrap().to_vec::<f32>().unwrap();
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        let before = transfers();
        let loss = step(&mut opt);
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        {
            assert_eq!(transfers().since(&before), Transfers::default(), "{d}: forward, backward and Adam step");
            let value = loss.item().unwrap();
            let read = transfers().since(&before);
            let expected =
                Transfers { to_host: 1, to_host_bytes: (4 + ERROR_FLAG_BYTES) as u64, ..Transfers::default() };
            assert_eq!(read, expected, "{d}: reading the loss is one read-back of 4 bytes and the flag");
            assert!(value.is_finite(), "{d}: second loss {value}");
        }
        let w_after = w.tensor().unwrap().to_vec::<f32>().unwrap();
        assert_ne!(w_before, w_after, "{d}: the step changed the parameters");
        let _ = loss;
    }
}
