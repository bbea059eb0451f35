//! `einsum(equation, operands)`: Einstein summation, parsed once and lowered to the ops
//! that already exist, so gradients (and second derivatives) come by composition:
//! a label repeated in one operand takes a diagonal (a product with an identity mask, then
//! a sum); a label found in one operand only and not in the output is summed; two
//! operands are permuted to `[batch, free, contracted]` / `[batch, contracted, free]`,
//! reshaped and multiplied with one batched matmul; more than two are contracted left to
//! right. Supported: lower- and upper-case letters, an explicit `->` output or the
//! implicit one (labels seen once, sorted), any number of operands. Not supported (an
//! error naming the equation): `...` (broadcast dims) and labels that broadcast.
use crate::{Error, Result, Tensor};

/// An operand with one label per dimension.
struct Term {
    t: Tensor,
    labels: Vec<char>,
}

fn parse(eq: &str, n: usize) -> std::result::Result<(Vec<Vec<char>>, Vec<char>), String> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    if eq.contains('.') {
        return Err("'...' (broadcast dimensions) is not supported; write every dimension's label".into());
    }
    let (lhs, out) = match eq.split_once("->") {
        Some((l, o)) => (l.to_string(), Some(o.to_string())),
        None => (eq.clone(), None),
    };
    let inputs: Vec<Vec<char>> = lhs.split(',').map(|s| s.chars().collect()).collect();
    if inputs.len() != n {
        return Err(format!("the equation has {} operands, {n} tensors were given", inputs.len()));
    }
    let all: Vec<char> = inputs.iter().flatten().copied().collect();
    let out: Option<Vec<char>> = out.map(|o| o.chars().collect());
    if let Some(c) = all.iter().chain(out.iter().flatten()).find(|c| !c.is_ascii_alphabetic()) {
        return Err(format!("{c:?} is not a label (labels are ASCII letters)"));
    }
    let out: Vec<char> = match out {
        Some(o) => o,
        None => {
            let mut once: Vec<char> =
                all.iter().copied().filter(|c| all.iter().filter(|d| *d == c).count() == 1).collect();
            once.sort_unstable();
            once
        }
    };
    for (i, c) in out.iter().enumerate() {
        if !all.contains(c) {
            return Err(format!("output label {c:?} appears in no operand"));
        }
        if out[..i].contains(c) {
            return Err(format!("output label {c:?} appears twice"));
        }
    }
    Ok((inputs, out))
}

impl Term {
    /// Takes the diagonal of every label repeated in this operand.
    fn diagonals(mut self) -> Result<Term> {
        while let Some((a, b)) = (0..self.labels.len())
            .find_map(|b| self.labels[..b].iter().position(|&c| c == self.labels[b]).map(|a| (a, b)))
        {
            let n = self.t.shape()[a];
            let mut shape = vec![1; self.t.rank()];
            shape[a] = n;
            shape[b] = n;
            let eye: Vec<f64> = (0..n * n).map(|k| if k / n == k % n { 1.0 } else { 0.0 }).collect();
            let eye = Tensor::from_vec(eye, &shape, self.t.device())?.to_dtype(self.t.dtype())?;
            self.t = self.t.mul(&eye)?.sum(b, false)?;
            self.labels.remove(b);
        }
        Ok(self)
    }

    /// Sums the labels not in `keep`.
    fn sum_except(mut self, keep: &[char]) -> Result<Term> {
        let axes: Vec<usize> = (0..self.labels.len()).filter(|&i| !keep.contains(&self.labels[i])).collect();
        if !axes.is_empty() {
            self.t = self.t.sum(axes.clone(), false)?;
            self.labels = self.labels.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &c)| c).collect();
        }
        Ok(self)
    }

    fn size(&self, c: char) -> usize {
        self.t.shape()[self.labels.iter().position(|&d| d == c).expect("a label of this term")]
    }

    /// Permuted so that its labels are `order` (a permutation of them).
    fn permuted(&self, order: &[char]) -> Result<Tensor> {
        let perm: Vec<usize> =
            order.iter().map(|c| self.labels.iter().position(|d| d == c).expect("a label")).collect();
        self.t.permute(&perm)
    }
}

