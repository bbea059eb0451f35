//! gradcheck (f64, central differences) of the differentiable ops on random shapes:
//! random broadcasting partners, random reduction dims, random batch dims, and leaves
//! that are randomly transposed (non-contiguous) or expanded (stride 0). The per-op unit
//! tests (`autograd/src/ops/*.rs`) cover fixed shapes, every op and second derivatives.
use proptest::prelude::*;
use stategrad::autograd::{gradcheck, DType, Device, Result, Tensor};
use stategrad::backends::Distribution;

fn values(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
    Tensor::rand_seeded(shape, Distribution::Uniform { lo, hi }, DType::F64, Device::Cpu, seed).unwrap()
}

/// A leaf of `shape`: contiguous, a transposed view, or an expanded (stride-0) view.
fn leaf(shape: &[usize], layout: u8, lo: f64, hi: f64, seed: u64) -> Tensor {
    let r = shape.len();
    let t = match layout % 3 {
        1 if r >= 2 => {
            let mut s = shape.to_vec();
            s.swap(r - 2, r - 1);
            values(&s, lo, hi, seed).transpose(-2, -1).unwrap()
        }
        2 if r >= 1 => {
            let mut s = shape.to_vec();
            s[0] = 1;
            values(&s, lo, hi, seed).expand(shape).unwrap()
        }
        _ => values(shape, lo, hi, seed),
    };
    t.requires_grad(true).unwrap()
}

fn check(f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) -> std::result::Result<(), TestCaseError> {
    gradcheck(f, inputs).map(|_| ()).map_err(|e| TestCaseError::fail(e.to_string()))
}

/// A shape and a partner that broadcasts against it (size-1 dims, fewer leading dims).
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec(1usize..4, 1..4)
        .prop_flat_map(|a| {
            let n = a.len();
            (Just(a), prop::collection::vec(any::<bool>(), n), 0..n)
        })
        .prop_map(|(a, ones, drop_lead)| {
            let b: Vec<usize> = a.iter().zip(&ones).map(|(&d, &one)| if one { 1 } else { d }).collect();
            (a, b[drop_lead..].to_vec())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn binary_ops_broadcast((a, b) in broadcast_pair(), la in 0u8..3, lb in 0u8..3, swap in any::<bool>(), seed in 0u64..1000) {
        let (a, b) = if swap { (b, a) } else { (a, b) };
        let x = leaf(&a, la, -2.0, 2.0, seed);
        let y = leaf(&b, lb, 0.5, 2.0, seed + 1);
        check(|t| t[0].add(&t[1]), &[x.clone(), y.clone()])?;
        check(|t| t[0].sub(&t[1]), &[x.clone(), y.clone()])?;
        check(|t| t[0].mul(&t[1]), &[x.clone(), y.clone()])?;
        check(|t| t[0].div(&t[1]), &[x.clone(), y.clone()])?;
        check(|t| t[1].pow(&t[0]), &[x.clone(), y.clone()])?;
        // disjoint ranges: no ties
        let z = leaf(&b, lb, 2.5, 3.0, seed + 2);
        check(|t| t[0].maximum(&t[1]), &[x.clone(), z.clone()])?;
        check(|t| t[0].minimum(&t[1]), &[x.clone(), z])?;
        let cond = values(&a, 0.0, 1.0, seed + 3).gt(&Tensor::scalar(0.5, DType::F64, Device::Cpu).unwrap()).unwrap();
        check(move |t| cond.where_cond(&t[0], &t[1]), &[x, y])?;
    }

    #[test]
    fn reductions_over_random_dims(shape in prop::collection::vec(1usize..5, 1..4), mask in 1u8..8, keepdim in any::<bool>(), layout in 0u8..3, seed in 0u64..1000) {
        let dims: Vec<usize> = (0..shape.len()).filter(|d| mask & (1 << d) != 0).collect();
        prop_assume!(!dims.is_empty());
        let x = leaf(&shape, layout, -2.0, 2.0, seed);
        check(|t| t[0].sum(dims.clone(), keepdim), std::slice::from_ref(&x))?;
        check(|t| t[0].mean(dims.clone(), keepdim), std::slice::from_ref(&x))?;
        if layout % 3 != 2 {
            // an expanded leaf repeats values: max would have ties
            check(|t| t[0].max(dims.clone(), keepdim), std::slice::from_ref(&x))?;
        }
        let d = dims[0];
        check(|t| t[0].softmax(d), std::slice::from_ref(&x))?;
        check(|t| t[0].log_softmax(d), &[x])?;
    }

    #[test]
    fn matmul_with_random_batch_dims(m in 1usize..4, k in 1usize..4, n in 1usize..4, (ba, bb) in broadcast_pair(), la in 0u8..2, lb in 0u8..2, seed in 0u64..1000) {
        let sa: Vec<usize> = ba.iter().copied().chain([m, k]).collect();
        let sb: Vec<usize> = bb.iter().copied().chain([k, n]).collect();
        check(|t| t[0].matmul(&t[1]), &[leaf(&sa, la, -1.0, 1.0, seed), leaf(&sb, lb, -1.0, 1.0, seed + 1)])?;
    }

    #[test]
    fn views_and_index_ops(shape in prop::collection::vec(2usize..5, 3..4), layout in 0u8..3, seed in 0u64..1000) {
        let x = leaf(&shape, layout, -1.0, 1.0, seed);
        check(|t| t[0].permute(&[2, 0, 1])?.reshape(&[shape[2] * shape[0], shape[1]]), std::slice::from_ref(&x))?;
        check(|t| t[0].narrow(1, 1, shape[1] - 1)?.unsqueeze(0)?.squeeze(0), std::slice::from_ref(&x))?;
        let idx = Tensor::from_vec(vec![shape[0] as i64 - 1, 0, 1], &[3], Device::Cpu).unwrap();
        check(|t| t[0].index_select(0, &idx), std::slice::from_ref(&x))?;
        let g: Vec<i64> = (0..shape[0] * shape[1]).map(|i| (i % shape[2]) as i64).collect();
        let gidx = Tensor::from_vec(g, &[shape[0], shape[1], 1], Device::Cpu).unwrap();
        check(|t| t[0].gather(2, &gidx), std::slice::from_ref(&x))?;
        check(|t| Tensor::cat(&[&t[0], &t[0].mul_scalar(2.0)?], 2), &[x])?;
    }
}
