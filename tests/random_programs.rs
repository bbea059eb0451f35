//! Random programs over the public `Tensor` API: sequences of ops with random (often
//! invalid) shapes, dims, dtypes, indices and scalars, on a pool of contiguous, transposed,
//! sliced, broadcast and tracked tensors, sometimes backpropagated. Every call must return
//! `Ok` or a typed `Err`; a panic anywhere (kernel, shape rule, tape) fails the case, with
//! proptest shrinking the program to the call that panicked.
//!
//! The default run makes about 25,000 calls; `STATEGRAD_RANDOM_PROGRAMS=N` runs `N` programs
//! (`.ci/run` runs 4,000 x 48 calls = 192,000) and prints the count and the seed
//! (`STATEGRAD_SEED=S` replays a run; `STATEGRAD_TRACE=1` prints each call before it runs,
//! for the one failure a report cannot carry: a process the OOM killer ends). Sizes are sometimes absurd (2^40 elements): where
//! the kernel overcommits, only the allocator's admission check stands between such a
//! call and the OOM killer, and this test is what found that.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use stategrad::autograd::{s, Conv2dParams, DType, Device, Error, OptimStep, Tensor, TensorIndex, ELLIPSIS, NEW_AXIS};

/// One call: an op code and raw argument material the interpreter turns into arguments.
#[derive(Clone, Debug)]
struct Call {
    op: u8,
    args: [i64; 6],
    scalar: f64,
}

fn call() -> impl Strategy<Value = Call> {
    let arg = prop_oneof![
        8 => -6i64..8,                                        // small dims, sizes, indices
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(1i64 << 40), Just(1i64 << 62), Just(-1i64 << 40)],
    ];
    let scalar = prop_oneof![
        4 => -3.0f64..3.0,
        1 => prop_oneof![Just(0.0), Just(f64::NAN), Just(f64::INFINITY), Just(-1e300), Just(0.5)],
    ];
    (0u8..NUM_OPS, prop::array::uniform6(arg), scalar).prop_map(|(op, args, scalar)| Call { op, args, scalar })
}

/// A size from raw material: small, sometimes zero; absurd values pass through unchanged so
/// that overflow paths are exercised.
fn size(a: i64) -> usize {
    if a >= 1 << 30 {
        a as usize
    } else {
        a.rem_euclid(5) as usize
    }
}

fn shape(args: &[i64]) -> Vec<usize> {
    let rank = args[0].rem_euclid(5) as usize;
    args[1..].iter().take(rank).map(|&a| size(a)).collect()
}

fn dtype(a: i64) -> DType {
    [DType::F32, DType::F64, DType::I64, DType::F16, DType::BF16][a.rem_euclid(5) as usize]
}

/// A device: mostly the CPU, sometimes one that is not there (an error, never a panic).
fn device(a: i64) -> Device {
    match a.rem_euclid(4) {
        0 => Device::Wgpu(a.rem_euclid(3) as usize),
        1 => Device::Cuda(a.rem_euclid(2) as usize),
        _ => Device::Cpu,
    }
}

fn dims(args: &[i64]) -> Vec<i64> {
    let n = args[0].rem_euclid(4) as usize;
    args[1..].iter().take(n).map(|&a| a.clamp(-8, 8)).collect()
}

fn usize_arg(a: i64) -> usize {
    if a < 0 {
        a.unsigned_abs() as usize
    } else {
        a as usize
    }
}

const NUM_OPS: u8 = 90;

