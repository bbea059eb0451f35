//! Custom differentiable ops: a forward and a backward written by the user, recorded on the
//! tape like a built-in op and checkable with [`crate::gradcheck`].
use std::sync::Arc;

use crate::tape::{record_rule, Backward};
use crate::{is_grad_enabled, no_grad, Result, Tensor};

/// A user-defined differentiable op.
///
/// ```
/// use stategrad_autograd::*;
/// /// y = x^3, written by hand
/// struct Cube;
/// impl CustomOp for Cube {
///     fn name(&self) -> &'static str { "cube" }
///     fn forward(&self, x: &[Tensor]) -> Result<Tensor> { x[0].mul(&x[0])?.mul(&x[0]) }
///     fn backward(&self, x: &[Tensor], _y: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
///         Ok(vec![Some(g.mul(&x[0].square()?.mul_scalar(3.0)?)?)])
///     }
/// }
/// let x = Tensor::from_slice(&[0.5f64, -1.0], &[2], Device::Cpu)?.requires_grad(true)?;
/// gradcheck(|x| apply_custom(Cube, &[&x[0]]), &[x])?;
/// # Ok::<(), Error>(())
/// ```
pub trait CustomOp: Send + Sync + 'static {
    /// Name shown in errors and anomaly reports.
    fn name(&self) -> &'static str;
    /// The forward computation; runs with recording off.
    fn forward(&self, inputs: &[Tensor]) -> Result<Tensor>;
    /// Gradients of the inputs (one entry each) from the output gradient. Written with
    /// Tensor ops, it is recorded under `create_graph` (then `inputs` are the tracked ones).
    fn backward(&self, inputs: &[Tensor], output: &Tensor, grad: &Tensor) -> Result<Vec<Option<Tensor>>>;
}

struct Custom {
    op: Arc<dyn CustomOp>,
    inputs: Vec<Tensor>,
    out: Tensor,
}

impl Backward for Custom {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let inputs: Vec<Tensor> =
            if is_grad_enabled() { self.inputs.clone() } else { self.inputs.iter().map(Tensor::detach).collect() };
        self.op.backward(&inputs, &self.out, grad)
    }
}

/// Runs `op` on `inputs` and records it when an input is tracked.
pub fn apply_custom<O: CustomOp>(op: O, inputs: &[&Tensor]) -> Result<Tensor> {
    let detached: Vec<Tensor> = inputs.iter().map(|t| t.detach()).collect();
    let out = {
        let _g = no_grad();
        op.forward(&detached)?
    };
    if !is_grad_enabled() || !inputs.iter().any(|t| t.is_tracked()) {
        return Ok(out);
    }
    let name = op.name();
    let rule = Custom { op: Arc::new(op), inputs: inputs.iter().map(|t| (*t).clone()).collect(), out: out.detach() };
    Ok(record_rule(inputs, out, rule, name))
}
