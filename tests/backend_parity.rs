//! Backend conformance: every kernel of the `Kernels` trait, run on the CPU and on every GPU
//! device found, with the GPU's results compared to the CPU's within stated tolerances.
//!
//! Each case is a function of a [`Device`] returning named host outputs; [`check`] runs it
//! on the CPU (the reference) and on each GPU. Inputs use sizes that are not multiples of
//! the work-group size (256), non-contiguous views (transposed, narrowed, permuted) and
//! broadcasting (stride 0).
//!
//! GPU discovery: without the `wgpu`/`cuda` features, or without an adapter, the GPU part
//! prints `GPU tests skipped: <reason>`; with `STATEGRAD_REQUIRE_GPU=1` it fails instead.
//! Tolerances: f32 `1e-5` relative (+`1e-5` absolute; sums and matmuls scale with the
//! reduced length), f64 `1e-12` for exact kernels, `1e-9` for transcendental ones.
mod optim_cases;

use stategrad::backends::{
    uniform_at, BinaryOp, Conv2dParams, CpuStorage, DType, Device, Distribution, Error, Layout, ReduceOp, Result,
    Storage, UnaryOp,
};

/// One named output of a case, with its tolerance (`|gpu - cpu| <= tol * (1 + |cpu|)`).
struct Out {
    name: String,
    data: CpuStorage,
    tol: f64,
}

fn out(name: impl Into<String>, s: &Storage, l: &Layout, tol: f64) -> Result<Out> {
    Ok(Out { name: name.into(), data: s.to_host(&Layout::contiguous(l.shape())).or_else(|_| s.to_host(l))?, tol })
}

/// Output `s` (contiguous, of shape `shape`) copied back.
fn res(name: impl Into<String>, s: Storage, shape: &[usize], tol: f64) -> Result<Out> {
    let l = Layout::contiguous(shape);
    Ok(Out { name: name.into(), data: s.to_host(&l)?, tol })
}

mod gpu_common;
use gpu_common::gpu_devices;

fn supports(device: Device, dtype: DType) -> bool {
    match Storage::fill(device, 1, dtype, 1.0).and_then(|s| s.to_host(&Layout::contiguous(&[1]))) {
        Ok(_) => true,
        Err(Error::Unsupported { .. }) => false,
        Err(e) => panic!("{device}: fill {dtype}: {e}"),
    }
}

/// Runs `case` on the CPU and every GPU, comparing outputs. A case that the CPU does not
/// support yet (`Unsupported`) is still run on the GPU, which must then succeed.
fn check(case: &str, f: impl Fn(Device) -> Result<Vec<Out>>) {
    let cpu = f(Device::Cpu);
    if let Err(e) = &cpu {
        if !matches!(e, Error::Unsupported { .. }) {
            panic!("{case} on cpu: {e}");
        }
        eprintln!("{case}: no CPU reference ({e}); GPU results only checked to exist");
    }
    for device in gpu_devices() {
        let gpu = f(device).unwrap_or_else(|e| panic!("{case} on {device}: {e}"));
        let Ok(cpu) = &cpu else { continue };
        assert_eq!(cpu.len(), gpu.len(), "{case}: output count");
        for (c, g) in cpu.iter().zip(&gpu) {
            compare(&format!("{case}/{} on {device}", c.name), &c.data, &g.data, c.tol);
        }
    }
}

fn compare(what: &str, cpu: &CpuStorage, gpu: &CpuStorage, tol: f64) {
    assert_eq!(cpu.dtype(), gpu.dtype(), "{what}: dtype");
    assert_eq!(cpu.len(), gpu.len(), "{what}: length");
    let (c, g) = (cpu.to_f64_vec(), gpu.to_f64_vec());
    let mut worst = (0.0f64, 0usize);
    for (i, (&a, &b)) in c.iter().zip(&g).enumerate() {
        let same = a == b || (a.is_nan() && b.is_nan());
        let err = if same { 0.0 } else { (a - b).abs() / (1.0 + a.abs()) };
        let err = if err.is_nan() { f64::INFINITY } else { err };
        if err > worst.0 {
            worst = (err, i);
        }
    }
    let (err, i) = worst;
    assert!(err <= tol, "{what}: element {i}: cpu {} gpu {} (error {err:e} > {tol:e})", c[i], g[i]);
}

/// Deterministic values in `[lo, hi)` of `shape`, uploaded to `device`.
use stategrad::backends::half;

fn input(device: Device, dtype: DType, shape: &[usize], seed: u64, lo: f64, hi: f64) -> Result<(Storage, Layout)> {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|i| lo + (hi - lo) * uniform_at(seed, i as u64)).collect();
    let data = match dtype {
        DType::F32 => CpuStorage::F32(v.iter().map(|&x| x as f32).collect::<Vec<_>>().into()),
        DType::F64 => CpuStorage::F64(v.into()),
        DType::I64 => CpuStorage::I64(v.iter().map(|&x| x.floor() as i64).collect::<Vec<_>>().into()),
        DType::F16 => CpuStorage::F16(v.iter().map(|&x| half::f16::from_f64(x)).collect()),
        DType::BF16 => CpuStorage::BF16(v.iter().map(|&x| half::bf16::from_f64(x)).collect()),
    };
    Ok((Storage::from_host(data, device)?, Layout::contiguous(shape)))
}

fn floats(device: Device) -> Vec<DType> {
    [DType::F32, DType::F64].into_iter().filter(|&d| supports(device, d)).collect()
}