/// Runs one call on the pool; what it returns (when small) joins the pool.
fn run(pool: &[Tensor], c: &Call) -> Result<Vec<Tensor>, Error> {
    let a = c.args;
    let pick = |k: i64| pool[k.rem_euclid(pool.len() as i64) as usize].clone();
    let (x, y, z) = (pick(a[0]), pick(a[1]), pick(a[2]));
    let d = a[3].clamp(-6, 6);
    let one = |r: Result<Tensor, Error>| r.map(|t| vec![t]);
    match c.op {
        0 => one(Tensor::zeros(&shape(&a[1..]), dtype(a[0]), Device::Cpu)),
        1 => one(Tensor::full(&shape(&a[1..]), c.scalar, dtype(a[0]), Device::Cpu)),
        2 => {
            let s = shape(&a[1..]);
            let n = a[0].rem_euclid(40) as usize;
            one(Tensor::from_vec(vec![c.scalar; n], &s, Device::Cpu))
        }
        3 => one(Tensor::arange(a[4], a[5], dtype(a[0]), Device::Cpu)),
        4 => one(Tensor::rand(&shape(&a[1..]), -1.0, c.scalar, dtype(a[0]), Device::Cpu)),
        5 => one(x.add(&y)),
        6 => one(x.sub(&y)),
        7 => one(x.mul(&y)),
        8 => one(x.div(&y)),
        9 => one(x.pow(&y)),
        10 => one(x.maximum(&y)),
        11 => one(x.minimum(&y)),
        12 => one(x.eq(&y).and_then(|m| m.where_cond(&y, &z))),
        13 => one(x.lt(&y)),
        14 => one(x.matmul(&y)),
        15 => one(x.exp()),
        16 => one(x.log()),
        17 => one(x.tanh()),
        18 => one(x.sigmoid()),
        19 => one(x.relu()),
        20 => one(x.gelu()),
        21 => one(x.erf()),
        22 => one(x.sqrt().and_then(|t| t.rsqrt())),
        23 => one(x.abs().and_then(|t| t.neg())),
        24 => one(x.powf(c.scalar)),
        25 => one(x.clamp(c.scalar, c.scalar + a[4] as f64)),
        26 => one(x.affine(c.scalar, a[4] as f64)),
        27 => one(x.sum(dims(&a[2..]), a[5] > 0)),
        28 => one(x.mean(dims(&a[2..]), a[5] > 0)),
        29 => one(x.max(dims(&a[2..]), a[5] > 0)),
        30 => one(x.min(dims(&a[2..]), a[5] > 0)),
        31 => one(x.var(dims(&a[2..]), usize::from(a[4] > 0), a[5] > 0)),
        32 => one(x.argmax(d, a[5] > 0)),
        33 => one(x.argmin(d, a[5] > 0)),
        34 => one(x.softmax(d)),
        35 => one(x.log_softmax(d)),
        36 => one(x.logsumexp(d, a[5] > 0)),
        37 => one(x.reshape(&shape(&a[1..]))),
        38 => one(x.flatten(d, a[4].clamp(-6, 6))),
        39 => one(x.transpose(d, a[4].clamp(-6, 6))),
        40 => one(x.permute(&a[1..].iter().take(x.rank()).map(|&v| usize_arg(v.clamp(-6, 6))).collect::<Vec<_>>())),
        41 => one(x.narrow(d, usize_arg(a[4]), usize_arg(a[5]))),
        42 => one(x.select(d, usize_arg(a[4]))),
        43 => x.chunk(usize_arg(a[4]), d),
        44 => one(x.squeeze(d)),
        45 => one(x.unsqueeze(d)),
        46 => one(x.expand(&shape(&a[1..]))),
        47 => one(Tensor::cat(&[&x, &y], d)),
        48 => one(Tensor::stack(&[&x, &y, &z][..a[4].rem_euclid(4) as usize], d)),
        49 => {
            let idx = y.to_dtype(DType::I64)?.flatten(0, -1)?;
            one(x.index_select(d, &idx))
        }
        50 => one(x.gather(d, &y.to_dtype(DType::I64)?)),
        51 => one(x.scatter_add(d, &y.to_dtype(DType::I64)?, &z)),
        52 => one(x.to_dtype(dtype(a[4])).and_then(|t| t.contiguous())),
        53 => one(x.one_hot(usize_arg(a[4]), dtype(a[5]))),
        54 => {
            let p = Conv2dParams {
                stride: (size(a[3]), size(a[4])),
                padding: (size(a[4]), usize_arg(a[5])),
                dilation: (size(a[5]).max(1), 1),
                groups: size(a[3]),
            };
            one(x.conv2d(&y, Some(&z).filter(|_| a[0] > 0), p))
        }
        55 => one(x.requires_grad(true)),
        56 => {
            // Backpropagate whatever the pool holds (errors for untracked or integer tensors).
            let loss = x.sum_all()?;
            let grads = loss.backward()?;
            Ok(grads.iter().map(|(_, g)| g.clone()).take(2).collect())
        }
        57 => {
            let g = x.ones_like()?;
            let grads = x.backward_with(&g)?;
            Ok(grads.iter().map(|(_, g)| g.clone()).take(2).collect())
        }
        // the porting API (issue 14)
        58 => one(x.slice(d, a[4], a[5], usize_arg(a[1]))),
        59 => {
            let item = |k: i64, v: i64| match k.rem_euclid(5) {
                0 => TensorIndex::Index(v),
                1 => s(v.., usize_arg(a[0]).max(1)),
                2 => s(..v, 1),
                3 => NEW_AXIS,
                _ => ELLIPSIS,
            };
            one(x.i(vec![item(a[1], a[4]), item(a[2], a[5]), item(a[3], a[4])]))
        }
        60 => x.max_dim(d, a[5] > 0).map(|(v, i)| vec![v, i]),
        61 => x.sort(d, a[5] > 0).map(|(v, i)| vec![v, i]),
        62 => x.topk(usize_arg(a[4]), d, a[5] > 0, true).map(|(v, i)| vec![v, i]),
        63 => one(x.cumsum(d)),
        64 => one(x.cumprod(d)),
        65 => one(x.logsumexp(dims(&a[2..]), a[5] > 0)),
        66 => one(x.std(dims(&a[2..]), usize_arg(a[4]), a[5] > 0)),
        67 => one(x.norm(c.scalar, dims(&a[2..]), a[5] > 0)),
        68 => {
            const EQS: [&str; 8] =
                ["ij,jk->ik", "bij,bjk->bik", "ii->", "ii->i", "i,j->ij", "ij->", "ijk,ik->j", "a..b"];
            let eq = EQS[a[4].rem_euclid(8) as usize];
            one(Tensor::einsum(eq, &[&x, &y, &z][..(eq.matches(',').count() + 1).min(3)]))
        }
        69 => one(x.slice_scatter(&y, d, a[4], a[5], usize_arg(a[1]))),
        70 => one(x.masked_fill(&y, c.scalar)),
        71 => one(x.tril(a[4]).and_then(|t| t.triu(a[5]))),
        72 => x.split(usize_arg(a[4]), d),
        73 => one(x.reshape(&[a[4].clamp(-2, 6), -1]).and_then(|t| t.gelu_tanh())),
        74 => one(x.sin().and_then(|t| t.cos())),
        75 => one(x.recip().and_then(|t| t.square())),
        76 => one(x.argsort(d, a[5] > 0)),
        77 => x.min_dim(d, a[5] > 0).map(|(v, i)| vec![v, i]),
        78 => one(x.gt(&y).and_then(|m| m.ge(&z))),
        79 => one(x.le(&y).and_then(|m| m.ne(&z))),
        80 => one(match a[4].rem_euclid(4) {
            0 => x.add_scalar(c.scalar),
            1 => x.sub_scalar(c.scalar),
            2 => x.mul_scalar(c.scalar),
            _ => x.div_scalar(c.scalar),
        }),
        81 => one(match a[4].rem_euclid(6) {
            0 => x.eq_scalar(c.scalar),
            1 => x.ne_scalar(c.scalar),
            2 => x.lt_scalar(c.scalar),
            3 => x.le_scalar(c.scalar),
            4 => x.gt_scalar(c.scalar),
            _ => x.ge_scalar(c.scalar),
        }),
        82 => one(Tensor::randn(&shape(&a[1..]), c.scalar, c.scalar.abs(), dtype(a[0]), Device::Cpu)),
        83 => one(x.randn_like(c.scalar, a[4] as f64)),
        84 => one(x.broadcast_to(&shape(&a[1..]))),
        85 => one(x.to_device(device(a[4]))),
        86 => one(x.to_dtype(dtype(a[4])).and_then(|h| h.add(&y.to_dtype(dtype(a[5]))?))),
        87 => {
            // the fused optimizer update on arbitrary operands: wrong shapes, dtypes, views
            let mut p = x.clone();
            let (mut m, mut v) = (y.clone(), z.clone());
            let step = if a[4] > 0 {
                OptimStep::Adam {
                    lr: c.scalar,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: a[5] as f64,
                    decoupled: a[5] > 2,
                    step_size: c.scalar,
                    inv_bias2_sqrt: 1.0,
                }
            } else {
                OptimStep::Sgd {
                    lr: c.scalar,
                    weight_decay: 0.0,
                    momentum: (a[5].rem_euclid(2)) as f64 * 0.9,
                    dampening: 0.0,
                    nesterov: a[5] > 3,
                    init: a[0] > 0,
                }
            };
            let k = step.state_len().min(usize_arg(a[1]) % 3);
            let mut state: Vec<&mut Tensor> = vec![&mut m, &mut v];
            state.truncate(k);
            p.optim_step_(&pick(a[2] + 1), &mut state, &step).map(|()| vec![p])
        }
        88 => one(x
            .to_dtype([DType::F16, DType::BF16][a[4].rem_euclid(2) as usize])
            .and_then(|h| h.exp()?.sum(dims(&a[2..]), a[5] > 0))),
        89 => one(Tensor::zeros(&shape(&a[1..]), dtype(a[0]), device(a[5]))),
        _ => unreachable!("op codes are 0..NUM_OPS"),
    }
}

