//! The fused optimizer update ([`OptimStep`]: SGD, Adam, AdamW), in place: one pass over a
//! parameter, its gradient and its state buffers, instead of about twelve tensor ops that
//! each read and write whole tensors.
//!
//! Each variant's options are const generics, so every inner loop is branch-free and
//! vectorises (sqrt and division included); the arithmetic is the tensor-op reference's,
//! op by op, with the scalars rounded to the element type as its `Affine` kernels round
//! them. Above [`PAR_THRESHOLD`] elements the buffers are split in lockstep into chunks of
//! [`PAR_CHUNK`] for rayon; below, the calling thread does it all (no wake-ups).
use rayon::prelude::*;

use super::{contiguous_cow, Float, Pooled, PAR_CHUNK, PAR_THRESHOLD};
use crate::{CpuStorage, DType, Error, HostBuf, Layout, OptimStep, Result};

const OP: &str = "optim_step";

/// What the update needs of an element type beyond [`Float`]: the two float dtypes.
trait Real: Float + Pooled + std::ops::Add<Output = Self> {
    fn buf(s: &mut CpuStorage) -> Option<&mut HostBuf<Self>>;
}

macro_rules! real {
    ($t:ty, $v:ident) => {
        impl Real for $t {
            fn buf(s: &mut CpuStorage) -> Option<&mut HostBuf<Self>> {
                match s {
                    CpuStorage::$v(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
real!(f32, F32);
real!(f64, F64);

/// See [`crate::Kernels::optim_step`].
pub fn optim_step(
    step: &OptimStep,
    param: &mut CpuStorage,
    grad: &CpuStorage,
    lg: &Layout,
    state: &mut [&mut CpuStorage],
) -> Result<()> {
    match param.dtype() {
        DType::F32 => typed::<f32>(step, param, grad, lg, state),
        DType::F64 => typed::<f64>(step, param, grad, lg, state),
        got => Err(Error::DType { op: OP, expected: "a float32 or float64 parameter", got }),
    }
}

fn typed<T: Real>(
    step: &OptimStep,
    param: &mut CpuStorage,
    grad: &CpuStorage,
    lg: &Layout,
    state: &mut [&mut CpuStorage],
) -> Result<()> {
    let dtype = param.dtype();
    let n = param.len();
    let mismatch = |got: &CpuStorage| Error::DTypeMismatch { op: OP, lhs: dtype, rhs: got.dtype() };
    let g = T::slice(grad).ok_or_else(|| mismatch(grad))?;
    if lg.numel() != n || state.len() != step.state_len() || state.iter().any(|s| s.len() != n) {
        let mut shapes = vec![vec![n], lg.shape().to_vec()];
        shapes.extend(state.iter().map(|s| vec![s.len()]));
        let msg = format!(
            "the parameter, its gradient and {} state buffers must have one element count (got {} buffers)",
            step.state_len(),
            state.len()
        );
        return Err(Error::Shape { op: OP, shapes, msg });
    }
    let g = contiguous_cow(g, lg)?;
    let p = writable::<T>(param, dtype)?;
    let mut bufs = Vec::with_capacity(2);
    for s in state.iter_mut() {
        bufs.push(writable::<T>(s, dtype)?);
    }
    match *step {
        OptimStep::Sgd { lr, weight_decay, momentum, dampening, nesterov, init } => {
            let k = Sgd {
                lr: T::from_f64(lr),
                wd: T::from_f64(weight_decay),
                momentum: T::from_f64(momentum),
                keep: T::from_f64(1.0 - dampening),
            };
            match (bufs.pop(), weight_decay != 0.0, init, nesterov) {
                (None, true, ..) => split2(p, &g, |p, g| sgd_plain::<T, true>(&k, p, g)),
                (None, false, ..) => split2(p, &g, |p, g| sgd_plain::<T, false>(&k, p, g)),
                (Some(b), wd, init, nesterov) => {
                    // one monomorphised loop per combination of the three options
                    let f = match (wd, init, nesterov) {
                        (false, false, false) => sgd_momentum::<T, false, false, false>,
                        (false, false, true) => sgd_momentum::<T, false, false, true>,
                        (false, true, false) => sgd_momentum::<T, false, true, false>,
                        (false, true, true) => sgd_momentum::<T, false, true, true>,
                        (true, false, false) => sgd_momentum::<T, true, false, false>,
                        (true, false, true) => sgd_momentum::<T, true, false, true>,
                        (true, true, false) => sgd_momentum::<T, true, true, false>,
                        (true, true, true) => sgd_momentum::<T, true, true, true>,
                    };
                    split3(p, &g, b, |p, g, b| f(&k, p, g, b))
                }
            }
        }
        OptimStep::Adam { lr, beta1, beta2, eps, weight_decay, decoupled, step_size, inv_bias2_sqrt } => {
            let (Some(v), Some(m)) = (bufs.pop(), bufs.pop()) else { unreachable!("state_len checked above") };
            let k = Adam {
                b1: T::from_f64(beta1),
                keep1: T::from_f64(1.0 - beta1),
                b2: T::from_f64(beta2),
                keep2: T::from_f64(1.0 - beta2),
                eps: T::from_f64(eps),
                wd: T::from_f64(weight_decay),
                decay: T::from_f64(1.0 - lr * weight_decay),
                step_size: T::from_f64(step_size),
                inv_bias2_sqrt: T::from_f64(inv_bias2_sqrt),
            };
            let f = match (weight_decay != 0.0, decoupled) {
                (false, _) => adam::<T, false, false>,
                (true, false) => adam::<T, true, false>,
                (true, true) => adam::<T, true, true>,
            };
            split4(p, &g, m, v, |p, g, m, v| f(&k, p, g, m, v))
        }
    }
    Ok(())
}

/// The elements of `s`, writable: `s` must hold `dtype` (the parameter's) and own them.
fn writable<T: Real>(s: &mut CpuStorage, dtype: DType) -> Result<&mut [T]> {
    let other = s.dtype();
    T::buf(s)
        .ok_or(Error::DTypeMismatch { op: OP, lhs: dtype, rhs: other })?
        .as_mut_slice()
        .ok_or_else(|| Error::State { op: OP, msg: "a borrowed (memory-mapped) storage is read-only".into() })
}

/// SGD's scalars in the element type.
struct Sgd<T> {
    lr: T,
    wd: T,
    momentum: T,
    keep: T,
}

#[inline(always)]
fn sgd_plain<T: Real, const WD: bool>(k: &Sgd<T>, p: &mut [T], g: &[T]) {
    for (p, &g) in p.iter_mut().zip(g) {
        let d = if WD { g + *p * k.wd } else { g };
        *p = *p - d * k.lr;
    }
}

#[inline(always)]
fn sgd_momentum<T: Real, const WD: bool, const INIT: bool, const NESTEROV: bool>(
    k: &Sgd<T>,
    p: &mut [T],
    g: &[T],
    b: &mut [T],
) {
    for ((p, &g), b) in p.iter_mut().zip(g).zip(b) {
        let d = if WD { g + *p * k.wd } else { g };
        let buf = if INIT { d } else { *b * k.momentum + d * k.keep };
        *b = buf;
        let d = if NESTEROV { d + buf * k.momentum } else { buf };
        *p = *p - d * k.lr;
    }
}

/// Adam's scalars in the element type.
struct Adam<T> {
    b1: T,
    keep1: T,
    b2: T,
    keep2: T,
    eps: T,
    wd: T,
    decay: T,
    step_size: T,
    inv_bias2_sqrt: T,
}

#[inline(always)]
fn adam<T: Real, const WD: bool, const DECOUPLED: bool>(k: &Adam<T>, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
        let (mut x, mut g) = (*p, g);
        if WD && DECOUPLED {
            x = x * k.decay;
        } else if WD {
            g = g + x * k.wd;
        }
        let mm = *m * k.b1 + g * k.keep1;
        let vv = *v * k.b2 + g * g * k.keep2;
        (*m, *v) = (mm, vv);
        *p = x - mm / (vv.sqrt() * k.inv_bias2_sqrt + k.eps) * k.step_size;
    }
}

// The buffers of one update split in lockstep: serial below PAR_THRESHOLD, else rayon
// tasks of PAR_CHUNK elements each.
fn split2<T: Real>(p: &mut [T], g: &[T], f: impl Fn(&mut [T], &[T]) + Sync) {
    if p.len() < PAR_THRESHOLD {
        return f(p, g);
    }
    p.par_chunks_mut(PAR_CHUNK).zip(g.par_chunks(PAR_CHUNK)).for_each(|(p, g)| f(p, g));
}

fn split3<T: Real>(p: &mut [T], g: &[T], b: &mut [T], f: impl Fn(&mut [T], &[T], &mut [T]) + Sync) {
    if p.len() < PAR_THRESHOLD {
        return f(p, g, b);
    }
    p.par_chunks_mut(PAR_CHUNK)
        .zip(g.par_chunks(PAR_CHUNK))
        .zip(b.par_chunks_mut(PAR_CHUNK))
        .for_each(|((p, g), b)| f(p, g, b));
}

fn split4<T: Real>(
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    f: impl Fn(&mut [T], &[T], &mut [T], &mut [T]) + Sync,
) {
    if p.len() < PAR_THRESHOLD {
        return f(p, g, m, v);
    }
    p.par_chunks_mut(PAR_CHUNK)
        .zip(g.par_chunks(PAR_CHUNK))
        .zip(m.par_chunks_mut(PAR_CHUNK))
        .zip(v.par_chunks_mut(PAR_CHUNK))
        .for_each(|(((p, g), m), v)| f(p, g, m, v));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(v: &[f32]) -> CpuStorage {
        CpuStorage::from_vec(v.to_vec())
    }

    #[test]
    fn sgd_with_momentum_and_decay_by_hand() {
        let step =
            |init| OptimStep::Sgd { lr: 0.5, weight_decay: 0.25, momentum: 0.5, dampening: 0.0, nesterov: false, init };
        let (mut p, g, mut b) = (f32s(&[2.0, -4.0]), f32s(&[1.0, 1.0]), f32s(&[9.0, 9.0]));
        let l = Layout::contiguous(&[2]);
        optim_step(&step(true), &mut p, &g, &l, &mut [&mut b]).unwrap();
        // d = g + p / 4 = [1.5, 0]; b = d; p -= d / 2
        assert_eq!((p.to_f64_vec(), b.to_f64_vec()), (vec![1.25, -4.0], vec![1.5, 0.0]));
        optim_step(&step(false), &mut p, &g, &l, &mut [&mut b]).unwrap();
        // d = [1.3125, 0]; b = b / 2 + d = [2.0625, 0]; p -= b / 2
        assert_eq!((p.to_f64_vec(), b.to_f64_vec()), (vec![0.21875, -4.0], vec![2.0625, 0.0]));
    }

    #[test]
    fn adam_first_step_moves_each_element_by_lr() {
        // Step 1 from zero state: m / sqrt(v) with bias correction is sign(g), so p moves by lr.
        let (b1, b2, lr) = (0.9f64, 0.999f64, 0.01);
        let step = OptimStep::Adam {
            lr,
            beta1: b1,
            beta2: b2,
            eps: 0.0,
            weight_decay: 0.0,
            decoupled: false,
            step_size: lr / (1.0 - b1),
            inv_bias2_sqrt: 1.0 / (1.0 - b2).sqrt(),
        };
        let n = PAR_THRESHOLD + 3; // the rayon split and a ragged last chunk
        let g: Vec<f64> = (0..n).map(|i| if i % 3 == 0 { -2.0 } else { 0.5 }).collect();
        let (mut p, mut m, mut v) = (
            CpuStorage::from_vec(vec![1.0f64; n]),
            CpuStorage::from_vec(vec![0.0f64; n]),
            CpuStorage::from_vec(vec![0.0f64; n]),
        );
        optim_step(&step, &mut p, &CpuStorage::from_vec(g.clone()), &Layout::contiguous(&[n]), &mut [&mut m, &mut v])
            .unwrap();
        for (i, (&x, &g)) in p.as_slice::<f64>().unwrap().iter().zip(&g).enumerate() {
            assert!((x - (1.0 - lr * g.signum())).abs() < 1e-12, "element {i}: {x}");
        }
    }

    #[test]
    fn bad_operands_are_typed_errors() {
        let l = Layout::contiguous(&[2]);
        let sgd =
            OptimStep::Sgd { lr: 0.1, weight_decay: 0.0, momentum: 0.9, dampening: 0.0, nesterov: false, init: true };
        let (mut p, g) = (f32s(&[1.0, 2.0]), f32s(&[1.0, 2.0]));
        let e = optim_step(&sgd, &mut p, &g, &l, &mut []).unwrap_err();
        assert!(matches!(e, Error::Shape { op: OP, .. }), "{e}");
        let g64 = CpuStorage::from_vec(vec![1.0f64, 2.0]);
        let mut b = f32s(&[0.0, 0.0]);
        let e = optim_step(&sgd, &mut p, &g64, &l, &mut [&mut b]).unwrap_err();
        assert!(matches!(e, Error::DTypeMismatch { op: OP, .. }), "{e}");
        let mut i = CpuStorage::from_vec(vec![1i64, 2]);
        let e = optim_step(&sgd, &mut i, &g, &l, &mut [&mut b]).unwrap_err();
        assert!(matches!(e, Error::DType { op: OP, .. }), "{e}");
        let mut short = f32s(&[0.0]);
        let e = optim_step(&sgd, &mut p, &g, &l, &mut [&mut short]).unwrap_err();
        assert!(matches!(e, Error::Shape { op: OP, .. }), "{e}");
    }
}