/// f32: 1e-5; f64: `f64_tol`.
fn tol(dtype: DType, f64_tol: f64) -> f64 {
    if dtype == DType::F32 {
        1e-5
    } else {
        f64_tol
    }
}

#[test]
fn missing_devices_are_errors() {
    for device in [Device::Wgpu(7), Device::Cuda(0), Device::Cuda(3)] {
        #[cfg(feature = "cuda")]
        if device == Device::Cuda(0) && gpu_devices().contains(&device) {
            continue;
        }
        match Storage::from_host(CpuStorage::F32(vec![1.0].into()), device) {
            Err(Error::DeviceUnavailable { device: d, reason }) => {
                assert_eq!(d, device);
                assert!(!reason.is_empty());
            }
            other => panic!("{device}: expected DeviceUnavailable, got {other:?}"),
        }
        assert!(matches!(Storage::fill(device, 3, DType::F32, 0.0), Err(Error::DeviceUnavailable { .. })));
    }
}

#[test]
fn impossible_allocations_are_out_of_memory_errors_on_every_device() {
    // 2^40 f32 = 4 TiB: more than any device here (and than one GPU buffer may hold).
    let mut devices = vec![Device::Cpu];
    devices.extend(gpu_devices());
    for device in devices {
        match Storage::fill(device, 1 << 40, DType::F32, 0.0) {
            Err(Error::OutOfMemory { bytes, device: d, .. }) => {
                assert_eq!((bytes, d), (1u128 << 42, device));
            }
            other => panic!("{device}: expected OutOfMemory, got {other:?}"),
        }
        // The device stays usable afterwards.
        let s = Storage::fill(device, 3, DType::F32, 2.0).unwrap();
        assert_eq!(s.to_host(&Layout::contiguous(&[3])).unwrap(), CpuStorage::F32(vec![2.0; 3].into()));
    }
}

#[test]
fn mixing_devices_is_an_error_naming_both() {
    for device in gpu_devices() {
        let (a, l) = input(Device::Cpu, DType::F32, &[3], 1, -1.0, 1.0).unwrap();
        let (b, _) = input(device, DType::F32, &[3], 2, -1.0, 1.0).unwrap();
        let err = a.binary(BinaryOp::Add, &l, &b, &l).unwrap_err();
        assert!(matches!(err, Error::Device { a: Device::Cpu, b, .. } if b == device), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("cpu") && msg.contains(&device.to_string()), "{msg}");
        assert!(matches!(b.matmul(&l.unsqueeze(0).unwrap(), &a, &l.unsqueeze(1).unwrap()), Err(Error::Device { .. })));
    }
}

#[test]
fn host_round_trip_and_to_device() {
    check("round_trip", |d| {
        let mut outs = Vec::new();
        for dtype in [DType::F32, DType::F64, DType::I64] {
            if !supports(d, dtype) {
                continue;
            }
            let (x, l) = input(d, dtype, &[3, 517], 3, -50.0, 50.0)?;
            outs.push(out(format!("{dtype}"), &x, &l, 0.0)?);
            // to_device and back, through a transposed view
            let t = l.transpose(0, 1)?;
            let moved = x.to_device(&t, Device::Cpu)?.to_device(&Layout::contiguous(t.shape()), d)?;
            outs.push(res(format!("{dtype} moved"), moved, t.shape(), 0.0)?);
            // empty tensors
            let e = Storage::from_host(CpuStorage::from_vec(Vec::<f32>::new()), d)?;
            outs.push(out("empty", &e, &Layout::contiguous(&[0, 4]), 0.0)?);
        }
        Ok(outs)
    });
}

#[test]
fn fill_and_rand() {
    check("fill_rand", |d| {
        let mut outs = Vec::new();
        for dtype in [DType::F32, DType::F64, DType::I64] {
            if supports(d, dtype) {
                outs.push(res(format!("fill {dtype}"), Storage::fill(d, 1000, dtype, -2.75)?, &[1000], 0.0)?);
            }
        }
        for dtype in floats(d) {
            let u = Storage::rand(d, 4099, dtype, Distribution::Uniform { lo: -2.0, hi: 3.0 }, 42)?;
            outs.push(res(format!("uniform {dtype}"), u, &[4099], tol(dtype, 1e-15))?);
            let z = Storage::rand(d, 3001, dtype, Distribution::Normal { mean: 1.0, std: 2.0 }, 7)?;
            // The GPU's ln/cos are the device's own (f32 precision on some devices).
            outs.push(res(format!("normal {dtype}"), z, &[3001], 1e-5)?);
        }
        Ok(outs)
    });
}

#[test]
fn copy_strided_views() {
    check("copy_strided", |d| {
        let mut outs = Vec::new();
        for dtype in [DType::F32, DType::F64, DType::I64] {
            if !supports(d, dtype) {
                continue;
            }
            let (x, l) = input(d, dtype, &[5, 7, 37], 4, -9.0, 9.0)?;
            let views = [
                ("transposed", l.transpose(0, 2)?),
                ("permuted", l.permute(&[1, 2, 0])?),
                ("narrowed", l.narrow(2, 3, 30)?.narrow(0, 1, 3)?),
                ("broadcast", l.narrow(1, 2, 1)?.broadcast_as(&[4, 5, 3, 37])?),
                ("scalar", l.narrow(0, 2, 1)?.narrow(1, 3, 1)?.narrow(2, 5, 1)?.squeeze(0)?.squeeze(0)?.squeeze(0)?),
            ];
            for (name, v) in views {
                outs.push(res(format!("{name} {dtype}"), x.copy_strided(&v)?, v.shape(), 0.0)?);
            }
        }
        Ok(outs)
    });
}