/// A starting pool: every dtype, contiguous and not, tracked and not, empty and scalar.
fn pool() -> Vec<Tensor> {
    let f = |s: &[usize]| Tensor::rand(s, -2.0, 2.0, DType::F64, Device::Cpu).unwrap();
    let base = f(&[3, 4]);
    vec![
        base.clone(),
        base.t().unwrap(),
        base.narrow(1, 1, 2).unwrap(),
        f(&[1, 4]).expand(&[3, 4]).unwrap(),
        f(&[2, 3, 4]).requires_grad(true).unwrap(),
        f(&[2, 1, 5, 5]),
        f(&[1, 1, 2, 2]).to_dtype(DType::F32).unwrap(),
        Tensor::from_slice(&[0i64, 2, 1, 5, -1], &[5], Device::Cpu).unwrap(),
        Tensor::zeros(&[0, 3], DType::F32, Device::Cpu).unwrap(),
        Tensor::scalar(1.5, DType::F64, Device::Cpu).unwrap(),
    ]
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

fn run_program(program: &[Call]) -> Result<(), TestCaseError> {
    let mut pool = pool();
    for (i, c) in program.iter().enumerate() {
        CALLS.fetch_add(1, Ordering::Relaxed);
        let operands: Vec<String> = c.args[..3]
            .iter()
            .map(|&k| {
                let t = &pool[k.rem_euclid(pool.len() as i64) as usize];
                format!("{:?} {:?} strides {:?}", t.dtype(), t.shape(), t.layout().strides())
            })
            .collect();
        if std::env::var_os("STATEGRAD_TRACE").is_some() {
            eprintln!("call {i}: {c:?} on {operands:?}");
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| run(&pool, c)));
        match outcome {
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                return Err(TestCaseError::fail(format!("call {i} ({c:?}) on {operands:?} panicked: {msg}")));
            }
            Ok(Ok(out)) => {
                // Keep results small so that programs stay cheap.
                pool.extend(out.into_iter().filter(|t| t.numel() <= 4096));
                if pool.len() > 24 {
                    pool.drain(10..14);
                }
            }
            Ok(Err(e)) => {
                // A typed error with a message that names something.
                let msg = e.to_string();
                prop_assert!(!msg.is_empty(), "empty error message for {c:?}");
            }
        }
    }
    Ok(())
}

#[test]
fn random_programs_return_ok_or_a_typed_error_and_never_panic() {
    let cases: u32 = std::env::var("STATEGRAD_RANDOM_PROGRAMS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    // Panics are caught and reported by the runner; keep the default hook from printing
    // each caught one while the case is shrunk.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // A fresh seed each run (printed, so a failure can be replayed with STATEGRAD_SEED).
    let seed: u64 = std::env::var("STATEGRAD_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    println!("random programs: seed {seed} (STATEGRAD_SEED={seed} replays this run)");
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let result = runner.run(&prop::collection::vec(call(), 48..=48), |program| run_program(&program));
    std::panic::set_hook(hook);
    let calls = CALLS.load(Ordering::Relaxed);
    println!("random programs: {cases} programs, {calls} calls, 0 panics");
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(calls >= cases as usize * 48, "fewer calls than programs x 48: {calls}");
}
