//! Research code ported line by line: above each stategrad line, the PyTorch line it
//! replaces (`// py: ...`), and every result is checked against a plain-loop reference or
//! a closed form. Three pieces: a capsule routing step (Sabour, Frosst & Hinton 2017), a
//! Transformer attention block with a causal mask and sinusoidal positional encoding
//! (nanoGPT's CausalSelfAttention, the Annotated Transformer's PositionalEncoding), and a
//! detection box decoding (torchvision's BoxCoder.decode_single, clip_boxes_to_image).
//! The list of constructs is docs/PORTING.md.
use stategrad::autograd::{gradcheck, gradgradcheck, manual_seed};
use stategrad::nn::capsule::squash;
use stategrad::nn::functional::{
    binary_cross_entropy_with_logits, cross_entropy, smooth_l1, BceOptions, CrossEntropyOptions, Reduction,
};
use stategrad::nn::{Forward, Linear, Module, SinusoidalPositionalEncoding};
use stategrad::prelude::*;

/// `torch.set_default_dtype(torch.float64)`, for this thread and this test only.
fn f64_scope<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    TensorOptions::new().dtype(DType::F64).scope(f)
}

fn host(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

#[track_caller]
fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "element {i}: {g} vs {w}\n got {got:?}\nwant {want:?}");
    }
}

// ---------------------------------------------------------------------------------------
// 1. Capsule routing
// ---------------------------------------------------------------------------------------

/// Three routing iterations from predictions `u_hat = W u`; `w [i, j, d, l]`, `u [b, i, l]`.
fn route(w: &Tensor, u: &Tensor) -> Result<Tensor> {
    let (b, i, j) = (u.size(0)?, u.size(1)?, w.size(1)?);
    // py: u_hat = torch.einsum('ijkl,bil->bijk', W, u)
    let u_hat = Tensor::einsum("ijkl,bil->bijk", &[w, u])?;
    // py: b_ij = torch.zeros(B, I, J)
    let mut logits = Tensor::zeros(&[b, i, j], None, None)?;
    let mut v = None;
    // py: for r in range(3):
    for _ in 0..3 {
        // py: c = F.softmax(b_ij, dim=-1)
        let c = logits.softmax(-1)?;
        // py: s = (c.unsqueeze(-1) * u_hat).sum(dim=1)
        let s = c.unsqueeze(-1)?.mul(&u_hat)?.sum(1, false)?;
        // py: v = squash(s, dim=-1)
        let out = squash(&s, -1, 0.0)?;
        // py: b_ij = b_ij + (u_hat * v.unsqueeze(1)).sum(-1)
        logits = logits.add(&u_hat.mul(&out.unsqueeze(1)?)?.sum(-1, false)?)?;
        v = Some(out);
    }
    Ok(v.expect("three iterations"))
}

/// The same routing with loops over host values.
fn route_reference(w: &[f64], u: &[f64], (b, i, j, d, l): (usize, usize, usize, usize, usize)) -> Vec<f64> {
    let mut u_hat = vec![0.0; b * i * j * d];
    for bb in 0..b {
        for ii in 0..i {
            for jj in 0..j {
                for k in 0..d {
                    u_hat[((bb * i + ii) * j + jj) * d + k] =
                        (0..l).map(|ll| w[((ii * j + jj) * d + k) * l + ll] * u[(bb * i + ii) * l + ll]).sum();
                }
            }
        }
    }
    let mut logits = vec![0f64; b * i * j];
    let mut v = vec![0.0; b * j * d];
    for _ in 0..3 {
        for bb in 0..b {
            let mut s = vec![0f64; j * d];
            for ii in 0..i {
                let row = &logits[(bb * i + ii) * j..(bb * i + ii + 1) * j];
                let z: f64 = row.iter().map(|x| x.exp()).sum();
                for jj in 0..j {
                    let c = row[jj].exp() / z;
                    for k in 0..d {
                        s[jj * d + k] += c * u_hat[((bb * i + ii) * j + jj) * d + k];
                    }
                }
            }
            for jj in 0..j {
                let sq: f64 = (0..d).map(|k| s[jj * d + k].powi(2)).sum();
                for k in 0..d {
                    v[(bb * j + jj) * d + k] = sq / (1.0 + sq) * s[jj * d + k] / sq.sqrt();
                }
            }
            for ii in 0..i {
                for jj in 0..j {
                    let a: f64 =
                        (0..d).map(|k| u_hat[((bb * i + ii) * j + jj) * d + k] * v[(bb * j + jj) * d + k]).sum();
                    logits[(bb * i + ii) * j + jj] += a;
                }
            }
        }
    }
    v
}

