//! Data-parallel cases, each run by every rank of a process group: the in-process suite
//! (tests/data_parallel.rs) runs them on 2 threads, the MPI suite (tests/mpi_data_parallel.rs)
//! on 2 processes. A case returns an error naming what differed; ranks compare results with
//! each other through the group itself.
#![allow(dead_code)]
use std::sync::Arc;

use stategrad::dist::{DataParallel, ProcessGroup, SyncBatchNorm, SyncConfig, SyncPolicy};
use stategrad::nn::optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use stategrad::nn::{BatchNorm1d, Buffer, Forward, Linear, Module, Param, StateDict};
use stategrad::prelude::*;

pub type Group = Arc<dyn ProcessGroup>;

fn fail(msg: String) -> Error {
    Error::argument("dp case", msg)
}

fn close(what: &str, a: &[f64], b: &[f64], tol: f64) -> Result<()> {
    if a.len() != b.len() {
        return Err(fail(format!("{what}: lengths {} and {}", a.len(), b.len())));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if (x - y).abs() > tol * (1.0 + y.abs()) {
            return Err(fail(format!("{what}[{i}]: {x} vs {y} (tol {tol})")));
        }
    }
    Ok(())
}

fn same_on_all_ranks(g: &Group, what: &str, v: &[f64]) -> Result<()> {
    let all = g.all_gather_f64("check", v)?;
    for (r, other) in all.iter().enumerate() {
        if other.iter().map(|x| x.to_bits()).ne(v.iter().map(|x| x.to_bits())) {
            return Err(fail(format!("{what}: rank {r} differs from rank {} (not bit-identical)", g.rank())));
        }
    }
    Ok(())
}

/// Two-layer tanh MLP, f64.
#[derive(Module)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
}

impl Forward for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(x)?.tanh()?)
    }
}

fn mlp() -> Result<Mlp> {
    let m = Mlp { fc1: Linear::new(5, 7)?, fc2: Linear::new(7, 3)? };
    m.to_dtype(DType::F64)?;
    Ok(m)
}

fn data(n: usize, cols: usize, salt: f64) -> Result<Tensor> {
    let v: Vec<f64> = (0..n * cols).map(|i| ((i as f64 * 0.37 + salt).sin() * 1.3).tanh()).collect();
    Tensor::from_vec(v, &[n, cols], Device::Cpu)
}

fn flat_params(m: &dyn Module) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for p in m.parameters() {
        out.extend(p.data().to_f64_vec()?);
    }
    Ok(out)
}