/// Contracts two terms, keeping the labels in `keep`, as one batched matmul.
fn contract(a: Term, b: Term, keep: &[char]) -> Result<Term> {
    let batch: Vec<char> = a.labels.iter().copied().filter(|c| b.labels.contains(c) && keep.contains(c)).collect();
    let inner: Vec<char> = a.labels.iter().copied().filter(|c| b.labels.contains(c) && !keep.contains(c)).collect();
    let a_free: Vec<char> = a.labels.iter().copied().filter(|c| !b.labels.contains(c)).collect();
    let b_free: Vec<char> = b.labels.iter().copied().filter(|c| !a.labels.contains(c)).collect();
    let prod = |t: &Term, cs: &[char]| cs.iter().map(|&c| t.size(c)).product::<usize>();
    let (nb, m, k, n) = (prod(&a, &batch), prod(&a, &a_free), prod(&a, &inner), prod(&b, &b_free));
    let at = a.permuted(&[&batch[..], &a_free, &inner].concat())?.reshape(&[nb, m, k])?;
    let bt = b.permuted(&[&batch[..], &inner, &b_free].concat())?.reshape(&[nb, k, n])?;
    let sizes: Vec<usize> =
        batch.iter().chain(&a_free).map(|&c| a.size(c)).chain(b_free.iter().map(|&c| b.size(c))).collect();
    let t = at.matmul(&bt)?.reshape(&sizes)?;
    Ok(Term { t, labels: [batch, a_free, b_free].concat() })
}