#[test]
fn casts() {
    check("cast", |d| {
        let mut outs = Vec::new();
        let dtypes: Vec<_> = [DType::F32, DType::F64, DType::I64].into_iter().filter(|&t| supports(d, t)).collect();
        for &from in &dtypes {
            let (x, l) = input(d, from, &[9, 33], 5, -100.0, 100.0)?;
            let t = l.transpose(0, 1)?;
            for &to in &dtypes {
                outs.push(res(format!("{from}->{to}"), x.cast(&t, to)?, t.shape(), 0.0)?);
            }
        }
        Ok(outs)
    });
}

const UNARY: [UnaryOp; 21] = [
    UnaryOp::Neg,
    UnaryOp::Abs,
    UnaryOp::Exp,
    UnaryOp::Log,
    UnaryOp::Sqrt,
    UnaryOp::Rsqrt,
    UnaryOp::Recip,
    UnaryOp::Tanh,
    UnaryOp::Sigmoid,
    UnaryOp::Relu,
    UnaryOp::Gelu,
    UnaryOp::GeluGrad,
    UnaryOp::Erf,
    UnaryOp::Sin,
    UnaryOp::Cos,
    UnaryOp::Sign,
    UnaryOp::Step,
    UnaryOp::Powf(2.5),
    UnaryOp::Clamp(-0.5, 0.75),
    UnaryOp::InRange(-0.5, 0.75),
    UnaryOp::Affine(3.0, -1.5),
];

#[test]
fn unary_ops() {
    check("unary", |d| {
        let mut outs = Vec::new();
        for dtype in floats(d) {
            // [-3, 3) for most ops, [0.1, 4) for log, sqrt, rsqrt, powf; 1000 = 3*256 + 232.
            let (x, l) = input(d, dtype, &[40, 25], 6, -3.0, 3.0)?;
            let (p, lp) = input(d, dtype, &[40, 25], 7, 0.1, 4.0)?;
            let (t, tp) = (l.transpose(0, 1)?, lp.transpose(0, 1)?);
            for op in UNARY {
                let positive = matches!(op, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Powf(_));
                let (s, v) = if positive { (&p, &tp) } else { (&x, &t) };
                // f64 transcendental functions of the device: 1e-9 (erf/gelu: libm's on the
                // CPU, a series and a continued fraction accurate to ~1e-15 on the GPU)
                outs.push(res(format!("{op:?} {dtype}"), s.unary(op, v)?, v.shape(), tol(dtype, 1e-9))?);
            }
        }
        if supports(d, DType::F64) {
            // f64 erf over every branch of the GPU's (series below 2.5, continued fraction
            // above, 1 beyond 6), where both sides are exact to about 1e-15
            let (w, lw) = input(d, DType::F64, &[700], 9, -7.0, 7.0)?;
            outs.push(res("Erf f64 on [-7, 7)", w.unary(UnaryOp::Erf, &lw)?, &[700], 1e-14)?);
        }
        if supports(d, DType::I64) {
            let (x, l) = input(d, DType::I64, &[300], 8, -50.0, 50.0)?;
            for op in [UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Sign, UnaryOp::Affine(3.0, -2.0)] {
                outs.push(res(format!("{op:?} i64"), x.unary(op, &l)?, &[300], 0.0)?);
            }
            assert!(x.unary(UnaryOp::Exp, &l).is_err());
        }
        Ok(outs)
    });
}

const BINARY: [BinaryOp; 13] = [
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Pow,
    BinaryOp::Maximum,
    BinaryOp::Minimum,
    BinaryOp::Eq,
    BinaryOp::Ne,
    BinaryOp::Gt,
    BinaryOp::Ge,
    BinaryOp::Lt,
    BinaryOp::Le,
];

#[test]
fn binary_ops_broadcast_and_strided() {
    check("binary", |d| {
        let mut outs = Vec::new();
        for dtype in [DType::F32, DType::F64, DType::I64] {
            if !supports(d, dtype) {
                continue;
            }
            // a: [17, 31] transposed to [31, 17]; b: a row [17] broadcast (stride 0) to [31, 17].
            let (a, la) = input(d, dtype, &[17, 31], 9, 0.5, 4.0)?;
            let (b, lb) = input(d, dtype, &[17], 10, 0.5, 4.0)?;
            let (ta, tb) = (la.transpose(0, 1)?, lb.broadcast_as(&[31, 17])?);
            // Equal elements for the comparisons: compare a with itself narrowed.
            let same = la.transpose(0, 1)?;
            for op in BINARY {
                if dtype == DType::I64 && matches!(op, BinaryOp::Div | BinaryOp::Pow) {
                    assert!(a.binary(op, &ta, &b, &tb).is_err());
                    continue;
                }
                let t = tol(dtype, if op == BinaryOp::Pow { 1e-9 } else { 1e-15 });
                outs.push(res(format!("{op:?} {dtype}"), a.binary(op, &ta, &b, &tb)?, &[31, 17], t)?);
                outs.push(res(format!("{op:?} {dtype} rev"), b.binary(op, &tb, &a, &ta)?, &[31, 17], t)?);
                if op.is_comparison() {
                    outs.push(res(format!("{op:?} {dtype} self"), a.binary(op, &same, &a, &ta)?, &[31, 17], 0.0)?);
                }
            }
        }
        // NaN propagates through maximum/minimum.
        let nan = Storage::from_host(CpuStorage::F32(vec![f32::NAN, 1.0, 2.0].into()), d)?;
        let num = Storage::from_host(CpuStorage::F32(vec![0.0, f32::NAN, 3.0].into()), d)?;
        let l = Layout::contiguous(&[3]);
        for op in [BinaryOp::Maximum, BinaryOp::Minimum] {
            outs.push(res(format!("{op:?} nan"), nan.binary(op, &l, &num, &l)?, &[3], 0.0)?);
        }
        Ok(outs)
    });
}