/// 2 ranks with half the batch each = 1 rank with the whole batch, after 5 SGD (momentum)
/// and 5 Adam steps, to 1e-12 in f64; every rank's parameters bit-identical.
pub fn equals_single_rank(g: Group) -> Result<()> {
    let n = g.world_size();
    let reference = mlp()?;
    // Every rank builds the same reference init (a formula, not the RNG); rank 0's replica
    // starts from it, the others from their own random init (the wrapper must fix that).
    let fixed: Vec<(String, Tensor)> = reference
        .state_dict()
        .iter()
        .map(|(k, t)| {
            let v: Vec<f64> = (0..t.numel()).map(|i| ((i as f64 + k.len() as f64) * 0.711).cos() * 0.4).collect();
            Ok((k.to_string(), Tensor::from_vec(v, t.shape(), Device::Cpu)?))
        })
        .collect::<Result<_>>()?;
    let load = |m: &Mlp| -> Result<()> {
        let mut sd = StateDict::new();
        for (k, t) in &fixed {
            sd.insert(k.clone(), t.clone());
        }
        m.load_state_dict(&sd, true).map(|_| ())
    };
    load(&reference)?;
    let model = mlp()?;
    if g.rank() == 0 {
        load(&model)?;
    }
    let dp = DataParallel::new(model, g.clone(), SyncConfig::default())?;
    close("params after construction", &flat_params(&dp)?, &flat_params(&reference)?, 0.0)?;

    let batch = 8;
    let per = batch / n;
    let mut opt_ref: Box<dyn Optimizer> =
        Box::new(Sgd::new(reference.parameters(), SgdConfig { momentum: 0.9, ..SgdConfig::new(0.1) })?);
    let mut opt: Box<dyn Optimizer> =
        Box::new(Sgd::new(dp.parameters(), SgdConfig { momentum: 0.9, ..SgdConfig::new(0.1) })?);
    for step in 0..10 {
        if step == 5 {
            opt_ref = Box::new(Adam::new(reference.parameters(), AdamConfig::new(0.01))?);
            opt = Box::new(Adam::new(dp.parameters(), AdamConfig::new(0.01))?);
        }
        let x = data(batch, 5, step as f64)?;
        let y = data(batch, 3, 10.0 + step as f64)?;
        let loss = stategrad::nn::functional::mse(&reference.forward(&x)?, &y)?;
        opt_ref.step(&loss.backward()?)?;
        let (xr, yr) = (x.narrow(0, g.rank() * per, per)?, y.narrow(0, g.rank() * per, per)?);
        let loss = stategrad::nn::functional::mse(&dp.forward(&xr)?, &yr)?;
        let grads = dp.backward(&loss)?;
        let gw: Vec<f64> = dp.module().fc1.weight.grad(&grads).map(|t| t.to_f64_vec()).transpose()?.unwrap_or_default();
        same_on_all_ranks(&g, "averaged gradient", &gw)?;
        opt.step(&grads)?;
        close(&format!("params after step {}", step + 1), &flat_params(&dp)?, &flat_params(&reference)?, 1e-12)?;
    }
    same_on_all_ranks(&g, "final params", &flat_params(&dp)?)?;
    // The wrapper's state_dict has exactly the model's names.
    let names: Vec<String> = dp.state_dict().keys().map(String::from).collect();
    let plain: Vec<String> = reference.state_dict().keys().map(String::from).collect();
    if names != plain {
        return Err(fail(format!("state_dict names {names:?} vs {plain:?}")));
    }
    Ok(())
}

/// The seed's case: a 64 MiB non-persistent buffer.
#[derive(Module)]
pub struct WithTable {
    pub fc: Linear,
    pub table: Buffer,
}

impl Forward for WithTable {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc.forward(x)
    }
}

pub const TABLE_ELEMS: usize = 8 << 20; // 8M f64 = 64 MiB

/// A 64 MiB non-persistent buffer: rank 0's reaches every rank at construction, is sent
/// exactly once in 3 steps, is absent from the checkpoint (rank 0 saves, every rank loads)
/// and moves with the replica's device.
pub fn big_buffer(g: Group, device: Device, dir: &std::path::Path) -> Result<()> {
    let fill = if g.rank() == 0 { 1.5 } else { -7.0 };
    let model = WithTable {
        fc: Linear::new(4, 2)?,
        table: Buffer::non_persistent(Tensor::full(&[TABLE_ELEMS], fill, DType::F64, Device::Cpu)?),
    };
    model.to_dtype(DType::F64)?;
    model.to_device(device)?;
    if g.rank() == 0 {
        // A recognisable pattern at both ends.
        let mut v = vec![1.5; TABLE_ELEMS];
        v[0] = 42.0;
        v[TABLE_ELEMS - 1] = -3.25;
        model.table.set(Tensor::from_vec(v, &[TABLE_ELEMS], device)?)?;
    }
    let dp = DataParallel::new(model, g.clone(), SyncConfig::default())?;
    let policies = dp.buffer_policies();
    if policies != [("table".to_string(), SyncPolicy::Once)] {
        return Err(fail(format!("non-persistent default policy: {policies:?}")));
    }
    let mut opt = Sgd::new(dp.parameters(), SgdConfig::new(0.1))?;
    for step in 0..3 {
        let x = data(2, 4, step as f64 + g.rank() as f64)?.to_device(device)?;
        let t = dp.module().table.tensor().narrow(0, 0, 2)?.reshape(&[2, 1])?;
        let out = dp.forward(&x)?.mul(&t)?.sum_all()?;
        opt.step(&dp.backward(&out)?)?;
    }
    let table = dp.module().table.tensor();
    if table.device() != device {
        return Err(fail(format!("table on {} not {device}", table.device())));
    }
    let v = table.to_vec::<f64>()?;
    let sum: f64 = v.iter().sum();
    same_on_all_ranks(&g, "table", &[v[0], v[TABLE_ELEMS - 1], sum])?;
    if v[0] != 42.0 || v[TABLE_ELEMS - 1] != -3.25 || v[1] != 1.5 {
        return Err(fail("table is not rank 0's".into()));
    }
    let sends = dp.traffic().buffer_sends.get("table").copied();
    if sends != Some(1) {
        return Err(fail(format!("table sent {sends:?} times in construction + 3 steps, not once")));
    }
    let path = dir.join("with_table.safetensors");
    if dp.state_dict().contains_key("table") {
        return Err(fail("non-persistent table in the state_dict".into()));
    }
    if g.rank() == 0 {
        dp.save_safetensors(&path)?;
    }
    g.barrier("checkpoint written")?;
    let size = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
    if size > 1 << 20 {
        return Err(fail(format!("checkpoint of {size} bytes holds the table")));
    }
    dp.load_safetensors(&path, true)?;
    g.barrier("checkpoint read")?;
    Ok(())
}

