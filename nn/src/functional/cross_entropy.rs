//! `cross_entropy` and `nll`, with PyTorch's options. For class-index targets,
//! `nll_i = -w[y_i] log_p[i, y_i]` (0 where `y_i == ignore_index`), and the mean divides by
//! the total weight of the counted targets. Label smoothing `eps` mixes in the uniform
//! distribution: `(1 - eps) nll + eps / C * sum_c -w_c log_p[i, c]`, reduced the same way.
//! For probability targets, `loss_i = -sum_c w_c t_ic log_p_ic`, the mean over samples.
use stategrad_autograd::{DType, Error, Result, Tensor};

use super::Reduction;

/// Options of [`nll`] (PyTorch's `F.nll_loss` keyword arguments).
#[derive(Clone, Debug)]
pub struct NllOptions {
    /// How the per-sample losses combine (default: mean, weighted).
    pub reduction: Reduction,
    /// Targets equal to this contribute nothing (default `-100`, PyTorch's).
    pub ignore_index: Option<i64>,
    /// A weight per class (`[C]`), or `None` for all ones.
    pub weight: Option<Tensor>,
}

impl Default for NllOptions {
    fn default() -> Self {
        NllOptions { reduction: Reduction::Mean, ignore_index: Some(-100), weight: None }
    }
}

/// Options of [`cross_entropy`] (PyTorch's `F.cross_entropy` keyword arguments).
#[derive(Clone, Debug)]
pub struct CrossEntropyOptions {
    /// How the per-sample losses combine (default: mean, weighted).
    pub reduction: Reduction,
    /// Class-index targets equal to this contribute nothing (default `-100`, PyTorch's).
    pub ignore_index: Option<i64>,
    /// A weight per class (`[C]`), or `None` for all ones.
    pub weight: Option<Tensor>,
    /// In `[0, 1]`: the share of the target mass spread uniformly over the classes.
    pub label_smoothing: f64,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        CrossEntropyOptions { reduction: Reduction::Mean, ignore_index: Some(-100), weight: None, label_smoothing: 0.0 }
    }
}

/// Input `[N, C, d...]` (or `[C]`), class dim 1 (0 when unbatched); target `[N, d...]` int64.
fn check_class_target(op: &'static str, x: &Tensor, target: &Tensor) -> Result<usize> {
    if target.dtype() != DType::I64 {
        return Err(Error::DType { op, expected: "int64 class targets (or float probabilities)", got: target.dtype() });
    }
    let class_dim = usize::from(x.rank() > 1);
    let mut want = x.shape().to_vec();
    if x.rank() == 0 {
        return Err(Error::shape(op, &[x.shape()], "expected an input [N, C, ...] or [C]"));
    }
    want.remove(class_dim);
    if target.shape() != want.as_slice() {
        return Err(Error::shape(op, &[x.shape(), target.shape()], format!("expected a target of shape {want:?}")));
    }
    Ok(class_dim)
}

fn check_weight(op: &'static str, x: &Tensor, weight: Option<&Tensor>, class_dim: usize) -> Result<()> {
    if let Some(w) = weight {
        let c = x.shape()[class_dim];
        if w.shape() != [c] {
            return Err(Error::shape(op, &[x.shape(), w.shape()], format!("expected a class weight of shape [{c}]")));
        }
    }
    Ok(())
}

/// The per-class weight broadcast along the class dim of `x` (`[C, 1, ...]`).
fn class_weight_view(w: &Tensor, x: &Tensor, class_dim: usize) -> Result<Tensor> {
    let mut shape = vec![1; x.rank() - class_dim];
    shape[0] = w.numel();
    w.reshape(&shape)
}