#[test]
fn where_cond() {
    check("where", |d| {
        let mut outs = Vec::new();
        for dtype in floats(d) {
            let (c, lc) = input(d, dtype, &[19, 23], 11, -1.0, 1.0)?;
            let c = c.unary(UnaryOp::Step, &lc)?;
            let (a, la) = input(d, dtype, &[23, 19], 12, -5.0, 5.0)?;
            let (b, lb) = input(d, dtype, &[19], 13, -5.0, 5.0)?;
            let (ta, bb) = (la.transpose(0, 1)?, lb.unsqueeze(1)?.broadcast_as(&[19, 23])?);
            outs.push(res(format!("{dtype}"), c.where_cond(&lc, &a, &ta, &b, &bb)?, &[19, 23], 0.0)?);
        }
        Ok(outs)
    });
}

#[test]
fn reductions() {
    check("reduce", |d| {
        let mut outs = Vec::new();
        let shape = [6, 37, 29];
        for dtype in floats(d) {
            let (x, l) = input(d, dtype, &shape, 14, -3.0, 3.0)?;
            let t = l.permute(&[2, 0, 1])?; // non-contiguous [29, 6, 37]
            let axes: [&[usize]; 6] = [&[0], &[1], &[2], &[0, 2], &[1, 2], &[0, 1, 2]];
            for ax in axes {
                for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min] {
                    for (vname, v) in [("contig", &l), ("permuted", &t)] {
                        let mut oshape = v.shape().to_vec();
                        ax.iter().for_each(|&a| oshape[a] = 1);
                        // f32 sums: the CPU accumulates in f64, the GPU in f32.
                        let tl = if op == ReduceOp::Sum { tol(dtype, 1e-12) * 10.0 } else { 0.0 };
                        outs.push(res(format!("{op:?}{ax:?} {vname} {dtype}"), x.reduce(op, v, ax)?, &oshape, tl)?);
                    }
                }
            }
            for axis in 0..3 {
                for op in [ReduceOp::ArgMax, ReduceOp::ArgMin] {
                    let mut oshape = t.shape().to_vec();
                    oshape[axis] = 1;
                    outs.push(res(format!("{op:?}[{axis}] {dtype}"), x.reduce(op, &t, &[axis])?, &oshape, 0.0)?);
                }
            }
            // A long reduction (more than one block per output): 100_003 elements.
            let (y, ly) = input(d, dtype, &[100_003], 15, -1.0, 1.0)?;
            for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::ArgMin] {
                let tl = if op == ReduceOp::Sum { tol(dtype, 1e-12) * 100.0 } else { 0.0 };
                outs.push(res(format!("{op:?} long {dtype}"), y.reduce(op, &ly, &[0])?, &[1], tl)?);
            }
        }
        // Ties and NaN: argmax returns the first maximum; NaN counts as the extreme.
        let v = Storage::from_host(CpuStorage::F32(vec![1.0, 3.0, 3.0, 0.0, f32::NAN, 2.0, 5.0, f32::NAN].into()), d)?;
        let l = Layout::contiguous(&[2, 4]);
        for op in [ReduceOp::ArgMax, ReduceOp::ArgMin, ReduceOp::Max, ReduceOp::Min] {
            outs.push(res(format!("{op:?} ties/nan"), v.reduce(op, &l, &[1])?, &[2, 1], 0.0)?);
        }
        if supports(d, DType::I64) {
            let (x, l) = input(d, DType::I64, &[13, 300], 16, -1000.0, 1000.0)?;
            for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::ArgMax] {
                outs.push(res(format!("{op:?} i64"), x.reduce(op, &l, &[1])?, &[13, 1], 0.0)?);
            }
        }
        Ok(outs)
    });
}

#[test]
fn softmax() {
    check("softmax", |d| {
        let mut outs = Vec::new();
        for dtype in floats(d) {
            let (x, l) = input(d, dtype, &[7, 300, 5], 17, -8.0, 8.0)?;
            let t = l.transpose(0, 2)?;
            for axis in 0..3 {
                for log in [false, true] {
                    let s = x.softmax(&t, axis, log)?;
                    outs.push(res(format!("axis {axis} log {log} {dtype}"), s, t.shape(), tol(dtype, 1e-12))?);
                }
            }
        }
        Ok(outs)
    });
}