/// Linear then BatchNorm1d, f64.
#[derive(Module)]
pub struct WithBn {
    pub fc: Linear,
    pub bn: BatchNorm1d,
}

impl Forward for WithBn {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.bn.forward(&self.fc.forward(x)?)
    }
}

/// Each buffer policy's effect on BatchNorm running statistics after 3 steps on different
/// data per rank (rank 1's statistics start away from rank 0's).
pub fn buffer_policies(g: Group) -> Result<()> {
    for policy in [SyncPolicy::Broadcast, SyncPolicy::Average, SyncPolicy::Local, SyncPolicy::Once] {
        let model = WithBn { fc: Linear::new(3, 4)?, bn: BatchNorm1d::new(4)? };
        model.to_dtype(DType::F64)?;
        model.bn.running_mean.set(Tensor::full(&[4], g.rank() as f64 * 5.0, DType::F64, Device::Cpu)?)?;
        let cfg = SyncConfig::default().buffers("bn.running_*", policy);
        let dp = DataParallel::new(model, g.clone(), cfg)?;
        let rm = || dp.module().bn.running_mean.tensor().to_f64_vec();
        let at_start = g.all_gather_f64("policy check", &rm()?)?;
        let mut opt = Sgd::new(dp.parameters(), SgdConfig::new(0.05))?;
        for step in 0..3 {
            let x = data(6, 3, (step * 7 + g.rank() * 13) as f64)?;
            let loss = dp.forward(&x)?.square()?.sum_all()?;
            opt.step(&dp.backward(&loss)?)?;
        }
        let before = g.all_gather_f64("policy check", &rm()?)?;
        dp.sync_buffers()?;
        let after = g.all_gather_f64("policy check", &rm()?)?;
        let me = g.rank();
        let name = format!("{policy:?}");
        match policy {
            SyncPolicy::Broadcast => {
                for a in &after {
                    close(&name, a, &before[0], 0.0)?;
                }
            }
            SyncPolicy::Average => {
                let mean: Vec<f64> =
                    (0..4).map(|i| before.iter().map(|b| b[i]).sum::<f64>() / before.len() as f64).collect();
                close(&name, &after[me], &mean, 1e-15)?;
                same_on_all_ranks(&g, &name, &after[me])?;
            }
            SyncPolicy::Local => {
                if at_start[1][0] != 5.0 || at_start[0][0] != 0.0 {
                    return Err(fail(format!("Local buffers were sent at construction: {at_start:?}")));
                }
                close(&name, &after[me], &before[me], 0.0)?;
                if after[0] == after[1] {
                    return Err(fail("Local: ranks ended equal".into()));
                }
            }
            SyncPolicy::Once => {
                close(&name, &at_start[1], &at_start[0], 0.0)?;
                close(&name, &after[me], &before[me], 0.0)?;
                if after[0] == after[1] {
                    return Err(fail("Once: ranks ended equal although they saw different data".into()));
                }
            }
        }
        // num_batches_tracked keeps the persistent default, Broadcast.
        same_on_all_ranks(&g, "num_batches_tracked", &dp.module().bn.num_batches_tracked.tensor().to_f64_vec()?)?;
    }
    Ok(())
}