/// `(per-sample -w[y] log_p[y], per-sample weight w[y], 0 where ignored)` for class targets.
fn picked(op: &'static str, log_probs: &Tensor, target: &Tensor, o: &NllOptions) -> Result<(Tensor, Tensor, Tensor)> {
    let class_dim = check_class_target(op, log_probs, target)?;
    check_weight(op, log_probs, o.weight.as_ref(), class_dim)?;
    let (valid, safe) = match o.ignore_index {
        Some(ignore) => {
            // A fill on the target's device, not an upload (no host transfer on a GPU) when
            // the value is exact in f64, as every realistic ignore_index is.
            let ignore_t = match ignore as f64 as i64 == ignore {
                true => Tensor::full(&[], ignore as f64, DType::I64, target.device())?,
                false => Tensor::from_vec(vec![ignore], &[], target.device())?,
            };
            let valid = target.ne(&ignore_t)?; // i64 0/1
            (Some(valid.clone()), valid.mul(target)?) // ignored targets read class 0, weighted 0
        }
        None => (None, target.clone()),
    };
    let lp = log_probs.gather(class_dim, &safe.unsqueeze(class_dim)?)?.squeeze(class_dim)?;
    let mut w = match &o.weight {
        Some(w) => w.index_select(0, &safe.flatten(0, -1)?)?.reshape(safe.shape())?,
        None => lp.detach().ones_like()?,
    };
    if let Some(valid) = &valid {
        w = w.mul(&valid.to_dtype(lp.dtype())?)?;
    }
    Ok((lp.mul(&w)?.neg()?, w, valid.unwrap_or(target.ones_like()?)))
}

fn reduce_weighted(op: &'static str, loss: &Tensor, total_weight: &Tensor, r: Reduction) -> Result<Tensor> {
    match r {
        Reduction::Mean => loss.sum_all()?.div(&total_weight.sum_all()?),
        r => r.apply(op, loss),
    }
}

/// Negative log-likelihood of `log_probs [N, C, d...]` (or `[C]`) against int64 class
/// targets `[N, d...]` (PyTorch's `F.nll_loss`).
pub fn nll(log_probs: &Tensor, target: &Tensor, options: &NllOptions) -> Result<Tensor> {
    let (loss, w, _) = picked("nll", log_probs, target, options)?;
    reduce_weighted("nll", &loss, &w, options.reduction)
}