impl Tensor {
    /// Einstein summation (PyTorch's `torch.einsum`): `"bij,bjk->bik"` (batched matmul),
    /// `"ijkl,bil->bijk"`, `"ii->"` (trace), `"ii->i"` (diagonal), `"i,j->ij"` (outer
    /// product), `"bn,anm,bm->ba"` (bilinear), implicit outputs (`"ij,jk"`). Lowered to
    /// permute, reshape, matmul and sum, so it is differentiable to any order. `...` and
    /// broadcasting labels are not supported: an error naming the equation.
    ///
    /// ```
    /// use stategrad_autograd::{Tensor, Device};
    /// let a = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0], &[2, 2], Device::Cpu)?;
    /// assert_eq!(Tensor::einsum("ii->", &[&a])?.item()?, 5.0);
    /// assert_eq!(Tensor::einsum("ij,jk->ik", &[&a, &a])?.to_vec::<f64>()?, vec![7.0, 10.0, 15.0, 22.0]);
    /// # Ok::<(), stategrad_autograd::Error>(())
    /// ```
    pub fn einsum(equation: &str, operands: &[&Tensor]) -> Result<Tensor> {
        let err = |msg: String| Error::argument("einsum", format!("{equation:?}: {msg}"));
        let (inputs, out) = parse(equation, operands.len()).map_err(err)?;
        let mut terms = Vec::with_capacity(operands.len());
        for (i, (t, labels)) in operands.iter().zip(inputs).enumerate() {
            if labels.len() != t.rank() {
                return Err(Error::shape(
                    "einsum",
                    &[t.shape()],
                    format!("{equation:?}: operand {i} has {} labels but rank {}", labels.len(), t.rank()),
                ));
            }
            if i > 0 {
                crate::ops::check_same("einsum", operands[0], t)?;
            }
            terms.push(Term { t: (*t).clone(), labels });
        }
        // every label has one size
        let mut sizes: Vec<(char, usize)> = Vec::new();
        for term in &terms {
            for (&c, &n) in term.labels.iter().zip(term.t.shape()) {
                match sizes.iter().find(|(d, _)| *d == c) {
                    Some(&(_, m)) if m != n => {
                        return Err(Error::shape(
                            "einsum",
                            &terms.iter().map(|t| t.t.shape()).collect::<Vec<_>>(),
                            format!("{equation:?}: label {c:?} has sizes {m} and {n} (labels do not broadcast)"),
                        ))
                    }
                    Some(_) => {}
                    None => sizes.push((c, n)),
                }
            }
        }
        // the labels needed once the terms before `rest` are contracted
        let needed = |rest: &[Term]| -> Vec<char> {
            out.iter().copied().chain(rest.iter().flat_map(|t| t.labels.iter().copied())).collect()
        };
        let mut terms: Vec<Term> = terms.into_iter().map(Term::diagonals).collect::<Result<_>>()?;
        let mut acc = terms.remove(0);
        // sum what nothing later needs first: a smaller matmul
        acc = acc.sum_except(&needed(&terms))?;
        while !terms.is_empty() {
            let b = terms.remove(0);
            let keep = needed(&terms);
            let b = b.sum_except(&[&keep[..], &acc.labels].concat())?;
            acc = contract(acc, b, &keep)?;
        }
        acc.permuted(&out)
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::{Error, Tensor};

    fn v(t: &Tensor) -> Vec<f64> {
        t.to_f64_vec().unwrap()
    }

    #[test]
    fn forward_against_loops() {
        let a = rand64(&[2, 3, 4], -1.0, 1.0, 1);
        let b = rand64(&[2, 4, 5], -1.0, 1.0, 2);
        let (av, bv) = (v(&a), v(&b));
        // bij,bjk->bik
        let mut want = vec![0.0; 2 * 3 * 5];
        for bb in 0..2 {
            for i in 0..3 {
                for k in 0..5 {
                    want[(bb * 3 + i) * 5 + k] =
                        (0..4).map(|j| av[(bb * 3 + i) * 4 + j] * bv[(bb * 4 + j) * 5 + k]).sum();
                }
            }
        }
        assert_close(&Tensor::einsum("bij,bjk->bik", &[&a, &b]).unwrap(), &want, 1e-15);
        // ijkl,bil->bijk (the capsule prediction step)
        let w = rand64(&[3, 2, 2, 4], -1.0, 1.0, 3);
        let u = rand64(&[5, 3, 4], -1.0, 1.0, 4);
        let (wv, uv) = (v(&w), v(&u));
        let mut want = vec![0.0; 5 * 3 * 2 * 2];
        for bb in 0..5 {
            for i in 0..3 {
                for j in 0..2 {
                    for k in 0..2 {
                        want[((bb * 3 + i) * 2 + j) * 2 + k] =
                            (0..4).map(|l| wv[((i * 2 + j) * 2 + k) * 4 + l] * uv[(bb * 3 + i) * 4 + l]).sum();
                    }
                }
            }
        }
        assert_close(&Tensor::einsum("ijkl,bil->bijk", &[&w, &u]).unwrap(), &want, 1e-15);
        // trace, diagonal, outer product, transpose, sum, implicit output
        let m = t64(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], &[3, 3]);
        assert_close(&Tensor::einsum("ii->", &[&m]).unwrap(), &[15.0], 0.0);
        assert_close(&Tensor::einsum("ii->i", &[&m]).unwrap(), &[1.0, 5.0, 9.0], 0.0);
        assert_close(&Tensor::einsum("ij->ji", &[&m]).unwrap(), &[1.0, 4.0, 7.0, 2.0, 5.0, 8.0, 3.0, 6.0, 9.0], 0.0);
        assert_close(&Tensor::einsum("ij->j", &[&m]).unwrap(), &[12.0, 15.0, 18.0], 0.0);
        let x = t64(&[1.0, 2.0], &[2]);
        let y = t64(&[3.0, 4.0, 5.0], &[3]);
        assert_close(&Tensor::einsum("i,j->ij", &[&x, &y]).unwrap(), &[3.0, 4.0, 5.0, 6.0, 8.0, 10.0], 0.0);
        assert_close(&Tensor::einsum("i,i", &[&x, &x]).unwrap(), &[5.0], 0.0); // implicit: a dot product
        assert_close(&Tensor::einsum("ji,jk", &[&m, &m]).unwrap(), &v(&m.t().unwrap().matmul(&m).unwrap()), 0.0);
        // bilinear, three operands: out[b, a] = sum_nm x[b, n] A[a, n, m] y[b, m]
        let (p, q, r) =
            (rand64(&[2, 3], -1.0, 1.0, 5), rand64(&[4, 3, 2], -1.0, 1.0, 6), rand64(&[2, 2], -1.0, 1.0, 7));
        let (pv, qv, rv) = (v(&p), v(&q), v(&r));
        let mut want = vec![0.0; 8];
        for bb in 0..2 {
            for aa in 0..4 {
                for n in 0..3 {
                    for mm in 0..2 {
                        want[bb * 4 + aa] += pv[bb * 3 + n] * qv[(aa * 3 + n) * 2 + mm] * rv[bb * 2 + mm];
                    }
                }
            }
        }
        assert_close(&Tensor::einsum("bn,anm,bm->ba", &[&p, &q, &r]).unwrap(), &want, 1e-15);
        // a label summed inside one operand before the contraction
        let s = Tensor::einsum("ij,jk->k", &[&m, &m]).unwrap();
        assert_close(&s, &v(&m.matmul(&m).unwrap().sum(0, false).unwrap()), 1e-15);
    }

