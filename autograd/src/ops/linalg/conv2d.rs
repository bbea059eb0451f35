//! `conv2d(x, w, bias, params)`: x `[n, c_in, h, w]`, w `[c_out, c_in / groups, kh, kw]`.
//! With `Y = conv(X, W)`: dX = convT(G, W) (`conv2d_grad_input`) and dW = corr(X, G)
//! (`conv2d_grad_weight`). Both are ops with rules of their own (each is the adjoint of
//! conv in one argument), so the backward pass is differentiable too.
use stategrad_backends::Conv2dParams;

use crate::ops::check_same;
use crate::tape::{record, Backward};
use crate::{Error, Result, Tensor};

fn check(x: &Tensor, w: &Tensor, p: &Conv2dParams) -> Result<(usize, usize)> {
    check_same("conv2d", x, w)?;
    let fail = |msg: String| Err(Error::shape("conv2d", &[x.shape(), w.shape()], msg));
    if x.rank() != 4 || w.rank() != 4 {
        return fail("input [n, c_in, h, w] and weight [c_out, c_in / groups, kh, kw] must be 4-D".into());
    }
    let g = p.groups;
    if g == 0 || x.shape()[1] != w.shape()[1] * g || w.shape()[0] % g != 0 {
        return fail(format!("channels do not fit groups = {g}"));
    }
    if p.stride.0 == 0 || p.stride.1 == 0 || p.dilation.0 == 0 || p.dilation.1 == 0 {
        return fail("stride and dilation must be positive".into());
    }
    match p.output_hw((x.shape()[2], x.shape()[3]), (w.shape()[2], w.shape()[3])) {
        Some(hw) => Ok(hw),
        None => fail("the padded input is smaller than the dilated kernel".into()),
    }
}

impl Tensor {
    /// 2-D convolution (cross-correlation, as PyTorch) with an optional bias `[c_out]`.
    pub fn conv2d(&self, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
        let (oh, ow) = check(self, w, &p)?;
        let shape = [self.shape()[0], w.shape()[0], oh, ow];
        stategrad_backends::checked_numel("conv2d", &shape)?;
        let out = Tensor::fresh(self.storage().conv2d(self.layout(), w.storage(), w.layout(), &p)?, &shape);
        let out = record(&[self, w], out, |_| Conv2d { x: self.clone(), w: w.clone(), p });
        match bias {
            Some(b) => {
                if b.shape() != [w.shape()[0]] {
                    return Err(Error::shape("conv2d", &[w.shape(), b.shape()], "bias must be [c_out]"));
                }
                out.add(&b.reshape(&[1, w.shape()[0], 1, 1])?)
            }
            None => Ok(out),
        }
    }

    fn conv2d_grad_input(&self, w: &Tensor, p: Conv2dParams, input_hw: (usize, usize)) -> Result<Tensor> {
        let shape = [self.shape()[0], w.shape()[1] * p.groups, input_hw.0, input_hw.1];
        let out = Tensor::fresh(
            self.storage().conv2d_grad_input(self.layout(), w.storage(), w.layout(), &p, input_hw)?,
            &shape,
        );
        Ok(record(&[self, w], out, |_| Conv2dGradInput { g: self.clone(), w: w.clone(), p }))
    }

    fn conv2d_grad_weight(&self, g: &Tensor, p: Conv2dParams, kernel_hw: (usize, usize)) -> Result<Tensor> {
        let shape = [g.shape()[1], self.shape()[1] / p.groups, kernel_hw.0, kernel_hw.1];
        let out = Tensor::fresh(
            self.storage().conv2d_grad_weight(self.layout(), g.storage(), g.layout(), &p, kernel_hw)?,
            &shape,
        );
        Ok(record(&[self, g], out, |_| Conv2dGradWeight { x: self.clone(), g: g.clone(), p }))
    }
}

fn hw(t: &Tensor) -> (usize, usize) {
    (t.shape()[2], t.shape()[3])
}

struct Conv2d {
    x: Tensor,
    w: Tensor,
    p: Conv2dParams,
}

impl Backward for Conv2d {
    fn backward(&self, grad: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let gx = self.x.is_tracked().then(|| grad.conv2d_grad_input(&self.w, self.p, hw(&self.x))).transpose()?;
        let gw = self.w.is_tracked().then(|| self.x.conv2d_grad_weight(grad, self.p, hw(&self.w))).transpose()?;
        Ok(vec![gx, gw])
    }
}

/// `gX = convT(G, W)`: d/dG (with upstream H) = conv(H, W); d/dW = corr(H, G).
struct Conv2dGradInput {
    g: Tensor,
    w: Tensor,
    p: Conv2dParams,
}

impl Backward for Conv2dGradInput {
    fn backward(&self, h: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let dg = h.conv2d(&self.w, None, self.p)?;
        let dw = h.conv2d_grad_weight(&self.g, self.p, hw(&self.w))?;
        Ok(vec![Some(dg), Some(dw)])
    }
}

/// `gW = corr(X, G)`: d/dX (with upstream K) = convT(G, K); d/dG = conv(X, K).
struct Conv2dGradWeight {
    x: Tensor,
    g: Tensor,
    p: Conv2dParams,
}

impl Backward for Conv2dGradWeight {
    fn backward(&self, k: &Tensor) -> Result<Vec<Option<Tensor>>> {
        let dx = self.g.conv2d_grad_input(k, self.p, hw(&self.x))?;
        let dg = self.x.conv2d(k, None, self.p)?;
        Ok(vec![Some(dx), Some(dg)])
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use stategrad_backends::Conv2dParams;

    #[test]
    fn forward() {
        // 1x1x3x3 input, 1x1x2x2 kernel of ones: sums of 2x2 windows
        let x = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], &[1, 1, 3, 3]);
        let w = t64(&[1.0, 1.0, 1.0, 1.0], &[1, 1, 2, 2]);
        let y = x.conv2d(&w, None, Conv2dParams::default()).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_close(&y, &[12.0, 16.0, 24.0, 28.0], 1e-12);
        let p = Conv2dParams { padding: (1, 1), stride: (2, 2), ..Default::default() };
        assert_close(&x.conv2d(&w, Some(&t64(&[0.5], &[1])), p).unwrap(), &[1.5, 5.5, 11.5, 28.5], 1e-12);
        let e = x.conv2d(&t64(&[0.0; 8], &[1, 2, 2, 2]), None, Conv2dParams::default()).unwrap_err().to_string();
        assert!(e.contains("conv2d") && e.contains("[1, 2, 2, 2]"), "{e}");
    }

    #[test]
    fn gradient() {
        for p in conv_cases() {
            check_conv(p, false);
        }
    }

    #[test]
    fn gradgradient() {
        check_conv(Conv2dParams { stride: (2, 1), padding: (1, 0), dilation: (1, 2), groups: 2 }, true);
    }
}