#[test]
fn matmul() {
    check("matmul", |d| {
        let mut outs = Vec::new();
        for dtype in floats(d) {
            // f32: the reduction length (k up to 300) scales the rounding error.
            let tl = tol(dtype, 1e-12) * 30.0;
            for (m, k, n) in [(1, 1, 1), (33, 65, 17), (128, 300, 129), (5, 1, 7)] {
                let (a, la) = input(d, dtype, &[m, k], 18, -1.0, 1.0)?;
                let (b, lb) = input(d, dtype, &[k, n], 19, -1.0, 1.0)?;
                outs.push(res(format!("{m}x{k}x{n} {dtype}"), a.matmul(&la, &b, &lb)?, &[m, n], tl)?);
                // Transposed operands: a^T stored as [k, m], b^T stored as [n, k].
                let (at, lat) = input(d, dtype, &[k, m], 20, -1.0, 1.0)?;
                let (bt, lbt) = input(d, dtype, &[n, k], 21, -1.0, 1.0)?;
                let (va, vb) = (lat.transpose(0, 1)?, lbt.transpose(0, 1)?);
                outs.push(res(format!("{m}x{k}x{n} T {dtype}"), at.matmul(&va, &bt, &vb)?, &[m, n], tl)?);
            }
            // Batched with a broadcast (stride-0) batch dim on the right operand, and a narrowed left one.
            let (a, la) = input(d, dtype, &[3, 2, 19, 40], 22, -1.0, 1.0)?;
            let (b, lb) = input(d, dtype, &[1, 33, 23], 23, -1.0, 1.0)?;
            let va = la.narrow(3, 3, 33)?;
            let vb = lb.broadcast_as(&[3, 2, 33, 23])?;
            outs.push(res(format!("batched {dtype}"), a.matmul(&va, &b, &vb)?, &[3, 2, 19, 23], tl)?);
        }
        Ok(outs)
    });
}

#[test]
fn conv2d_and_its_gradients() {
    check("conv2d", |d| {
        let mut outs = Vec::new();
        for dtype in floats(d) {
            let tl = tol(dtype, 1e-12) * 30.0;
            let cases = [
                (2, 3, 4, (11, 13), (3, 3), Conv2dParams::default()),
                (
                    1,
                    4,
                    6,
                    (9, 10),
                    (3, 2),
                    Conv2dParams { stride: (2, 1), padding: (1, 2), dilation: (1, 2), groups: 2 },
                ),
            ];
            for (i, (n, cin, cout, (h, w), (kh, kw), p)) in cases.into_iter().enumerate() {
                let (x, lx) = input(d, dtype, &[n, cin, h, w], 24, -1.0, 1.0)?;
                let (wt, lw) = input(d, dtype, &[cout, cin / p.groups, kh, kw], 25, -1.0, 1.0)?;
                let (oh, ow) = p.output_hw((h, w), (kh, kw)).unwrap();
                let y = x.conv2d(&lx, &wt, &lw, &p)?;
                outs.push(res(format!("fwd {i} {dtype}"), y, &[n, cout, oh, ow], tl)?);
                let (g, lg) = input(d, dtype, &[n, cout, oh, ow], 26, -1.0, 1.0)?;
                let gi = g.conv2d_grad_input(&lg, &wt, &lw, &p, (h, w))?;
                outs.push(res(format!("grad_input {i} {dtype}"), gi, &[n, cin, h, w], tl)?);
                let gw = x.conv2d_grad_weight(&lx, &g, &lg, &p, (kh, kw))?;
                outs.push(res(format!("grad_weight {i} {dtype}"), gw, &[cout, cin / p.groups, kh, kw], tl)?);
            }
            // A non-contiguous input: channels-last storage viewed as NCHW.
            let (x, lx) = input(d, dtype, &[2, 8, 9, 3], 27, -1.0, 1.0)?;
            let v = lx.permute(&[0, 3, 1, 2])?;
            let (wt, lw) = input(d, dtype, &[5, 3, 2, 2], 28, -1.0, 1.0)?;
            let y = x.conv2d(&v, &wt, &lw, &Conv2dParams::default())?;
            outs.push(res(format!("channels-last {dtype}"), y, &[2, 5, 7, 8], tl)?);
        }
        Ok(outs)
    });
}

fn indices(d: Device, v: &[i64]) -> Result<(Storage, Layout)> {
    Ok((Storage::from_host(CpuStorage::I64(v.to_vec().into()), d)?, Layout::contiguous(&[v.len()])))
}

#[test]
fn index_ops() {
    check("index", |d| {
        let mut outs = Vec::new();
        if !supports(d, DType::I64) {
            return Ok(outs);
        }
        for dtype in floats(d) {
            let (x, l) = input(d, dtype, &[6, 9, 5], 29, -5.0, 5.0)?;
            let t = l.transpose(0, 2)?; // [5, 9, 6]
            let (i, li) = indices(d, &[8, 0, 3, 3, 7])?;
            outs.push(res(format!("index_select {dtype}"), x.index_select(&t, 1, &i, &li)?, &[5, 5, 6], 0.0)?);
            // gather along dim 2 of the [5, 9, 6] view with an index of shape [5, 9, 4].
            let gi: Vec<i64> = (0..5 * 9 * 4).map(|k| ((k * 7 + 3) % 6) as i64).collect();
            let (g, lg) = (Storage::from_host(CpuStorage::I64(gi.clone().into()), d)?, Layout::contiguous(&[5, 9, 4]));
            outs.push(res(format!("gather {dtype}"), x.gather(&t, 2, &g, &lg)?, &[5, 9, 4], 0.0)?);
            // scatter_add of a [5, 9, 4] source into the [5, 9, 6] view, with repeated indices.
            let (s, ls) = input(d, dtype, &[5, 9, 4], 30, -1.0, 1.0)?;
            let sa = x.scatter_add(&t, 2, &g, &lg, &s, &ls)?;
            outs.push(res(format!("scatter_add {dtype}"), sa, &[5, 9, 6], tol(dtype, 1e-15))?);
            // cat along each dim of views: contiguous + transposed + narrowed.
            let (y, ly) = input(d, dtype, &[5, 9, 6], 31, -5.0, 5.0)?;
            let z = ly.narrow(1, 2, 4)?;
            let c = Storage::cat(&[(&x, &t), (&y, &z), (&x, &t)], 1)?;
            outs.push(res(format!("cat {dtype}"), c, &[5, 22, 6], 0.0)?);
            let c0 = Storage::cat(&[(&y, &ly), (&x, &t)], 0)?;
            outs.push(res(format!("cat0 {dtype}"), c0, &[10, 9, 6], 0.0)?);
        }
        Ok(outs)
    });
}