/// `y = w * x * s` with a persistent buffer `s` that the forward itself bumps (`s <- s + 1`):
/// two forwards (each preceded by a Broadcast sync of `s`) then one backward: the gradient
/// uses the `s` each forward saw, untouched by the later syncs.
#[derive(Module)]
pub struct Scaled {
    pub w: Param,
    pub s: Buffer,
}

impl Forward for Scaled {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = self.s.tensor();
        let y = self.w.tensor()?.mul(x)?.mul(&s)?;
        self.s.set(s.add_scalar(1.0)?)?;
        Ok(y)
    }
}

pub fn two_forwards_one_backward(g: Group) -> Result<()> {
    let start = if g.rank() == 0 { 2.0 } else { 100.0 };
    let model = Scaled {
        w: Param::new(Tensor::from_slice(&[3.0f64], &[1], Device::Cpu)?),
        s: Buffer::new(Tensor::from_slice(&[start], &[1], Device::Cpu)?),
    };
    let dp = DataParallel::new(model, g.clone(), SyncConfig::default())?;
    let x = Tensor::from_slice(&[1.0 + g.rank() as f64], &[1], Device::Cpu)?;
    // Make rank 1's buffer drift so that each sync really replaces it.
    if g.rank() == 1 {
        dp.module().s.set(Tensor::from_slice(&[-50.0f64], &[1], Device::Cpu)?)?;
    }
    let y1 = dp.forward(&x)?; // s = 2 (rank 0's), then rank 0 bumps to 3
    let y2 = dp.forward(&x)?; // synced: s = 3
    let grads = dp.backward(&y1.add(&y2)?.sum_all()?)?;
    let gw = dp.module().w.grad(&grads).ok_or_else(|| fail("no gradient for w".into()))?.to_f64_vec()?;
    // d/dw = x * (2 + 3) per rank; averaged over ranks with x = 1 + rank.
    let n = g.world_size() as f64;
    let expect = (0..g.world_size()).map(|r| (1.0 + r as f64) * 5.0).sum::<f64>() / n;
    close("two forwards", &gw, &[expect], 1e-15)
}

/// Branch `b` used only on rank 1: no hang; every rank gets b's gradient averaged with zeros.
#[derive(Module)]
pub struct TwoBranches {
    pub a: Linear,
    pub b: Linear,
    pub frozen: Linear,
}

pub fn unused_parameter(g: Group) -> Result<()> {
    let model = TwoBranches { a: Linear::new(3, 2)?, b: Linear::new(3, 2)?, frozen: Linear::new(3, 2)? };
    model.to_dtype(DType::F64)?;
    model.frozen.requires_grad(false);
    let dp = DataParallel::new(model, g.clone(), SyncConfig::default())?;
    let m = dp.module();
    let x = data(4, 3, 1.0)?;
    let mut out = m.a.forward(&x)?.add(&m.frozen.forward(&x)?)?;
    if g.rank() == 1 {
        out = out.add(&m.b.forward(&x)?)?;
    }
    let local = out.sum_all()?.backward()?;
    let before = dp.traffic().gradient_collectives;
    let grads = dp.reduce_gradients(local.clone())?;
    let calls = dp.traffic().gradient_collectives - before;
    if calls != 2 {
        return Err(fail(format!("{calls} gradient collectives for a tiny model (mask + one bucket expected)")));
    }
    if m.frozen.weight.grad(&grads).is_some() {
        return Err(fail("frozen parameter got a gradient".into()));
    }
    let gb =
        m.b.weight
            .grad(&grads)
            .ok_or_else(|| fail("unused parameter has no averaged gradient".into()))?
            .to_f64_vec()?;
    // Rank 1's local gradient of b is the column sums of x, rank 0's is zero.
    let colsum: Vec<f64> = {
        let v = x.to_f64_vec()?;
        (0..3).map(|j| (0..4).map(|i| v[i * 3 + j]).sum::<f64>()).collect()
    };
    let n = g.world_size() as f64;
    let expect: Vec<f64> = (0..2).flat_map(|_| colsum.iter().map(|c| c / n).collect::<Vec<_>>()).collect();
    close("unused parameter", &gb, &expect, 1e-15)?;
    same_on_all_ranks(&g, "unused parameter", &gb)
}