/// Cross-entropy of `logits [N, C, d...]` (or `[C]`) against int64 class targets
/// `[N, d...]`, or float class probabilities of the logits' shape (PyTorch's
/// `F.cross_entropy`, every option).
///
/// ```
/// use stategrad_nn::functional::{cross_entropy, CrossEntropyOptions};
/// use stategrad_autograd::{Tensor, Device};
/// let logits = Tensor::from_slice(&[0.0f64, 0.0], &[1, 2], Device::Cpu)?;
/// let target = Tensor::from_slice(&[1i64], &[1], Device::Cpu)?;
/// let loss = cross_entropy(&logits, &target, &CrossEntropyOptions::default())?;
/// assert!((loss.item()? - 2f64.ln()).abs() < 1e-15);
/// let smoothed = CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() };
/// assert!((cross_entropy(&logits, &target, &smoothed)?.item()? - 2f64.ln()).abs() < 1e-15);
/// # Ok::<(), stategrad_autograd::Error>(())
/// ```
pub fn cross_entropy(logits: &Tensor, target: &Tensor, options: &CrossEntropyOptions) -> Result<Tensor> {
    const OP: &str = "cross_entropy";
    let eps = options.label_smoothing;
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::argument(OP, format!("label smoothing {eps} outside [0, 1]")));
    }
    if logits.rank() == 0 {
        return Err(Error::shape(OP, &[logits.shape()], "expected an input [N, C, ...] or [C]"));
    }
    let class_dim = usize::from(logits.rank() > 1);
    let classes = logits.shape()[class_dim] as f64;
    let log_probs = logits.log_softmax(class_dim)?;
    if target.dtype().is_float() {
        // probability targets: -sum_c w_c t_c log p_c, mean over the samples
        if target.shape() != logits.shape() {
            return Err(Error::shape(
                OP,
                &[logits.shape(), target.shape()],
                "probability targets need the input's shape",
            ));
        }
        check_weight(OP, logits, options.weight.as_ref(), class_dim)?;
        let t = if eps > 0.0 { target.affine(1.0 - eps, eps / classes)? } else { target.clone() };
        let mut terms = log_probs.mul(&t)?;
        if let Some(w) = &options.weight {
            terms = terms.mul(&class_weight_view(w, logits, class_dim)?)?;
        }
        let loss = terms.sum(class_dim, false)?.neg()?;
        return match options.reduction {
            Reduction::Mean => loss.sum_all()?.div_scalar((logits.numel() as f64 / classes).max(1.0)),
            r => r.apply(OP, &loss),
        };
    }
    let nll_options =
        NllOptions { reduction: options.reduction, ignore_index: options.ignore_index, weight: options.weight.clone() };
    let (loss, w, valid) = picked(OP, &log_probs, target, &nll_options)?;
    let nll_loss = reduce_weighted(OP, &loss, &w, options.reduction)?;
    if eps == 0.0 {
        return Ok(nll_loss);
    }
    // the smoothing term: -sum_c w_c log p_c per sample, 0 where ignored
    let weighted = match &options.weight {
        Some(wc) => log_probs.mul(&class_weight_view(wc, logits, class_dim)?)?,
        None => log_probs.clone(),
    };
    let smooth = weighted.sum(class_dim, false)?.neg()?.mul(&valid.to_dtype(logits.dtype())?)?;
    let smooth = match options.reduction {
        Reduction::Mean if options.weight.is_some() => smooth.sum_all()?.div(&w.sum_all()?)?,
        Reduction::Mean => smooth.sum_all()?.div(&valid.to_dtype(logits.dtype())?.sum_all()?)?,
        r => r.apply(OP, &smooth)?,
    };
    nll_loss.mul_scalar(1.0 - eps)?.add(&smooth.mul_scalar(eps / classes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functional::test_support::{close_within, t64};
    use stategrad_autograd::{gradcheck, Device};

    fn i64s(v: &[i64], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape, Device::Cpu).unwrap()
    }
    fn log_softmax(r: &[f64]) -> Vec<f64> {
        let lse = r.iter().map(|x| x.exp()).sum::<f64>().ln();
        r.iter().map(|x| x - lse).collect()
    }
    #[track_caller]
    fn close(t: &Tensor, want: &[f64]) {
        close_within(t, want, 1e-14)
    }

    const X: [f64; 9] = [1.0, 2.0, 0.5, -1.0, 0.0, 3.0, 0.3, 0.2, -0.4];

    #[test]
    fn class_targets_with_every_option() {
        let x = t64(&X, &[3, 3]);
        let lp: Vec<Vec<f64>> = X.chunks(3).map(log_softmax).collect();
        let y = i64s(&[1, -100, 0], &[3]);
        let w = [0.2, 0.5, 1.5];
        let wt = t64(&w, &[3]);
        // unweighted, row 1 ignored
        let mean = CrossEntropyOptions::default();
        close(&cross_entropy(&x, &y, &mean).unwrap(), &[-(lp[0][1] + lp[2][0]) / 2.0]);
        let none = CrossEntropyOptions { reduction: Reduction::None, ..Default::default() };
        close(&cross_entropy(&x, &y, &none).unwrap(), &[-lp[0][1], 0.0, -lp[2][0]]);
        let sum = CrossEntropyOptions { reduction: Reduction::Sum, ..Default::default() };
        close(&cross_entropy(&x, &y, &sum).unwrap(), &[-(lp[0][1] + lp[2][0])]);
        // weighted mean: divided by the weights of the counted targets
        let weighted = CrossEntropyOptions { weight: Some(wt.clone()), ..Default::default() };
        close(&cross_entropy(&x, &y, &weighted).unwrap(), &[-(w[1] * lp[0][1] + w[0] * lp[2][0]) / (w[1] + w[0])]);
        // label smoothing with weights (PyTorch's formula)
        let e = 0.2;
        let smooth_row = |r: &[f64]| -(0..3).map(|c| w[c] * r[c]).sum::<f64>();
        let plain = -(w[1] * lp[0][1] + w[0] * lp[2][0]) / (w[1] + w[0]);
        let smooth = (smooth_row(&lp[0]) + smooth_row(&lp[2])) / (w[1] + w[0]);
        let o = CrossEntropyOptions { weight: Some(wt), label_smoothing: e, ..Default::default() };
        close(&cross_entropy(&x, &y, &o).unwrap(), &[(1.0 - e) * plain + e / 3.0 * smooth]);
        // no ignore_index: every target counts
        let y2 = i64s(&[1, 2, 0], &[3]);
        let o = CrossEntropyOptions { ignore_index: None, label_smoothing: e, ..Default::default() };
        let plain = -(lp[0][1] + lp[1][2] + lp[2][0]) / 3.0;
        let smooth = -lp.iter().flatten().sum::<f64>() / 3.0;
        close(&cross_entropy(&x, &y2, &o).unwrap(), &[(1.0 - e) * plain + e / 3.0 * smooth]);
        // nll on log-probs equals cross-entropy on logits
        let o = NllOptions { ignore_index: Some(2), ..Default::default() };
        close(&nll(&x.log_softmax(1).unwrap(), &y2, &o).unwrap(), &[-(lp[0][1] + lp[2][0]) / 2.0]);
    }

    #[test]
    fn spatial_and_probability_targets() {
        // [N=1, C=3, 3]: the class dim is 1, one target per position
        let x = t64(&X, &[1, 3, 3]);
        let cols: Vec<Vec<f64>> = (0..3).map(|p| log_softmax(&[X[p], X[3 + p], X[6 + p]])).collect();
        let y = i64s(&[2, 0, 1], &[1, 3]);
        let none = CrossEntropyOptions { reduction: Reduction::None, ..Default::default() };
        close(&cross_entropy(&x, &y, &none).unwrap(), &[-cols[0][2], -cols[1][0], -cols[2][1]]);
        // probability targets [3, 3], smoothed: t' = t (1 - e) + e / C
        let x = t64(&X, &[3, 3]);
        let t = [0.5, 0.5, 0.0, 0.0, 0.0, 1.0, 0.2, 0.3, 0.5];
        let e = 0.1;
        let lp: Vec<f64> = X.chunks(3).flat_map(log_softmax).collect();
        let want = -(0..9).map(|k| (t[k] * (1.0 - e) + e / 3.0) * lp[k]).sum::<f64>() / 3.0;
        let o = CrossEntropyOptions { label_smoothing: e, ..Default::default() };
        close(&cross_entropy(&x, &t64(&t, &[3, 3]), &o).unwrap(), &[want]);
        // unbatched [C] with a 0-d target
        close(&cross_entropy(&t64(&X[..3], &[3]), &i64s(&[2], &[]), &Default::default()).unwrap(), &[-lp[2]]);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = t64(&X, &[3, 3]);
        let o = CrossEntropyOptions::default();
        assert!(matches!(cross_entropy(&x, &i64s(&[0, 1], &[2]), &o), Err(Error::Shape { op: "cross_entropy", .. })));
        assert!(matches!(cross_entropy(&x, &t64(&[0.0; 3], &[3]), &o), Err(Error::Shape { .. })));
        assert!(matches!(cross_entropy(&x, &i64s(&[0, 5, 1], &[3]), &o), Err(Error::Index { .. })));
        let bad = CrossEntropyOptions { label_smoothing: 1.5, ..Default::default() };
        assert!(matches!(cross_entropy(&x, &i64s(&[0, 1, 1], &[3]), &bad), Err(Error::Argument { .. })));
        let w = CrossEntropyOptions { weight: Some(t64(&[1.0, 2.0], &[2])), ..Default::default() };
        assert!(matches!(cross_entropy(&x, &i64s(&[0, 1, 1], &[3]), &w), Err(Error::Shape { .. })));
    }

    #[test]
    fn gradients() {
        let x = t64(&X, &[3, 3]).requires_grad(true).unwrap();
        let xt = t64(&X, &[3, 3]).t().unwrap().requires_grad(true).unwrap(); // transposed
        let y = i64s(&[1, -100, 0], &[3]);
        let w = t64(&[0.2, 0.5, 1.5], &[3]);
        let o = CrossEntropyOptions { weight: Some(w), label_smoothing: 0.3, ..Default::default() };
        for x in [x, xt] {
            gradcheck(|x| cross_entropy(&x[0], &y, &o), std::slice::from_ref(&x)).unwrap();
            stategrad_autograd::gradgradcheck(|x| cross_entropy(&x[0], &y, &o), &[x]).unwrap();
        }
        // broadcast input, probability target
        let xb = t64(&X[..3], &[1, 3]).expand(&[3, 3]).unwrap().requires_grad(true).unwrap();
        let t = t64(&[0.5, 0.5, 0.0, 0.0, 0.0, 1.0, 0.2, 0.3, 0.5], &[3, 3]);
        gradcheck(|x| cross_entropy(&x[0], &t, &Default::default()), &[xb]).unwrap();
    }
}