    #[test]
    fn unsupported_forms_name_the_equation() {
        let m = t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
        let v3 = t64(&[1.0, 2.0, 3.0], &[3]);
        for (eq, ops) in [
            ("...ij->...ji", vec![&m]),
            ("ij,jk->ik", vec![&m]),
            ("ij->k", vec![&m]),
            ("ij->ii", vec![&m]),
            ("i1->i", vec![&m]),
        ] {
            match Tensor::einsum(eq, &ops) {
                Err(Error::Argument { op: "einsum", msg }) => assert!(msg.contains(eq), "{msg}"),
                other => panic!("{eq}: {other:?}"),
            }
        }
        assert!(matches!(Tensor::einsum("ij,j->i", &[&m, &v3]), Err(Error::Shape { op: "einsum", .. })));
        assert!(matches!(Tensor::einsum("ijk->i", &[&m]), Err(Error::Shape { op: "einsum", .. })));
    }

    #[test]
    fn gradient() {
        let leaf = |t: Tensor| t.requires_grad(true).unwrap();
        // contiguous, transposed and broadcast (stride-0) operands
        let a = leaf(rand64(&[2, 3, 4], -1.0, 1.0, 11));
        let at = leaf(rand64(&[2, 4, 3], -1.0, 1.0, 12).transpose(1, 2).unwrap());
        let ab = leaf(rand64(&[1, 3, 4], -1.0, 1.0, 13).expand(&[2, 3, 4]).unwrap());
        let b = leaf(rand64(&[2, 4, 5], -1.0, 1.0, 14));
        for a in [a, at, ab] {
            check_fn(|x| Tensor::einsum("bij,bjk->bik", &[&x[0], &x[1]]), &[a.clone(), b.clone()]);
            check_fn(|x| Tensor::einsum("bij,bjk->kb", &[&x[0], &x[1]]), &[a, b.clone()]);
        }
        let w = leaf(rand64(&[3, 2, 2, 4], -1.0, 1.0, 15));
        let u = leaf(rand64(&[5, 3, 4], -1.0, 1.0, 16));
        check_fn(|x| Tensor::einsum("ijkl,bil->bijk", &[&x[0], &x[1]]), &[w.clone(), u.clone()]);
        check_fn_gradgrad(|x| Tensor::einsum("ijkl,bil->bijk", &[&x[0], &x[1]]), &[w, u]);
        let m = leaf(rand64(&[3, 3], -1.0, 1.0, 17).t().unwrap());
        check_fn(|x| Tensor::einsum("ii->i", &[&x[0]]), std::slice::from_ref(&m));
        check_fn_gradgrad(|x| Tensor::einsum("ij,jk->", &[&x[0], &x[0]]), &[m]);
        let (p, q, r) = (
            leaf(rand64(&[2, 3], -1.0, 1.0, 18)),
            leaf(rand64(&[4, 3, 2], -1.0, 1.0, 19)),
            leaf(rand64(&[2, 2], -1.0, 1.0, 20)),
        );
        check_fn_gradgrad(|x| Tensor::einsum("bn,anm,bm->ba", &[&x[0], &x[1], &x[2]]), &[p, q, r]);
    }
}