/// Rank 1 builds a different model: every rank gets an error naming the first differing key.
pub fn different_models(g: Group) -> Result<()> {
    let out = if g.rank() == 0 { 4 } else { 5 };
    let model = Mlp { fc1: Linear::new(5, 7)?, fc2: Linear::new(7, out)? };
    match DataParallel::new(model, g.clone(), SyncConfig::default()) {
        Ok(_) => Err(fail("different models were accepted".into())),
        Err(Error::Collective { key: Some(k), msg, .. }) if k == "fc2.weight" && msg.contains("rank 1") => Ok(()),
        Err(e) => Err(fail(format!("unexpected error: {e}"))),
    }
}

/// Gradients of 1 MiB and more are averaged where they lie: the result is the mean of every
/// rank's local gradient (computed here by each rank for every rank), a gradient the caller
/// still holds is left as it was (the sum goes to a copy), a large parameter unused on rank 0
/// is averaged with zeros, and a gradient of the wrong shape on one rank is an error on every
/// rank, not a hang.
pub fn large_gradients_in_place(g: Group) -> Result<()> {
    let model = TwoBranches { a: Linear::new(400, 400)?, b: Linear::new(400, 400)?, frozen: Linear::new(3, 2)? };
    model.to_dtype(DType::F64)?;
    model.frozen.requires_grad(false);
    let dp = DataParallel::new(model, g.clone(), SyncConfig::default())?;
    let m = dp.module();
    let local_grads = |r: usize| -> Result<Grads> {
        let x = data(3, 400, r as f64)?;
        let mut out = m.a.forward(&x)?.tanh()?;
        if r == 1 {
            out = out.add(&m.b.forward(&x)?)?;
        }
        out.sum_all()?.backward()
    };
    let n = g.world_size();
    let mut expect_a = vec![0.0; 160_000];
    let mut expect_b = vec![0.0; 160_000];
    for r in 0..n {
        let gr = local_grads(r)?;
        for (e, v) in expect_a.iter_mut().zip(m.a.weight.grad(&gr).expect("a is used").to_f64_vec()?) {
            *e += v / n as f64;
        }
        if let Some(gb) = m.b.weight.grad(&gr) {
            for (e, v) in expect_b.iter_mut().zip(gb.to_f64_vec()?) {
                *e += v / n as f64;
            }
        }
    }
    // held by the caller: reduced into a copy
    let local = local_grads(g.rank())?;
    let before = m.a.weight.grad(&local).expect("a is used").to_f64_vec()?;
    let shared = dp.reduce_gradients(local.clone())?;
    let after = m.a.weight.grad(&local).expect("a is used").to_f64_vec()?;
    if before.iter().map(|v| v.to_bits()).ne(after.iter().map(|v| v.to_bits())) {
        return Err(fail("the caller's own gradient changed".into()));
    }
    // handed over: reduced where it lies
    drop(local);
    let owned = dp.reduce_gradients(local_grads(g.rank())?)?;
    for (what, grads) in [("shared", &shared), ("owned", &owned)] {
        let ga = m.a.weight.grad(grads).ok_or_else(|| fail(format!("{what}: no gradient for a")))?.to_f64_vec()?;
        let gb = m.b.weight.grad(grads).ok_or_else(|| fail(format!("{what}: no gradient for b")))?.to_f64_vec()?;
        close(&format!("{what}: a.weight"), &ga, &expect_a, 1e-14)?;
        close(&format!("{what}: b.weight (unused on rank 0)"), &gb, &expect_b, 1e-14)?;
        same_on_all_ranks(&g, &format!("{what}: a.weight"), &ga)?;
    }
    // a hand-built gradient of the wrong shape on the last rank only: it gets the shape
    // error, every other rank a collective error (not a wait for that rank forever)
    let last = g.world_size() - 1;
    let mut bad = Grads::default();
    let cols = if g.rank() == last { 399 } else { 400 };
    bad.insert(m.a.weight.id(), Tensor::zeros(&[400, cols], DType::F64, Device::Cpu)?);
    match (g.rank() == last, dp.reduce_gradients(bad)) {
        (true, Err(Error::Shape { op, .. })) if op.contains("reduce_gradients") => Ok(()),
        (false, Err(Error::Collective { .. })) => Ok(()),
        (_, other) => {
            Err(fail(format!("rank {}: a wrong-shape gradient on rank {last}: {:?}", g.rank(), other.map(|_| ()))))
        }
    }
}