// ---- Tensor and nn on the GPU: moves, gradients, errors, a training run ----

use stategrad::autograd::{gradcheck, Tensor};
use stategrad::nn::optim::{Optimizer, Sgd, SgdConfig};
use stategrad::nn::{BatchNorm1d, Buffer, Forward, Linear, Module, Param};

#[test]
fn tensors_move_and_gradients_come_back() {
    for d in gpu_devices() {
        let x = Tensor::from_slice(&[1.0f32, -2.0, 3.0], &[3], Device::Cpu).unwrap().requires_grad(true).unwrap();
        let on_gpu = x.to_device(d).unwrap();
        assert_eq!(on_gpu.device(), d);
        assert_eq!(on_gpu.to_device(Device::Cpu).unwrap().to_vec::<f32>().unwrap(), vec![1.0, -2.0, 3.0]);
        let g = on_gpu.mul_scalar(2.0).unwrap().square().unwrap().sum_all().unwrap().backward().unwrap();
        let gx = g.get(&x).unwrap();
        assert_eq!(gx.device(), Device::Cpu, "the gradient of a CPU leaf lands on the CPU");
        assert_eq!(gx.to_vec::<f32>().unwrap(), vec![8.0, -16.0, 24.0]);
        let cpu = Tensor::ones(&[3], DType::F32, Device::Cpu).unwrap();
        let err = on_gpu.add(&cpu).unwrap_err();
        assert!(matches!(err, Error::Device { op: "add", .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("cpu") && msg.contains(&d.to_string()), "{msg}");
    }
}

#[derive(Module)]
struct Net {
    fc: Linear,
    bn: BatchNorm1d,
    scale: Param,
    table: Buffer,
    scratch: Buffer,
    plain: Tensor,
}

impl Net {
    fn new() -> Net {
        stategrad::autograd::manual_seed(7);
        Net {
            fc: Linear::new(5, 4).unwrap(),
            bn: BatchNorm1d::new(4).unwrap(),
            scale: Param::new(Tensor::full(&[4], 0.5, DType::F32, Device::Cpu).unwrap()),
            table: Buffer::new(Tensor::arange(0, 4, DType::F32, Device::Cpu).unwrap()),
            scratch: Buffer::non_persistent(Tensor::ones(&[4], DType::F32, Device::Cpu).unwrap()),
            plain: Tensor::zeros(&[2], DType::F32, Device::Cpu).unwrap(),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.bn.forward(&self.fc.forward(x)?)?.relu()?;
        h.mul(&self.scale.tensor()?)?.add(&self.table.tensor())?.mul(&self.scratch.tensor())
    }
}

#[test]
fn module_to_device_moves_every_param_and_buffer_and_nothing_else() {
    for d in gpu_devices() {
        let net = Net::new();
        let before = net.state_dict();
        let before: Vec<(String, Vec<f64>)> =
            before.iter().map(|(k, t)| (k.to_string(), t.to_f64_vec().unwrap())).collect();
        net.to_device(d).unwrap();
        for (name, p) in net.named_parameters() {
            assert_eq!(p.device(), d, "parameter {name}");
        }
        for (name, b) in net.named_buffers() {
            assert_eq!(b.tensor().device(), d, "buffer {name} (persistent or not)");
        }
        assert_eq!(net.plain.device(), Device::Cpu, "a plain tensor field is not state");
        // train a step there, then bring the state back and compare with a CPU twin
        let x = Tensor::randn(&[6, 5], 0.0, 1.0, DType::F32, Device::Cpu).unwrap();
        let net_cpu = Net::new();
        let mut opt_gpu = Sgd::new(net.parameters(), SgdConfig::new(0.1)).unwrap();
        let mut opt_cpu = Sgd::new(net_cpu.parameters(), SgdConfig::new(0.1)).unwrap();
        for _ in 0..3 {
            let loss = net.forward(&x.to_device(d).unwrap()).unwrap().square().unwrap().mean_all().unwrap();
            opt_gpu.step(&loss.backward().unwrap()).unwrap();
            let loss = net_cpu.forward(&x).unwrap().square().unwrap().mean_all().unwrap();
            opt_cpu.step(&loss.backward().unwrap()).unwrap();
        }
        net.to_device(Device::Cpu).unwrap();
        for ((k, a), (_, b)) in net.state_dict().iter().zip(net_cpu.state_dict().iter()) {
            let (a, b) = (a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap());
            assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-4 * (1.0 + y.abs())), "{k}: {a:?} vs {b:?}");
        }
        assert!(before.iter().any(|(k, v)| net.state_dict().get(k).unwrap().to_f64_vec().unwrap() != *v));
    }
}

#[test]
fn gradcheck_on_the_gpu() {
    for d in gpu_devices() {
        if !supports(d, DType::F64) {
            eprintln!("{d}: no f64, gradcheck in f64 skipped on this device");
            continue;
        }
        let leaf = |shape: &[usize], seed| {
            let dist = Distribution::Uniform { lo: -1.0, hi: 1.0 };
            Tensor::rand_seeded(shape, dist, DType::F64, d, seed).unwrap().requires_grad(true).unwrap()
        };
        let check = |name: &str, r: Result<stategrad::autograd::GradcheckReport>| {
            if let Err(e) = r {
                panic!("{d}: gradcheck of {name}: {e}");
            }
        };
        check("mul (broadcast)", gradcheck(|x| x[0].mul(&x[1]), &[leaf(&[3, 4], 1), leaf(&[4], 2)]));
        check("matmul (transposed)", gradcheck(|x| x[0].t()?.matmul(&x[1]), &[leaf(&[4, 3], 3), leaf(&[4, 2], 4)]));
        check("softmax", gradcheck(|x| x[0].softmax(1), &[leaf(&[3, 5], 5)]));
        check("log_softmax + sum", gradcheck(|x| x[0].log_softmax(0)?.sum(1, false), &[leaf(&[4, 3], 6)]));
        let p = Conv2dParams { stride: (2, 1), padding: (1, 1), ..Default::default() };
        check(
            "conv2d",
            gradcheck(move |x| x[0].conv2d(&x[1], None, p), &[leaf(&[2, 3, 5, 4], 7), leaf(&[2, 3, 3, 2], 8)]),
        );
    }
}

#[test]
fn out_of_range_indices_are_immediate_errors_on_the_cpu() {
    // On a GPU the same errors are deferred to the next read-back: tests/gpu_path.rs.
    let d = Device::Cpu;
    let x = Tensor::ones(&[3, 4], DType::F32, d).unwrap();
    let bad = Tensor::from_slice(&[0i64, 3], &[2], d).unwrap();
    let e = x.index_select(0, &bad).unwrap_err();
    assert!(matches!(e, Error::Index { op: "index_select", index: 3, size: 3, .. }), "{d}: {e}");
    let neg = Tensor::from_slice(&[-1i64, 0, 1, 2], &[1, 4], d).unwrap();
    let e = x.gather(0, &neg).unwrap_err();
    assert!(matches!(e, Error::Index { op: "gather", index: -1, .. }), "{d}: {e}");
    let ok = Tensor::from_slice(&[2i64, 0], &[2], d).unwrap();
    assert_eq!(x.index_select(0, &ok).unwrap().shape(), &[2, 4]);
}

#[test]
fn fused_optimizer_steps_equal_the_tensor_op_reference_on_every_device() {
    for d in gpu_devices() {
        for dtype in floats(d) {
            for config in optim_cases::configs() {
                let what = format!("{} {dtype} on {d}", config.name);
                let fused = optim_cases::trajectory(&config, d, dtype, true).unwrap_or_else(|e| panic!("{what}: {e}"));
                let reference = optim_cases::trajectory(&config, d, dtype, false).unwrap();
                optim_cases::assert_close(
                    &format!("{what}: fused vs tensor ops"),
                    &fused,
                    &reference,
                    tol(dtype, 1e-12),
                );
                let cpu = optim_cases::trajectory(&config, Device::Cpu, dtype, true).unwrap();
                optim_cases::assert_close(&format!("{what}: vs the CPU"), &fused, &cpu, tol(dtype, 1e-12));
            }
        }
    }
}

/// The porting ops (issue 14) on every GPU as on the CPU: forward values and the gradient
/// of `sum(w * op(x))` for a fixed random `w`, in f32 and (where the device has it) f64, on
/// contiguous, transposed and broadcast inputs; and a gradcheck in f64 on the device for
/// the smooth ones. They are composites of the kernels checked above, so this checks the
/// composition (views, index kernels, scans, masks) on the device.
#[test]
fn porting_ops_and_their_gradients_match_the_cpu_on_every_device() {
    use stategrad::autograd::{s, TensorIndex, ELLIPSIS};
    type Op = fn(&Tensor, &Tensor) -> Result<Tensor>;
    let ops: [(&str, Op); 20] = [
        ("slice 1::2", |x, _| x.slice(1, 1, 6, 2)),
        ("x[..., 0::2]", |x, _| x.i((ELLIPSIS, s(0.., 2)))),
        ("x[:, -1]", |x, _| x.i((.., TensorIndex::Index(-1)))),
        ("max_dim", |x, _| Ok(x.max_dim(-1, false)?.0)),
        ("min_dim keepdim", |x, _| Ok(x.min_dim(0, true)?.0)),
        ("sort descending", |x, _| Ok(x.sort(1, true)?.0)),
        ("topk", |x, _| Ok(x.topk(2, 1, true, true)?.0)),
        ("cumsum", |x, _| x.cumsum(1)),
        ("cumprod", |x, _| x.cumprod(-1)),
        ("logsumexp", |x, _| x.logsumexp(vec![1i64], false)),
        ("var", |x, _| x.var(vec![-1i64], 1, true)),
        ("std", |x, _| x.std(vec![0i64], 0, false)),
        ("norm 2", |x, _| x.norm(2.0, vec![1i64], false)),
        ("norm 3", |x, _| x.norm(3.0, vec![0i64, 1], false)),
        ("einsum ij,kj->ik", |x, y| Tensor::einsum("ij,kj->ik", &[x, y])),
        ("masked_fill", |x, y| x.masked_fill(&y.gt_scalar(0.0)?, -4.0)),
        ("tril/triu", |x, _| x.tril(1)?.triu(-1)),
        ("slice_scatter", |x, y| x.slice_scatter(&y.slice(1, 0, 3, 1)?.mul_scalar(2.0)?, 1, 0, i64::MAX, 2)),
        ("gelu_tanh", |x, _| x.gelu_tanh()),
        ("erf", |x, _| x.erf()),
    ];
    // x: [4, 6] in three layouts, made on the device itself; y: [4, 6] (einsum contracts
    // over its 6 columns)
    let layout = |which: usize, x: Tensor| -> Result<Tensor> {
        match which {
            0 => Ok(x),
            1 => x.t()?.contiguous()?.t(),
            _ => x.narrow(0, 1, 1)?.expand(&[4, 6]),
        }
    };
    let dist = Distribution::Uniform { lo: -1.5, hi: 1.5 };
    for d in gpu_devices() {
        for dtype in floats(d) {
            // composites of several kernels: f32 1e-4 relative, f64 1e-9 (transcendental kernels)
            let tol = if dtype == DType::F32 { 1e-4 } else { 1e-9 };
            let base = Tensor::rand_seeded(&[4, 6], dist, dtype, Device::Cpu, 31).unwrap();
            let y = Tensor::rand_seeded(&[4, 6], dist, dtype, Device::Cpu, 32).unwrap();
            for (li, lname) in ["contiguous", "transposed", "broadcast"].into_iter().enumerate() {
                for (name, op) in ops {
                    let run = |device: Device| -> Result<(Vec<f64>, Vec<f64>)> {
                        let x = layout(li, base.to_device(device)?)?.requires_grad(true)?;
                        let out = op(&x, &y.to_device(device)?)?;
                        let w = Tensor::rand_seeded(out.shape(), dist, dtype, Device::Cpu, 33)?.to_device(device)?;
                        let g = out.mul(&w)?.sum_all()?.backward()?;
                        let gx = g.get(&x).expect("a gradient for x").to_dtype(DType::F64)?;
                        Ok((out.to_dtype(DType::F64)?.to_vec::<f64>()?, gx.to_vec::<f64>()?))
                    };
                    let what = format!("{name} ({lname}, {dtype}) on {d}");
                    let (co, cg) = run(Device::Cpu).unwrap_or_else(|e| panic!("{what}: cpu: {e}"));
                    let (go, gg) = run(d).unwrap_or_else(|e| panic!("{what}: {e}"));
                    for (part, c, g) in [("output", &co, &go), ("gradient", &cg, &gg)] {
                        assert_eq!(c.len(), g.len(), "{what}: {part} length");
                        for (i, (a, b)) in c.iter().zip(g).enumerate() {
                            // std over equal (broadcast) rows: 0/0 on both, as in PyTorch
                            let both_nan = a.is_nan() && b.is_nan();
                            assert!(
                                both_nan || (a - b).abs() <= tol * (1.0 + a.abs()),
                                "{what}: {part}[{i}]: cpu {a}, gpu {b}"
                            );
                        }
                    }
                }
            }
        }
        if !supports(d, DType::F64) {
            eprintln!("{d}: no f64, gradcheck of the porting ops skipped on this device");
            continue;
        }
        // Smooth ones (sort/topk/max are piecewise: their values above suffice).
        for (name, op) in
            ops.iter().filter(|(n, _)| !n.contains("max") && !n.contains("min") && !n.contains("sort") && *n != "topk")
        {
            let x = Tensor::rand_seeded(&[4, 6], Distribution::Uniform { lo: 0.2, hi: 1.5 }, DType::F64, d, 41)
                .unwrap()
                .requires_grad(true)
                .unwrap();
            let y = Tensor::rand_seeded(&[4, 6], dist, DType::F64, d, 42).unwrap();
            if let Err(e) = gradcheck(|v| op(&v[0], &y), &[x]) {
                panic!("{d}: gradcheck of {name}: {e}");
            }
        }
    }
}

/// A checkpoint loads onto a GPU: into a model already there (each tensor uploaded from the
/// file's mapping) and into a deferred model materialised there by the load (issue 12).
#[test]
fn checkpoints_load_onto_every_device_eagerly_and_deferred() {
    use stategrad::nn::{deferred, LoadOptions};
    let dir = std::env::temp_dir().join(format!("stategrad-parity-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let src = Linear::new(6, 5).unwrap();
    src.save_safetensors(&path).unwrap();
    let want: Vec<(String, Vec<u32>)> = src
        .state_dict()
        .iter()
        .map(|(k, t)| (k.to_string(), t.to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()))
        .collect();
    for d in gpu_devices() {
        let eager = Linear::new(6, 5).unwrap();
        eager.to_device(d).unwrap();
        eager.load_safetensors(&path, true).unwrap();
        let lazy = deferred(|| Linear::new(6, 5).unwrap());
        let report = lazy.load_safetensors_with(&path, &LoadOptions::default().device(d)).unwrap();
        assert_eq!(report.loaded.len(), want.len(), "{d}: deferred load");
        for (how, m) in [("eager", &eager), ("deferred", &lazy)] {
            for (name, p) in m.named_parameters() {
                assert_eq!(p.device(), d, "{how} {name} on {d}");
            }
            let got: Vec<(String, Vec<u32>)> = m
                .state_dict()
                .iter()
                .map(|(k, t)| {
                    let host = t.to_device(Device::Cpu).unwrap().to_vec::<f32>().unwrap();
                    (k.to_string(), host.iter().map(|v| v.to_bits()).collect())
                })
                .collect();
            assert_eq!(got, want, "{how} load on {d}: the file's bits");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