#[test]
fn capsule_routing_step() -> Result<()> {
    manual_seed(14);
    f64_scope(|| {
        let dims = (2, 3, 2, 4, 5); // batch, input capsules, output capsules, out dim, in dim
        let (b, i, j, d, l) = dims;
        // py: W = 0.5 * torch.randn(I, J, D, L)
        let w = Tensor::randn(&[i, j, d, l], 0.0, 0.5, None, None)?;
        // py: u = torch.randn(B, I, L)
        let u = Tensor::randn(&[b, i, l], 0.0, 1.0, None, None)?;
        assert_eq!(w.dtype(), DType::F64, "the scope sets the default dtype");
        let v = route(&w, &u)?;
        assert_eq!(v.shape(), &[b, j, d]);
        assert_close(&host(&v), &route_reference(&host(&w), &host(&u), dims), 1e-13);
        // squashed: every output capsule is shorter than 1
        assert!(host(&v.norm(2.0, -1, false)?).iter().all(|&n| n > 0.0 && n < 1.0));
        // the routing is differentiable end to end (einsum, softmax, squash, the loop)
        gradcheck(|x| route(&x[0], &x[1]), &[w.requires_grad(true)?, u.requires_grad(true)?])?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// 2. Transformer attention: positional encoding, causal mask, cross-entropy
// ---------------------------------------------------------------------------------------

/// The Annotated Transformer's PositionalEncoding table.
fn positional_encoding(max_len: usize, d_model: usize) -> Result<Tensor> {
    // py: pe = torch.zeros(max_len, d_model)
    let pe = Tensor::zeros(&[max_len, d_model], None, None)?;
    // py: position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
    let position = Tensor::arange(0, max_len as i64, default_dtype(), None)?.unsqueeze(1)?;
    // py: div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    let div_term = Tensor::arange(0, d_model as i64, default_dtype(), None)?
        .i(s(.., 2))?
        .mul_scalar(-(10000f64.ln()) / d_model as f64)?
        .exp()?;
    // py: pe[:, 0::2] = torch.sin(position * div_term)
    let pe = pe.slice_scatter(&position.mul(&div_term)?.sin()?, 1, 0, i64::MAX, 2)?;
    // py: pe[:, 1::2] = torch.cos(position * div_term)
    let pe = pe.slice_scatter(&position.mul(&div_term)?.cos()?, 1, 1, i64::MAX, 2)?;
    Ok(pe)
}

/// nanoGPT's CausalSelfAttention.
struct CausalSelfAttention {
    c_attn: Linear,
    c_proj: Linear,
    bias: Tensor,
    n_head: usize,
    n_embd: usize,
}

impl CausalSelfAttention {
    fn new(n_embd: usize, n_head: usize, block_size: usize) -> Result<Self> {
        Ok(CausalSelfAttention {
            // py: self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
            c_attn: Linear::new(n_embd, 3 * n_embd)?,
            // py: self.c_proj = nn.Linear(config.n_embd, config.n_embd)
            c_proj: Linear::new(n_embd, n_embd)?,
            // py: self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size))
            bias: Tensor::ones(&[block_size, block_size], None, None)?
                .tril(0)?
                .reshape(&[1, 1, block_size, block_size])?,
            n_head,
            n_embd,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // py: B, T, C = x.size()
        let (b, t, c) = (x.size(0)?, x.size(1)?, x.size(2)?);
        // py: q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        let qkv = self.c_attn.forward(x)?.split(self.n_embd, 2)?;
        let (q, k, v) = (&qkv[0], &qkv[1], &qkv[2]);
        // py: k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        let k = k.reshape(&[b, t, self.n_head, c / self.n_head])?.transpose(1, 2)?;
        // py: q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        let q = q.reshape(&[b, t, self.n_head, c / self.n_head])?.transpose(1, 2)?;
        // py: v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        let v = v.reshape(&[b, t, self.n_head, c / self.n_head])?.transpose(1, 2)?;
        // py: att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        let att = q.matmul(&k.transpose(-2, -1)?)?.mul_scalar(1.0 / (k.size(-1)? as f64).sqrt())?;
        // py: att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float('-inf'))
        let att = att.masked_fill(&self.bias.i((.., .., ..t, ..t))?.eq_scalar(0.0)?, f64::NEG_INFINITY)?;
        // py: att = F.softmax(att, dim=-1)
        let att = att.softmax(-1)?;
        // py: y = att @ v
        let y = att.matmul(&v)?;
        // py: y = y.transpose(1, 2).contiguous().view(B, T, C)
        let y = y.transpose(1, 2)?.contiguous()?.reshape(&[b, t, c])?;
        // py: y = self.c_proj(y)
        self.c_proj.forward(&y)
    }
}

/// `x W^T + b` over the last dim of `[rows, n_in]` host values.
fn linear_ref(x: &[f64], w: &[f64], bias: &[f64], n_in: usize) -> Vec<f64> {
    let n_out = bias.len();
    x.chunks(n_in)
        .flat_map(|r| (0..n_out).map(move |o| bias[o] + (0..n_in).map(|k| r[k] * w[o * n_in + k]).sum::<f64>()))
        .collect()
}

/// The attention block with loops, from the layers' weights.
fn attention_reference(m: &CausalSelfAttention, x: &[f64], (b, t, c): (usize, usize, usize)) -> Vec<f64> {
    let p = |l: &Linear| (host(&l.weight.data()), host(&l.bias.as_ref().unwrap().data()));
    let ((wa, ba), (wp, bp)) = (p(&m.c_attn), p(&m.c_proj));
    // [b*t, 3c]
    let qkv = linear_ref(x, &wa, &ba, c);
    let (h, hd) = (m.n_head, c / m.n_head);
    let at =
        |bb: usize, tt: usize, part: usize, hh: usize, e: usize| qkv[(bb * t + tt) * 3 * c + part * c + hh * hd + e];
    let mut y = vec![0.0; b * t * c];
    for bb in 0..b {
        for hh in 0..h {
            for tt in 0..t {
                // causal: positions 0..=tt only
                let scores: Vec<f64> = (0..=tt)
                    .map(|ss| {
                        (0..hd).map(|e| at(bb, tt, 0, hh, e) * at(bb, ss, 1, hh, e)).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                for e in 0..hd {
                    y[(bb * t + tt) * c + hh * hd + e] =
                        (0..=tt).map(|ss| (scores[ss] - m).exp() / z * at(bb, ss, 2, hh, e)).sum();
                }
            }
        }
    }
    linear_ref(&y, &wp, &bp, c)
}

#[test]
fn transformer_attention_block() -> Result<()> {
    manual_seed(1414);
    f64_scope(|| {
        let (b, t, c, n_head, block) = (2, 5, 8, 2, 6);
        // the positional-encoding table against its closed form and the library's layer
        let pe = positional_encoding(block, c)?;
        let closed: Vec<f64> = (0..block)
            .flat_map(|p| {
                (0..c).map(move |k| {
                    let angle = p as f64 / 10000f64.powf((k - k % 2) as f64 / c as f64);
                    if k % 2 == 0 {
                        angle.sin()
                    } else {
                        angle.cos()
                    }
                })
            })
            .collect();
        assert_close(&host(&pe), &closed, 1e-14);
        assert_close(&host(&pe), &host(&SinusoidalPositionalEncoding::table(block, c)?), 1e-14);

        let attn = CausalSelfAttention::new(c, n_head, block)?;
        assert_eq!(attn.c_attn.weight.dtype(), DType::F64, "layers are built in the default dtype");
        let tokens = Tensor::randn(&[b, t, c], 0.0, 1.0, None, None)?.requires_grad(true)?;
        // py: x = tok_emb + self.pe[:T]
        let x = tokens.add(&pe.i(..t)?)?;
        let y = attn.forward(&x)?;
        assert_eq!(y.shape(), &[b, t, c]);
        assert_close(&host(&y), &attention_reference(&attn, &host(&x), (b, t, c)), 1e-13);

        // causal: the output at position 0 depends on no later position
        let g = y.i((.., 0))?.sum_all()?.backward()?;
        let gx = g.get(&tokens).unwrap();
        assert!(host(&gx.i((.., 1..))?).iter().all(|&v| v == 0.0), "no gradient from the future");
        assert!(host(&gx.i((.., 0))?).iter().any(|&v| v != 0.0));

        // the language-model loss, with ignored targets
        let targets = Tensor::from_slice(&[3i64, -1, 0, 7, 7, 1, -1, -1, 2, 5], &[b, t], Device::Cpu)?;
        let logits = &y; // (n_embd doubles as the vocabulary here)
                         // py: loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        let loss = cross_entropy(
            &logits.reshape(&[-1, logits.size(-1)? as i64])?,
            &targets.reshape(&[-1])?,
            &CrossEntropyOptions { ignore_index: Some(-1), ..Default::default() },
        )?;
        let (yv, tv) = (host(&y), targets.to_vec::<i64>()?);
        let counted: Vec<f64> = yv
            .chunks(c)
            .zip(&tv)
            .filter(|(_, &k)| k != -1)
            .map(|(row, &k)| row.iter().map(|v| v.exp()).sum::<f64>().ln() - row[k as usize])
            .collect();
        assert_close(&[loss.item()?], &[counted.iter().sum::<f64>() / counted.len() as f64], 1e-14);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// 3. Detection: box decoding with [:, 0::4] slicing, clipping with [..., 0::2], top-k
// ---------------------------------------------------------------------------------------

/// torchvision's `BoxCoder.decode_single(rel_codes [N, 4K], boxes [N, 4])`.
fn decode_single(rel_codes: &Tensor, boxes: &Tensor, weights: (f64, f64, f64, f64), clip: f64) -> Result<Tensor> {
    // py: widths = boxes[:, 2] - boxes[:, 0]
    let widths = boxes.i((.., 2))?.sub(&boxes.i((.., 0))?)?;
    // py: heights = boxes[:, 3] - boxes[:, 1]
    let heights = boxes.i((.., 3))?.sub(&boxes.i((.., 1))?)?;
    // py: ctr_x = boxes[:, 0] + 0.5 * widths
    let ctr_x = boxes.i((.., 0))?.add(&widths.mul_scalar(0.5)?)?;
    // py: ctr_y = boxes[:, 1] + 0.5 * heights
    let ctr_y = boxes.i((.., 1))?.add(&heights.mul_scalar(0.5)?)?;
    // py: wx, wy, ww, wh = self.weights
    let (wx, wy, ww, wh) = weights;
    // py: dx = rel_codes[:, 0::4] / wx
    let dx = rel_codes.i((.., s(0.., 4)))?.div_scalar(wx)?;
    // py: dy = rel_codes[:, 1::4] / wy
    let dy = rel_codes.i((.., s(1.., 4)))?.div_scalar(wy)?;
    // py: dw = rel_codes[:, 2::4] / ww
    let dw = rel_codes.i((.., s(2.., 4)))?.div_scalar(ww)?;
    // py: dh = rel_codes[:, 3::4] / wh
    let dh = rel_codes.i((.., s(3.., 4)))?.div_scalar(wh)?;
    // py: dw = torch.clamp(dw, max=self.bbox_xform_clip)
    let dw = dw.clamp(f64::NEG_INFINITY, clip)?;
    // py: dh = torch.clamp(dh, max=self.bbox_xform_clip)
    let dh = dh.clamp(f64::NEG_INFINITY, clip)?;
    // py: pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    let pred_ctr_x = dx.mul(&widths.i((.., NEW_AXIS))?)?.add(&ctr_x.i((.., NEW_AXIS))?)?;
    // py: pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    let pred_ctr_y = dy.mul(&heights.i((.., NEW_AXIS))?)?.add(&ctr_y.i((.., NEW_AXIS))?)?;
    // py: pred_w = torch.exp(dw) * widths[:, None]
    let pred_w = dw.exp()?.mul(&widths.i((.., NEW_AXIS))?)?;
    // py: pred_h = torch.exp(dh) * heights[:, None]
    let pred_h = dh.exp()?.mul(&heights.i((.., NEW_AXIS))?)?;
    // py: c_to_c_h = torch.tensor(0.5, dtype=pred_ctr_y.dtype, device=pred_h.device) * pred_h
    let c_to_c_h = Tensor::scalar(0.5, pred_ctr_y.dtype(), pred_h.device())?.mul(&pred_h)?;
    // py: c_to_c_w = torch.tensor(0.5, dtype=pred_ctr_x.dtype, device=pred_w.device) * pred_w
    let c_to_c_w = Tensor::scalar(0.5, pred_ctr_x.dtype(), pred_w.device())?.mul(&pred_w)?;
    // py: pred_boxes1 = pred_ctr_x - c_to_c_w
    let pred_boxes1 = pred_ctr_x.sub(&c_to_c_w)?;
    // py: pred_boxes2 = pred_ctr_y - c_to_c_h
    let pred_boxes2 = pred_ctr_y.sub(&c_to_c_h)?;
    // py: pred_boxes3 = pred_ctr_x + c_to_c_w
    let pred_boxes3 = pred_ctr_x.add(&c_to_c_w)?;
    // py: pred_boxes4 = pred_ctr_y + c_to_c_h
    let pred_boxes4 = pred_ctr_y.add(&c_to_c_h)?;
    // py: pred_boxes = torch.stack((pred_boxes1, pred_boxes2, pred_boxes3, pred_boxes4), dim=2).flatten(1)
    Tensor::stack(&[&pred_boxes1, &pred_boxes2, &pred_boxes3, &pred_boxes4], 2)?.flatten(1, -1)
}

/// torchvision's `clip_boxes_to_image(boxes, size)`.
fn clip_boxes_to_image(boxes: &Tensor, (height, width): (f64, f64)) -> Result<Tensor> {
    // py: dim = boxes.dim()
    let dim = boxes.rank();
    // py: boxes_x = boxes[..., 0::2]
    let boxes_x = boxes.i((ELLIPSIS, s(0.., 2)))?;
    // py: boxes_y = boxes[..., 1::2]
    let boxes_y = boxes.i((ELLIPSIS, s(1.., 2)))?;
    // py: boxes_x = boxes_x.clamp(min=0, max=width)
    let boxes_x = boxes_x.clamp(0.0, width)?;
    // py: boxes_y = boxes_y.clamp(min=0, max=height)
    let boxes_y = boxes_y.clamp(0.0, height)?;
    // py: clipped_boxes = torch.stack((boxes_x, boxes_y), dim=dim)
    let clipped_boxes = Tensor::stack(&[&boxes_x, &boxes_y], dim)?;
    // py: return clipped_boxes.reshape(boxes.shape)
    clipped_boxes.reshape(boxes.shape())
}

#[test]
fn detection_box_decoding() -> Result<()> {
    f64_scope(|| {
        // py: bbox_xform_clip = math.log(1000. / 16)
        let clip = (1000.0f64 / 16.0).ln();
        let weights = (10.0, 10.0, 5.0, 5.0); // Faster R-CNN's box head weights
                                              // two anchors, two classes (4 codes each)
        let boxes = Tensor::new(&[0.0, 0.0, 10.0, 20.0, 10.0, 10.0, 30.0, 20.0], &[2, 4])?;
        let ln2 = 2f64.ln();
        #[rustfmt::skip]
        let codes = Tensor::new(&[
            0.0, 0.0, 0.0, 0.0,        1.0, -2.0, 5.0 * ln2, 0.0,   // anchor 0: identity; shift, double the width
            5.0, 0.0, 0.0, -5.0 * ln2, 0.0, 0.0, 50.0, 0.0,         // anchor 1: shift, halve the height; dw = 10 is clipped
        ], &[2, 8])?;
        let decoded = decode_single(&codes, &boxes, weights, clip)?;
        // by hand: anchor 0 is w 10, h 20, centre (5, 10); anchor 1 is w 20, h 10, centre (20, 15)
        // class 1 of anchor 0: centre (5 + 0.1 * 10, 10 - 0.2 * 20) = (6, 6), w 20, h 20
        // class 0 of anchor 1: centre (20 + 0.5 * 20, 15) = (30, 15), w 20, h 5
        // class 1 of anchor 1: w = exp(clip) * 20 = 62.5 * 20 = 1250, centre (20, 15)
        #[rustfmt::skip]
        let want = [
            0.0, 0.0, 10.0, 20.0,      -4.0, -4.0, 16.0, 16.0,
            20.0, 12.5, 40.0, 17.5,    -605.0, 10.0, 645.0, 20.0,
        ];
        assert_eq!(decoded.shape(), &[2, 8]);
        assert_close(&host(&decoded), &want, 1e-14);

        let clipped = clip_boxes_to_image(&decoded.reshape(&[-1, 4])?, (24.0, 32.0))?;
        #[rustfmt::skip]
        let want_clipped = [
            0.0, 0.0, 10.0, 20.0,      0.0, 0.0, 16.0, 16.0,
            20.0, 12.5, 32.0, 17.5,    0.0, 10.0, 32.0, 20.0,
        ];
        assert_close(&host(&clipped), &want_clipped, 1e-14);

        let scores = Tensor::new(&[0.9, 0.1, 0.3, 0.8], &[4])?;
        // py: top, idx = scores.topk(2)
        let (top, idx) = scores.topk(2, 0, true, true)?;
        // py: kept = clipped[idx]
        let kept = clipped.index_select(0, &idx)?;
        assert_eq!(idx.to_vec::<i64>()?, vec![0, 3]);
        assert_close(&host(&top), &[0.9, 0.8], 0.0);
        assert_close(&host(&kept), &[0.0, 0.0, 10.0, 20.0, 0.0, 10.0, 32.0, 20.0], 0.0);

        // decoding is differentiable in the codes and the anchors (strided slices, new axes)
        let unclipped = codes.mul_scalar(0.1)?; // away from the clamp's kink
        gradcheck(
            |x| decode_single(&x[0], &x[1], weights, clip),
            &[unclipped.requires_grad(true)?, boxes.requires_grad(true)?],
        )?;
        gradgradcheck(|x| decode_single(&x[0], &boxes, weights, clip), &[unclipped.requires_grad(true)?])?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// 4. One-liners: reductions with indices, scans, norms, losses, checkpoints
// ---------------------------------------------------------------------------------------

#[test]
fn one_liners() -> Result<()> {
    f64_scope(|| {
        // py: x = torch.tensor([[1., -2., 3.], [.5, 4., -1.]])
        let x = Tensor::new(&[1.0, -2.0, 3.0, 0.5, 4.0, -1.0], &[2, 3])?;
        // py: values, idx = x.max(dim=-1)
        let (values, idx) = x.max_dim(-1, false)?;
        assert_eq!((host(&values), idx.to_vec::<i64>()?), (vec![3.0, 4.0], vec![2, 1]));
        // py: sorted, order = x.sort(dim=0, descending=True)
        let (sorted, order) = x.sort(0, true)?;
        assert_eq!(
            (host(&sorted), order.to_vec::<i64>()?),
            (vec![1.0, 4.0, 3.0, 0.5, -2.0, -1.0], vec![0, 1, 0, 1, 0, 1])
        );
        // py: c = x.cumsum(dim=-1)
        let c = x.cumsum(-1)?;
        assert_close(&host(&c), &[1.0, -1.0, 2.0, 0.5, 4.5, 3.5], 0.0);
        // py: p = x.cumprod(dim=1)
        let p = x.cumprod(1)?;
        assert_close(&host(&p), &[1.0, -2.0, -6.0, 0.5, 2.0, -2.0], 0.0);
        // py: lse = torch.logsumexp(x, dim=(0, 1))
        let lse = x.logsumexp([0, 1], false)?;
        let all = [1.0f64, -2.0, 3.0, 0.5, 4.0, -1.0];
        assert_close(&[lse.item()?], &[all.iter().map(|v| v.exp()).sum::<f64>().ln()], 1e-15);
        // py: sd = x.std(dim=-1, correction=0)
        let sd = x.std(-1, 0, false)?;
        let pop_std = |r: &[f64]| {
            let m = r.iter().sum::<f64>() / 3.0;
            (r.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 3.0).sqrt()
        };
        assert_close(&host(&sd), &[pop_std(&all[..3]), pop_std(&all[3..])], 1e-15);
        // py: v = x.var(dim=-1, keepdim=True)
        let v = x.var(-1, 1, true)?;
        assert_close(&host(&v), &[pop_std(&all[..3]).powi(2) * 1.5, pop_std(&all[3..]).powi(2) * 1.5], 1e-15);
        // py: n = x.norm(p=2, dim=-1)
        let n = x.norm(2.0, -1, false)?;
        assert_close(&host(&n), &[14f64.sqrt(), 17.25f64.sqrt()], 1e-15);
        // py: t = torch.einsum('ij,kj->ik', x, x)
        let t = Tensor::einsum("ij,kj->ik", &[&x, &x])?;
        assert_close(&host(&t), &host(&x.matmul(&x.t()?)?), 1e-15);
        // py: g = F.gelu(x, approximate='tanh')
        let g = x.gelu_tanh()?;
        let gt = |v: f64| 0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh());
        assert_close(&host(&g), &all.map(gt), 1e-15);
        // py: y = x.permute(-1, 0)
        let y = x.permute(&[-1, 0])?;
        assert_eq!(y.shape(), &[3, 2]);
        // py: last = x[:, -1]
        let last = x.i((.., -1))?;
        assert_close(&host(&last), &[3.0, -1.0], 0.0);

        let target = Tensor::new(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0], &[2, 3])?;
        let pos_weight = Tensor::new(&[2.0, 1.0, 1.0], &[3])?;
        // py: bce = F.binary_cross_entropy_with_logits(x, target, pos_weight=pos_weight)
        let bce = binary_cross_entropy_with_logits(
            &x,
            &target,
            &BceOptions { pos_weight: Some(pos_weight), ..Default::default() },
        )?;
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let tv = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let pw = [2.0, 1.0, 1.0];
        let want: f64 =
            (0..6).map(|k| -(pw[k % 3] * tv[k] * sig(all[k]).ln() + (1.0 - tv[k]) * sig(-all[k]).ln())).sum::<f64>()
                / 6.0;
        assert_close(&[bce.item()?], &[want], 1e-15);
        // py: sl1 = F.smooth_l1_loss(x, target, reduction='sum', beta=0.5)
        let sl1 = smooth_l1(&x, &target, Reduction::Sum, 0.5)?;
        let want: f64 = (0..6)
            .map(|k| {
                let d = (all[k] - tv[k]).abs();
                if d < 0.5 {
                    0.5 * d * d / 0.5
                } else {
                    d - 0.25
                }
            })
            .sum();
        assert_close(&[sl1.item()?], &[want], 1e-15);

        // torch.save(model.state_dict(), path) / model.load_state_dict(torch.load(path))
        let model = Linear::new(3, 2)?;
        let path = std::env::temp_dir().join(format!("stategrad-porting-{}.safetensors", std::process::id()));
        let path = path.to_string_lossy().into_owned(); // a String path, as Python code has
                                                        // py: torch.save(model.state_dict(), path)
        model.save_safetensors(&path)?;
        let copy = Linear::new(3, 2)?;
        // py: copy.load_state_dict(torch.load(path))
        assert!(copy.load_safetensors(path.as_str(), true)?.is_clean());
        assert_eq!(host(&copy.weight.data()), host(&model.weight.data()));
        std::fs::remove_file(&path).ok();
        Ok(())
    })
}