/// An 8.4M-parameter model's gradients take a handful of collectives.
pub fn bucketed(g: Group) -> Result<()> {
    let model = Linear::new(2048, 4096)?;
    let dp = DataParallel::new(model, g.clone(), SyncConfig::default())?;
    let x = data(2, 2048, g.rank() as f64)?.to_dtype(DType::F32)?;
    let before = dp.traffic().gradient_collectives;
    let grads = dp.backward(&dp.forward(&x)?.sum_all()?)?;
    let calls = dp.traffic().gradient_collectives - before;
    if !(2..=5).contains(&calls) {
        return Err(fail(format!("{calls} collectives for {} parameters", dp.num_parameters())));
    }
    let gw = dp.module().weight.grad(&grads).ok_or_else(|| fail("no grad".into()))?.narrow(0, 0, 1)?.to_f64_vec()?;
    same_on_all_ranks(&g, "bucketed gradient", &gw)
}

/// SyncBatchNorm on ranks with batches 3 and 5 equals BatchNorm on the 8 examples (outputs,
/// input and parameter gradients, running statistics), to 1e-12 in f64.
pub fn sync_batch_norm(g: Group) -> Result<()> {
    if g.world_size() != 2 {
        return Err(fail("this case needs 2 ranks".into()));
    }
    let (c, l) = (3, 2);
    let full = data(8, c * l, 0.5)?.mul_scalar(2.0)?.add_scalar(0.3)?.reshape(&[8, c, l])?;
    let weights = data(8, c * l, 9.0)?.reshape(&[8, c, l])?; // loss = Σ y ⊙ weights
    let init = |bn: &BatchNorm1d| -> Result<()> {
        bn.to_dtype(DType::F64)?;
        bn.weight.as_ref().unwrap().set(Tensor::from_slice(&[1.5f64, -0.5, 2.0], &[c], Device::Cpu)?)?;
        bn.bias.as_ref().unwrap().set(Tensor::from_slice(&[0.1f64, 0.2, -0.3], &[c], Device::Cpu)?)?;
        Ok(())
    };
    let bn = BatchNorm1d::new(c)?;
    init(&bn)?;
    let xf = full.requires_grad(true)?;
    let yf = bn.forward(&xf)?;
    let gf = yf.mul(&weights)?.sum_all()?.backward()?;
    let (start, len) = if g.rank() == 0 { (0, 3) } else { (3, 5) };
    let base = BatchNorm1d::new(c)?;
    init(&base)?;
    let sbn = SyncBatchNorm::from_batch_norm(&base, g.clone());
    let x = full.narrow(0, start, len)?.add_scalar(0.0)?.requires_grad(true)?;
    let y = sbn.forward(&x)?;
    let grads = y.mul(&weights.narrow(0, start, len)?)?.sum_all()?.backward()?;
    close("output", &y.to_f64_vec()?, &yf.narrow(0, start, len)?.to_f64_vec()?, 1e-12)?;
    let gx = grads.get(&x).ok_or_else(|| fail("no input gradient".into()))?.to_f64_vec()?;
    close("input gradient", &gx, &gf.get(&xf).unwrap().narrow(0, start, len)?.to_f64_vec()?, 1e-12)?;
    for (name, p, q) in [("weight", &sbn.weight, &bn.weight), ("bias", &sbn.bias, &bn.bias)] {
        let mut local = p.as_ref().unwrap().grad(&grads).unwrap().to_f64_vec()?;
        g.all_reduce_sum_f64("check", &mut local)?; // the loss is the sum of the ranks' losses
        close(name, &local, &q.as_ref().unwrap().grad(&gf).unwrap().to_f64_vec()?, 1e-12)?;
    }
    close("running_mean", &sbn.running_mean.tensor().to_f64_vec()?, &bn.running_mean.tensor().to_f64_vec()?, 1e-12)?;
    close("running_var", &sbn.running_var.tensor().to_f64_vec()?, &bn.running_var.tensor().to_f64_vec()?, 1e-12)?;
    // Names and state as BatchNorm's.
    let a: Vec<String> = sbn.state_dict().keys().map(String::from).collect();
    let b: Vec<String> = bn.state_dict().keys().map(String::from).collect();
    if a != b {
        return Err(fail(format!("SyncBatchNorm names {a:?} vs {b:?}")));
    }
    // Evaluation: running statistics, no exchange, as BatchNorm.
    sbn.eval();
    bn.eval();
    close(
        "eval output",
        &sbn.forward(&x)?.to_f64_vec()?,
        &bn.forward(&full)?.narrow(0, start, len)?.to_f64_vec()?,
        1e-12,
    )
}

