//! Data parallelism with in-process replicas: every case of tests/dp_cases run by 2 threads
//! of one [`InProcessGroup`] (the MPI suite runs the same cases on 2 processes), plus the
//! group's own guarantees (no hang when a rank leaves or calls another collective).
mod dp_cases;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dp_cases::Group;
use stategrad::dist::{run_replicas, InProcessGroup, ProcessGroup};
use stategrad::prelude::*;

/// Runs `case` on 2 in-process ranks; fails with every rank's error.
fn on_two(case: impl Fn(Group) -> Result<()> + Sync) {
    let results = run_replicas(2, |g| case(Arc::new(g)));
    let errors: Vec<String> =
        results.iter().enumerate().filter_map(|(r, x)| x.as_ref().err().map(|e| format!("rank {r}: {e}"))).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn two_replicas_with_half_batches_equal_one_rank_sgd_then_adam() {
    on_two(dp_cases::equals_single_rank);
}

#[test]
fn one_replica_is_the_plain_model() {
    let r = run_replicas(1, |g| dp_cases::equals_single_rank(Arc::new(g)));
    r.into_iter().for_each(|x| x.unwrap());
}

#[test]
fn non_persistent_64_mib_buffer_sent_once_not_saved() {
    let dir = std::env::temp_dir().join(format!("stategrad-dp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    on_two(|g| dp_cases::big_buffer(g, Device::Cpu, &dir));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn buffer_policies_on_batch_norm_running_stats() {
    on_two(dp_cases::buffer_policies);
}

#[test]
fn two_forwards_then_one_backward() {
    on_two(dp_cases::two_forwards_one_backward);
}

#[test]
fn unused_parameter_on_one_rank_and_frozen_never_sent() {
    on_two(dp_cases::unused_parameter);
}

#[test]
fn large_gradients_are_averaged_in_place_without_touching_a_held_copy() {
    on_two(dp_cases::large_gradients_in_place);
}

#[test]
fn eight_million_parameters_take_a_handful_of_collectives() {
    on_two(dp_cases::bucketed);
}

#[test]
fn sync_batch_norm_batches_3_and_5_equal_batch_norm_on_8() {
    on_two(dp_cases::sync_batch_norm);
}

#[test]
fn converting_batch_norm_keeps_names_and_state_and_syncs_statistics() {
    on_two(dp_cases::convert_batch_norm);
}

/// Runs `f` on another thread and fails if it takes longer than `limit` (a hang).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(f()).ok());
    rx.recv_timeout(limit).expect("hung")
}

#[test]
fn different_models_are_an_error_on_every_rank_not_a_hang() {
    within(Duration::from_secs(60), || on_two(dp_cases::different_models));
}

#[test]
fn a_rank_that_leaves_fails_the_others_collective() {
    within(Duration::from_secs(60), || {
        let mut groups = InProcessGroup::new(2).unwrap().into_iter();
        let (g0, g1) = (groups.next().unwrap(), groups.next().unwrap());
        let t = std::thread::spawn(move || {
            let mut x = vec![1.0f64];
            g0.all_reduce_sum_f64("step", &mut x)
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(g1); // rank 1 errors out before the collective
        let e = t.join().unwrap().unwrap_err();
        assert!(e.to_string().contains("rank 1 left the group"), "{e}");
    });
}

#[test]
fn a_rank_that_never_arrives_times_out() {
    let groups = InProcessGroup::with_timeout(2, Duration::from_millis(200)).unwrap();
    let start = Instant::now();
    let e = groups[0].barrier("barrier").unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(matches!(&e, Error::Collective { rank: 0, .. }), "{e}");
    assert!(e.to_string().contains("waiting for ranks [1]"), "{e}");
}

#[test]
fn ranks_calling_different_collectives_all_fail() {
    let r = run_replicas(2, |g| {
        if g.rank() == 0 {
            g.barrier("barrier")
        } else {
            g.all_gather_bytes("all_gather", &[1]).map(|_| ())
        }
    });
    for x in r {
        let e = x.unwrap_err().to_string();
        assert!(e.contains("rank 0 called barrier, rank 1 called all_gather"), "{e}");
    }
}

#[test]
fn all_gather_uneven_and_broadcast_and_tensors() {
    let r = run_replicas(3, |g| {
        let mine: Vec<f64> = (0..g.rank() + 1).map(|i| (g.rank() * 10 + i) as f64).collect();
        let all = g.all_gather_f64("all_gather", &mine)?;
        assert_eq!(all, vec![vec![0.0], vec![10.0, 11.0], vec![20.0, 21.0, 22.0]]);
        let mut b = if g.rank() == 2 { b"hello".to_vec() } else { vec![9; 100] };
        g.broadcast_bytes("broadcast", &mut b, 2)?;
        assert_eq!(b, b"hello");
        let t = Tensor::full(&[2], g.rank() as f64, DType::F32, Device::Cpu)?;
        assert_eq!(g.all_reduce_tensor("sum", &t, false)?.to_vec::<f32>()?, vec![3.0, 3.0]);
        assert_eq!(g.all_reduce_tensor("mean", &t, true)?.to_vec::<f32>()?, vec![1.0, 1.0]);
        let i = Tensor::full(&[1 + g.rank()], g.rank() as f64, DType::I64, Device::Cpu)?;
        let gathered = g.all_gather_tensor("gather", &i, Device::Cpu)?;
        assert_eq!(gathered[2].to_vec::<i64>()?, vec![2, 2, 2]);
        Ok(())
    });
    r.into_iter().for_each(|x| x.unwrap());
}

#[test]
fn group_collectives_on_2_3_and_4_ranks() {
    for n in [2, 3, 4] {
        let r = run_replicas(n, |g| dp_cases::group_collectives(Arc::new(g)));
        r.into_iter().for_each(|x| x.unwrap());
    }
}

#[test]
fn sums_are_rank_ordered_and_bit_identical() {
    // 1e16 + 1 - 1e16 depends on the order; rank order gives (1e16 + 1) + -1e16 = 0 exactly.
    let r = run_replicas(3, |g| {
        let mut x = vec![[1e16, 1.0, -1e16][g.rank()]];
        g.all_reduce_sum_f64("sum", &mut x)?;
        Ok(x[0].to_bits())
    });
    let bits: Vec<u64> = r.into_iter().map(|x| x.unwrap()).collect();
    assert!(bits.iter().all(|&b| b == ((1e16f64 + 1.0) + -1e16).to_bits()));
}