/// The group's collectives on any number of ranks: uneven all-gather, broadcast from the
/// last rank, and all-reduce sums that equal the rank-ordered sum bit for bit (values chosen
/// so that another order gives other bits), on a length not divisible by the world size.
pub fn group_collectives(g: Group) -> Result<()> {
    let (r, n) = (g.rank(), g.world_size());
    let mine: Vec<f64> = (0..r + 1).map(|i| (r * 10 + i) as f64).collect();
    let all = g.all_gather_f64("all_gather", &mine)?;
    for (k, v) in all.iter().enumerate() {
        if v.len() != k + 1 || v[0] != (k * 10) as f64 {
            return Err(fail(format!("all_gather: rank {k} sent {v:?}")));
        }
    }
    let mut b = if r == n - 1 { b"from the last".to_vec() } else { vec![0; 3] };
    g.broadcast_bytes("broadcast", &mut b, n - 1)?;
    if b != b"from the last" {
        return Err(fail(format!("broadcast gave {b:?}")));
    }
    // The in-place sums split the buffer between ranks: odd, tiny and empty lengths too.
    for len in [0, 1, 2, 1001] {
        let vals = |k: usize| -> Vec<f64> {
            (0..len).map(|i| [1e16, 1.0, -1e16, 3.0, 0.5][(i + k) % 5] * (1.0 + (i % 7) as f64 * 1e-3)).collect()
        };
        let mut x = vals(r);
        g.all_reduce_sum_f64("all_reduce", &mut x)?;
        let expect: Vec<f64> = (0..len).map(|i| (1..n).fold(vals(0)[i], |acc, k| acc + vals(k)[i])).collect();
        if x.len() != len || x.iter().zip(&expect).any(|(a, b)| a.to_bits() != b.to_bits()) {
            return Err(fail(format!("all_reduce of {len} is not the rank-ordered sum")));
        }
        let mut x32: Vec<f32> = vals(r).iter().map(|&v| v as f32).collect();
        g.all_reduce_sum_f32("all_reduce_f32", &mut x32)?;
        let expect32: Vec<f32> =
            (0..len).map(|i| (1..n).fold(vals(0)[i] as f32, |acc, k| acc + vals(k)[i] as f32)).collect();
        if x32.iter().zip(&expect32).any(|(a, b)| a.to_bits() != b.to_bits()) {
            return Err(fail(format!("f32 all_reduce of {len} is not the rank-ordered sum")));
        }
    }
    let len = 1001;
    let vals = |k: usize| -> Vec<f64> {
        (0..len).map(|i| [1e16, 1.0, -1e16, 3.0, 0.5][(i + k) % 5] * (1.0 + (i % 7) as f64 * 1e-3)).collect()
    };
    let mut y: Vec<f32> = vals(r).iter().map(|&v| v as f32).collect();
    let send = y.clone();
    g.all_reduce_sum_into_f32("all_reduce_into", &send, &mut y)?;
    let expect32: Vec<f32> =
        (0..len).map(|i| (1..n).fold(vals(0)[i] as f32, |acc, k| acc + vals(k)[i] as f32)).collect();
    if y.iter().zip(&expect32).any(|(a, b)| a.to_bits() != b.to_bits()) {
        return Err(fail("f32 all_reduce is not the rank-ordered sum".into()));
    }
    g.barrier("barrier")
}

/// `convert_sync_batch_norm` on a `Sequential` keeps names and state, and the converted
/// model on batches of 3 and 5 computes what the plain model computes on the 8 (outputs and
/// running statistics, 1e-12 in f64); a BatchNorm in a typed field is an error naming it.
pub fn convert_batch_norm(g: Group) -> Result<()> {
    use stategrad::dist::convert_sync_batch_norm;
    use stategrad::nn::Sequential;
    let build = || -> Result<Sequential> {
        let w: Vec<f64> = (0..12).map(|i| ((i as f64) * 0.61).sin()).collect();
        let fc = Linear::from_tensors(Tensor::from_vec(w, &[3, 4], Device::Cpu)?, None)?;
        let bn = BatchNorm1d::new(3)?;
        bn.to_dtype(DType::F64)?;
        Ok(Sequential::new().push(fc).push(bn))
    };
    let plain = build()?;
    let mut model = build()?;
    let names = |m: &dyn Module| m.state_dict().keys().map(String::from).collect::<Vec<_>>();
    let before = names(&model);
    let handles: Vec<Buffer> = model.buffers();
    if convert_sync_batch_norm(&mut model, g.clone())? != 1 {
        return Err(fail("expected one converted layer".into()));
    }
    if names(&model) != before || model.named_modules().iter().all(|(_, t)| *t != "SyncBatchNorm") {
        return Err(fail(format!("conversion changed names: {:?} vs {before:?}", names(&model))));
    }
    if model.buffers().iter().zip(&handles).any(|(a, b)| !a.ptr_eq(b)) {
        return Err(fail("conversion did not keep the buffers' handles".into()));
    }
    let full = data(8, 4, 2.5)?;
    let yf = plain.forward(&full)?;
    let (start, len) = if g.rank() == 0 { (0, 3) } else { (3, 5) };
    let y = model.forward(&full.narrow(0, start, len)?)?;
    close("converted output", &y.to_f64_vec()?, &yf.narrow(0, start, len)?.to_f64_vec()?, 1e-12)?;
    for (a, b) in model.buffers().iter().zip(plain.buffers()) {
        close("converted running stats", &a.tensor().to_f64_vec()?, &b.tensor().to_f64_vec()?, 1e-12)?;
    }
    let mut typed = WithBn { fc: Linear::new(3, 4)?, bn: BatchNorm1d::new(4)? };
    match convert_sync_batch_norm(&mut typed, g.clone()) {
        Err(e) if e.to_string().contains("bn") => Ok(()),
        other => Err(fail(format!("a typed BatchNorm field: {:?}", other.map(|_| ())))),
    }
}
